"""Distillation: a smaller student network learns a teacher model's stems from unlabelled music.

A teacher is any model a user can name (a shipped preset, a fine-tune, an imported Spleeter model).
Its masks label any recording, so the student needs no stems to train: :func:`distill` runs the
ordinary training loop (:func:`stemtf.train.fit`: augmentation, checkpoints, ``resume``,
TensorBoard) with the teacher's stems as the targets, and validates on labelled tracks against
the truth, so that what the student loses against real stems is measured as it trains.

The student has stemtf's own layout (one shared U-Net trunk and a sigmoid mask head per stem)
with the teacher's signal geometry and stems; its trunk is the teacher's filters scaled by
``trunk_width`` (or ``filters``). The targets are the teacher's stems as a user hears them: its masks
after its calibration (``mask_exponent``) or Spleeter's mask formula, times the mixture. The
student therefore learns the calibrated masks and ships with ``mask_exponent`` 1, and its full-band
extension is the teacher's.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from stemtf import data as data_lib
from stemtf import options
from stemtf.config import ModelConfig, UNetConfig, load_model_config
from stemtf.errors import DataError, OptionError
from stemtf.model import build_model, load_model, save_model
from stemtf.train.checkpoints import check_output_dir
from stemtf.train.fitting import ProgressCallback, TargetsFunction, TrainingResult, fit

DEFAULT_TRUNK_WIDTH = 0.5
INITS = ("auto", "prune", "scratch")
TEACHER_TARGETS = ("online", "cached")
TEACHER_STEMS_DIR = "teacher-stems"  # in the student's output directory: the cached teacher stems


def student_config(
    teacher: ModelConfig, *, trunk_width: float = DEFAULT_TRUNK_WIDTH, filters: Sequence[int] | None = None,
    head_filters: int | None = None, kernel_size: int | None = None, dropout_rate: float | None = None,
    name: str | None = None,
) -> ModelConfig:
    """The student of ``teacher``: its stems and signal geometry on stemtf's shared trunk, narrower.

    Args:
        teacher: The teacher's config.
        trunk_width: Each trunk level gets this share of the teacher's filters (at least one), e.g. 0.5
            for half width: about a quarter of the convolutions' cost.
        filters: The student's filters per level instead (its depth may differ from the teacher's).
        head_filters: The feature maps the trunk hands to the mask heads (default: the teacher's). They
            and the heads run at full resolution, so a narrower trunk does not shrink them: with
            half the trunk, the teacher's 8 are about 40% of the student's multiply-adds, 4 about 25%.
        kernel_size: The kernel of every trunk (transposed) convolution (default: the teacher's; 3
            instead of 5 is about 2.8x fewer multiply-adds in the trunk).
        dropout_rate: The decoder's dropout while training (default: the teacher's); 0 leaves a small
            student's whole capacity to the teacher's masks (labels for any music: little to over-fit).
        name: The student's name (default ``TEACHER-lite``).

    Raises:
        OptionError: ``trunk_width`` outside (0, 4], or ``filters``, ``head_filters`` or ``kernel_size`` empty or not positive.
    """
    if filters is None:
        if not 0 < trunk_width <= 4:  # also rejects NaN
            raise OptionError("trunk_width", f"{{option}} must be in (0, 4]. Received {trunk_width!r}.")
        filters = [max(1, round(f * trunk_width)) for f in teacher.unet.filters]
    filters = tuple(int(f) for f in filters)
    if not filters or any(f < 1 for f in filters):
        raise OptionError("filters", f"{{option}} must be positive integers, one per U-Net level. Received {list(filters)}.")
    if head_filters is None:  # a stemtf teacher's head width (Spleeter's one-filter last layer gets stemtf's default)
        head_filters = teacher.unet.head_filters if teacher.unet.variant == "stemtf" else UNetConfig.head_filters
    elif isinstance(head_filters, bool) or not isinstance(head_filters, (int, np.integer)) or head_filters < 1:
        raise OptionError("head_filters", f"{{option}} must be a positive integer. Received {head_filters!r}.")
    if kernel_size is None:
        kernel_size = teacher.unet.kernel_size
    elif isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
        raise OptionError("kernel_size", f"{{option}} must be a positive integer. Received {kernel_size!r}.")
    if dropout_rate is None:
        dropout_rate = teacher.unet.dropout_rate
    elif not 0 <= dropout_rate < 1:  # also rejects NaN
        raise OptionError("dropout_rate", f"{{option}} must be in [0, 1). Received {dropout_rate!r}.")
    unet = UNetConfig(filters=filters, kernel_size=int(kernel_size), head_filters=int(head_filters), dropout_rate=float(dropout_rate))
    return teacher.replace(
        name=name or f"{teacher.name}-lite", unet=unet, trunk="shared", masks="ratio", mask_exponent=1.0,
        max_bins=teacher.max_bins - teacher.max_bins % 2 ** len(filters),
    )


def audio_tracks(sources: Sequence[str | os.PathLike], *, stems: Sequence[str]) -> list[data_lib.Track]:
    """Every audio file named by ``sources`` (files, folders searched recursively, or globs) as a training track.

    An unlabelled recording enters the data pipeline as a track whose first stem is the whole
    recording and whose other stems are silent: the pipeline's mixture is then that recording with
    the pipeline's augmentation (gain, channel swap, speed, equaliser and room), and the teacher
    supplies the stems.

    Raises:
        DataError: nothing matches a source, no audio file is found, or a file's length is unknown.
        AudioError: a file cannot be read (it names the file).
    """
    paths: list[pathlib.Path] = []
    for source in sources:
        text = str(source)
        matches = [pathlib.Path(p) for p in sorted(glob.glob(text, recursive=True))] if glob.has_magic(text) else [pathlib.Path(text)]
        if not matches or not all(p.exists() for p in matches):
            raise DataError(f"Audio source {text!r} does not exist; give audio files, folders or a glob such as 'music/**/*.mp3'.")
        for match in matches:
            if match.is_dir():
                paths.extend(p for p in sorted(match.rglob("*")) if p.is_file() and p.suffix.lower() in data_lib.AUDIO_EXTENSIONS)
            elif match.suffix.lower() in data_lib.AUDIO_EXTENSIONS:
                paths.append(match)
    paths = list(dict.fromkeys(p.resolve() for p in paths))
    if not paths:
        raise DataError(f"No audio files in {', '.join(map(str, sources))} (looked for {', '.join(sorted(data_lib.AUDIO_EXTENSIONS))}).")
    from stemtf import audio

    tracks = []
    for path in paths:
        info = audio.probe_audio(path)
        if not info.num_samples:
            raise DataError(f"Audio file {str(path)!r} is empty or its length is unknown; convert it to WAV or FLAC.")
        files = {stem: (data_lib.AudioSource(str(path)),) if i == 0 else () for i, stem in enumerate(stems)}
        tracks.append(data_lib.Track(name=str(path), num_samples=info.num_samples, sample_rate=info.sample_rate, stems=files))
    return tracks


def labelled_tracks(
    data: str | os.PathLike, *, stems: Sequence[str], stem_groups: Mapping[str, Sequence[str]] | None = None,
    layout: str = "auto",
) -> list[data_lib.Track]:
    """Every track of a labelled data set (folder, CSV or MUSDB18's test subset), for validation."""
    layout = data_lib.detect_layout(data) if layout == "auto" else layout
    if layout == "csv":
        return data_lib.csv_tracks(data, stems=stems, stem_groups=stem_groups)
    if layout == "musdb":
        return data_lib.musdb_tracks(data, stems=stems, stem_groups=stem_groups, subset="test")
    return data_lib.folder_tracks(data, stems=stems, stem_groups=stem_groups)


def can_prune(teacher: ModelConfig, student: ModelConfig) -> bool:
    """Whether :func:`pruned_student` applies: a shared stemtf trunk, and a student of the same stems and depth, no wider.

    A smaller kernel (by an even number of taps: 5 -> 3) keeps the teacher's central taps.
    """
    return (
        teacher.trunk == "shared" and teacher.unet.variant == "stemtf" and teacher.masks == "ratio"
        and len(student.unet.filters) == len(teacher.unet.filters)
        and all(s <= t for s, t in zip(student.unet.filters, teacher.unet.filters))
        and student.unet.head_filters <= teacher.unet.head_filters and student.max_bins == teacher.max_bins
        and student.unet.kernel_size <= teacher.unet.kernel_size
        and (teacher.unet.kernel_size - student.unet.kernel_size) % 2 == 0 and student.stems == teacher.stems
    )


def _keep(kernel: np.ndarray, count: int, axis: int) -> np.ndarray:
    """The ``count`` output channels of a convolution with the largest L1 norm (their importance), in order."""
    norms = np.abs(kernel).sum(axis=tuple(i for i in range(kernel.ndim) if i != axis))
    return np.sort(np.argsort(-norms, kind="stable")[:count])


def pruned_student(teacher: keras.Model, teacher_config: ModelConfig, config: ModelConfig) -> keras.Model:
    """The student ``config`` built from the teacher's own trunk: each level keeps its most important channels.

    Every encoder and decoder convolution keeps the output channels whose kernels have the largest
    L1 norm, its batch norm keeps theirs, and the next convolution (across the skip connections)
    keeps the matching input channels; the mask heads are copied, reading the last level's kept
    channels (all of them unless the student has fewer ``head_filters``). A student with a smaller
    kernel keeps the central taps of every kernel (with "same" padding and stride 2 they line up).
    The student then computes exactly what the teacher computes with the other channels silenced
    (and the outer taps zeroed), and distillation starts from there instead of from random weights.

    Raises:
        OptionError: the teacher is not a shared stemtf trunk, or the student is deeper or wider (see :func:`can_prune`).
    """
    if not can_prune(teacher_config, config):
        raise OptionError("init", "{option} 'prune' needs a teacher with one shared stemtf trunk and a student of "
                                  "its stems and depth, no wider; use 'scratch'.")
    student = build_model(config)
    source, target = teacher.get_layer("unet"), student.get_layer("unet")
    depth = len(config.unet.filters)
    teacher_decoder = list(teacher_config.unet.filters[:-1])[::-1] + [teacher_config.unet.head_filters]
    student_decoder = list(config.unet.filters[:-1])[::-1] + [config.unet.head_filters]

    crop = (teacher_config.unet.kernel_size - config.unet.kernel_size) // 2
    taps = range(crop, crop + config.unet.kernel_size)  # the central taps

    def copy(name: str, kernel_slices: tuple, channels: np.ndarray) -> None:
        kernel, bias = source.get_layer(f"{name}_conv_{level}").get_weights()
        target.get_layer(f"{name}_conv_{level}").set_weights([kernel[kernel_slices], bias[channels]])
        norm = source.get_layer(f"{name}_bn_{level}").get_weights()  # gamma, beta, mean, variance
        target.get_layer(f"{name}_bn_{level}").set_weights([w[channels] for w in norm])

    encoder_keep, inputs = [], np.arange(config.num_channels)
    for level, count in enumerate(config.unet.filters):
        kernel = source.get_layer(f"encoder_conv_{level}").get_weights()[0]  # (k, k, in, out)
        channels = _keep(kernel, count, axis=3)
        copy("encoder", np.ix_(taps, taps, inputs, channels), channels)
        encoder_keep.append(channels)
        inputs = channels
    for level, count in enumerate(student_decoder):
        kernel = source.get_layer(f"decoder_conv_{level}").get_weights()[0]  # transposed: (k, k, out, in)
        channels = _keep(kernel, count, axis=2) if count < teacher_decoder[level] else np.arange(count)
        copy("decoder", np.ix_(taps, taps, channels, inputs), channels)
        if level < depth - 1:  # the next level sees [these channels, the skip of the encoder level below]
            inputs = np.concatenate([channels, teacher_decoder[level] + encoder_keep[depth - 2 - level]])
    for stem in config.stems:  # ``channels``: the last decoder level's kept outputs, the heads' inputs
        kernel, bias = teacher.get_layer(f"head_{stem}").get_weights()
        student.get_layer(f"head_{stem}").set_weights([kernel[:, :, channels, :], bias])
    return student


def _teacher_digest(directory: pathlib.Path) -> str:
    """A digest of a model directory's config and weights: cached stems belong to these exact weights."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".json", ".h5")):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def cached_teacher_tracks(
    teacher: str | os.PathLike, recordings: Sequence[data_lib.Track], cache_dir: str | os.PathLike, *,
    on_status=None,
) -> list[data_lib.Track]:
    """Every recording as a labelled track whose stems are the teacher's own stems of it, separated once and cached.

    The teacher separates each recording with :class:`~stemtf.Separator` (its calibration, full-band
    extension and chunking: the stems a user hears) into FLAC files under
    ``cache_dir/NAME-DIGEST/STEM.flac``; the digest covers the teacher's config and weights and the
    recording's path, size and modification time, so a changed teacher or file is separated again and
    a resumed run separates nothing. Training then needs no teacher in the loop: the stems sum to the
    recording (the teacher's masks sum to one), and the data pipeline augments stems and mixture together.

    Raises:
        ModelError: unknown teacher. AudioError: a recording cannot be read. OutputError: the cache cannot be written.
    """
    import hashlib

    from stemtf.config import load_model_config as load_config_of
    from stemtf.separator import Separator

    config, directory = load_config_of(teacher)
    teacher_digest = _teacher_digest(directory)
    separator = None
    tracks = []
    for recording in recordings:
        (source,) = next(iter(recording.stems.values()))
        path = pathlib.Path(source.path)
        info = path.stat()
        key = hashlib.sha256(f"{teacher_digest}|{path}|{info.st_size}|{info.st_mtime_ns}".encode()).hexdigest()[:16]
        folder = pathlib.Path(cache_dir) / f"{path.stem}-{key}"
        files = {stem: folder / f"{stem}.flac" for stem in config.stems}
        if not all(f.is_file() for f in files.values()):
            if separator is None:
                separator = Separator.from_pretrained(directory, runtime="keras")
            if on_status is not None:
                on_status(f"the teacher separates {path.name} once (cached in {folder})")
            separator.separate_file(path, output_dir=folder, filename="{stem}.{ext}", fmt="flac", bit_depth=24, overwrite=True)
        tracks.append(data_lib.Track(
            name=recording.name, num_samples=recording.num_samples, sample_rate=recording.sample_rate,
            stems={stem: (data_lib.AudioSource(str(files[stem])),) for stem in config.stems},
        ))
    return tracks


def teacher_targets(teacher: keras.Model, stems: Sequence[str], *, max_bins: int) -> TargetsFunction:
    """A function from a batch of mixture magnitudes to the teacher's stems ``{stem: mask * mixture}``.

    The student may see fewer bins than the teacher (``max_bins``: a deeper student needs a
    multiple of its own stride); the teacher always sees its own bins, zero-padded.
    """

    def targets(mixture: tf.Tensor) -> dict[str, tf.Tensor]:
        teacher_bins = teacher.input_shape[2]
        padded = mixture if teacher_bins == max_bins else tf.pad(mixture, [[0, 0], [0, 0], [0, teacher_bins - max_bins], [0, 0]])
        masks = teacher(padded, training=False)
        return {stem: tf.cast(masks[stem][:, :, :max_bins], tf.float32) * mixture for stem in stems}

    return targets


def distill(
    teacher: str | os.PathLike,
    audio: Sequence[str | os.PathLike],
    *,
    output_dir: str | os.PathLike,
    trunk_width: float = DEFAULT_TRUNK_WIDTH,
    filters: Sequence[int] | None = None,
    head_filters: int | None = None,
    kernel_size: int | None = None,
    dropout_rate: float | None = None,
    name: str | None = None,
    init: str = "auto",
    prune_from: str | os.PathLike | None = None,
    targets: str = "online",
    validation_data: str | os.PathLike | None = None,
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    steps: int = 20_000,
    batch_size: int = options.DEFAULT_BATCH_SIZE,
    learning_rate: float = 3e-4,
    num_frames: int | None = None,
    warmup_steps: int = 0,
    augmentation: data_lib.Augmentation | None = data_lib.DEFAULT_AUGMENTATION,
    checkpoint_every: int = options.DEFAULT_CHECKPOINT_EVERY,
    validation_crops: int = 4,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    tensorboard: bool | None = None,
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train a smaller student to reproduce ``teacher``'s stems on unlabelled ``audio``.

    Args:
        teacher: The teacher model (name or directory).
        audio: Unlabelled music: files, folders (searched recursively) or globs.
        output_dir: The student's model directory, written at every checkpoint (``resume`` continues it).
        trunk_width, filters, head_filters, kernel_size, dropout_rate, name: The student's geometry and name (see
            :func:`student_config`; the name defaults to ``TEACHER-lite``).
        init: How the student starts: ``prune`` (the teacher's most important channels, :func:`pruned_student`),
            ``scratch`` (random weights), or ``auto`` (``prune`` where the teacher has one shared stemtf trunk).
        prune_from: The model ``prune`` starts from instead of the teacher, e.g. an earlier, wider
            student of the same teacher; implies ``prune``.
        targets: ``online``: the teacher labels every augmented example (a forward pass per step); ``cached``:
            it separates each recording once and the student trains on those stems (:func:`cached_teacher_tracks`).
        validation_data: Labelled tracks (a folder, CSV or MUSDB18) scored against their real stems
            at every checkpoint (``val_<stem>_sdr``); None: no validation.
        stem_groups: How the validation data's files make the teacher's stems, e.g. ``{"other": ["other", "piano"]}``.
        steps, batch_size, learning_rate, num_frames, warmup_steps, augmentation, checkpoint_every,
        validation_crops, seed, resume, overwrite, tensorboard, progress: as for :func:`stemtf.train.fit`.

    Returns the student's :class:`~stemtf.train.TrainingResult`.

    Raises:
        ModelError: unknown teacher, or ``output_dir`` holds a model and neither ``resume`` nor ``overwrite``.
        DataError: no audio, unreadable audio, or bad validation data.
        OptionError: a bad argument.
    """
    config, source_config, prune = student_plan(load_model_config(teacher)[0], init=init, targets=targets, prune_from=prune_from, geometry=dict(
        trunk_width=trunk_width, filters=filters, head_filters=head_filters, kernel_size=kernel_size, dropout_rate=dropout_rate, name=name))
    train_tracks = audio_tracks(audio, stems=config.stems)
    held_out = [] if validation_data is None else labelled_tracks(validation_data, stems=config.stems, stem_groups=stem_groups)
    teacher_model = None
    if targets == "online" or (prune and prune_from is None and not resume):
        teacher_model, _ = load_model(teacher)
        teacher_model.trainable = False
    train_tracks, augmentation, targets_function = _teaching(
        targets, teacher, teacher_model, config, train_tracks, augmentation, pathlib.Path(output_dir), resume=resume,
        overwrite=overwrite)
    with tempfile.TemporaryDirectory(prefix="stemtf-distill-") as scratch:
        start = None
        if prune and not resume:
            source_model = teacher_model if prune_from is None else load_model(prune_from)[0]
            start = save_model(pruned_student(source_model, source_config, config), config, pathlib.Path(scratch) / "pruned")
        return fit(
            config, (train_tracks, held_out), output_dir=output_dir, steps=steps, batch_size=batch_size,
            learning_rate=learning_rate, num_frames=num_frames, warmup_steps=warmup_steps, augmentation=augmentation,
            checkpoint_every=checkpoint_every, validation_crops=validation_crops, seed=seed, resume=resume,
            overwrite=overwrite, tensorboard=tensorboard, progress=progress, from_model=start, targets=targets_function,
        )


def student_plan(teacher_config: ModelConfig, *, init: str, targets: str, prune_from, geometry: dict) -> tuple[ModelConfig, ModelConfig, bool]:
    """``(student config, config of the model pruned from, whether to prune)``, once the choices are checked
    (``geometry``: :func:`student_config`'s keywords); the CLI calls it before the teacher loads."""
    if init not in INITS:
        raise OptionError("init", f"{{option}} must be one of {', '.join(INITS)}. Received {init!r}.")
    if targets not in TEACHER_TARGETS:
        raise OptionError("targets", f"{{option}} must be one of {', '.join(TEACHER_TARGETS)}. Received {targets!r}.")
    config = student_config(teacher_config, **geometry)
    if prune_from is None:
        return config, teacher_config, init == "prune" or (init == "auto" and can_prune(teacher_config, config))
    if init == "scratch":
        raise OptionError("prune_from", "{option} prunes a model to start from: it needs {option:init} 'prune' or 'auto', not 'scratch'.")
    source_config, _ = load_model_config(prune_from)
    if not can_prune(source_config, config):
        raise OptionError("prune_from", f"{{option}} {str(prune_from)!r} cannot be pruned into the student: it needs one "
                                        "shared stemtf trunk with the student's stems and depth, no narrower.")
    return config, source_config, True


def _teaching(targets: str, teacher, teacher_model, config: ModelConfig, train_tracks, augmentation, output_dir: pathlib.Path,
              *, resume: bool, overwrite: bool):
    """``(training tracks, augmentation, targets function or None)`` for ``targets`` ``online`` or ``cached``."""
    if targets == "online":
        return train_tracks, augmentation, teacher_targets(teacher_model, config.stems, max_bins=config.max_bins)
    check_output_dir(output_dir, config, resume=resume, overwrite=overwrite)  # before hours of separation
    train_tracks = cached_teacher_tracks(teacher, train_tracks, output_dir / TEACHER_STEMS_DIR)
    if augmentation is data_lib.DEFAULT_AUGMENTATION:  # the cached stems belong to their recording: no remixing
        augmentation = dataclasses.replace(augmentation, remix_probability=0.0)
    return train_tracks, augmentation, None
