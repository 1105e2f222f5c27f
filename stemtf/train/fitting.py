"""Train and fine-tune separation models on one machine or several workers: :func:`fit`, step by step.

:func:`fit` wraps the mask model in a training model that multiplies every stem's mask by the
mixture magnitude and minimises Spleeter's loss (:mod:`stemtf.train.objective`). Every
``checkpoint_every`` steps it validates on held-out tracks and rewrites the output directory as a
loadable model plus a ``checkpoint/`` folder that ``resume=True`` continues from
(:mod:`stemtf.train.checkpoints`). TensorBoard logs go to ``logs/``. On one machine the loop is
Keras ``model.fit``; on several workers (``strategy="multi-worker"``) it is
:func:`stemtf.train.distributed.fit_loop`, which runs the same compiled steps and callbacks.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence

import keras
import tensorflow as tf

from stemtf import data as data_lib
from stemtf import options
from stemtf.config import ModelConfig, load_model_config
from stemtf.errors import DataError, DependencyError, ModelError, OptionError
from stemtf.model import build_model, load_model
from stemtf.train import distributed
from stemtf.train.checkpoints import CHECKPOINT_DIR, LOG_DIR, Checkpointer, check_output_dir, restore_checkpoint
from stemtf.train.objective import learning_rate_schedule, loss_weights, stem_losses, stem_metrics, training_model

ProgressCallback = Callable[[int, int, Mapping[str, float]], None]
TargetsFunction = Callable[[tf.Tensor], Mapping[str, tf.Tensor]]


def initialise_from(model: keras.Model, config: ModelConfig, source: str | os.PathLike) -> list[str]:
    """Copy weights from a trained model (name or directory) into ``model``.

    Same stems: every weight. Different stems: the trunk (the nested ``unet`` model) and the heads
    of stems both models have; the other heads keep their fresh initialisation. With one trunk per
    stem (``trunk: per_stem``, Spleeter's layout) each shared stem brings its own trunk and head; a
    new stem's trunk starts fresh.

    Returns:
        Names of the layers whose weights were copied.

    Raises:
        ModelError: the source is missing, or its input geometry or network layout differs from ``config``.
    """
    source_model, source_config = load_model(source)
    for field in ("sample_rate", "num_channels", "n_fft", "hop_length", "max_bins", "unet", "trunk", "masks"):
        mine, theirs = getattr(config, field), getattr(source_config, field)
        if mine != theirs:
            raise ModelError(
                f"Cannot fine-tune from {str(source)!r}: its {field} is {theirs!r} but the config's is {mine!r}; "
                f"use the same {field} as the source model."
            )
    if tuple(source_config.stems) == tuple(config.stems):
        model.set_weights(source_model.get_weights())
        return [layer.name for layer in model.layers if layer.weights]
    copied = []
    if config.trunk == "shared":
        copied.append("unet")
        model.get_layer("unet").set_weights(source_model.get_layer("unet").get_weights())
    for stem in config.stems:
        if stem in source_config.stems:
            names = [f"head_{stem}"] + ([f"unet_{stem}"] if config.trunk == "per_stem" else [])
            for name in names:
                model.get_layer(name).set_weights(source_model.get_layer(name).get_weights())
            copied.extend(names)
    return copied


def freeze_encoder_layers(model: keras.Model) -> list[str]:
    """Make the trunk's (or every per-stem trunk's) ``encoder_*`` layers untrainable (their batch norms then run in inference mode)."""
    frozen = []
    trunks = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.startswith("unet")]
    for trunk in trunks:
        for layer in trunk.layers:
            if layer.name.startswith("encoder_"):
                layer.trainable = False
                frozen.append(layer.name if len(trunks) == 1 else f"{trunk.name}/{layer.name}")
    return frozen


@dataclasses.dataclass
class TrainingResult:
    """What :func:`fit` returns.

    Attributes:
        model: The trained masks model (as :func:`stemtf.model.build_model` returns).
        config: Its config.
        output_dir: The loadable model directory.
        step: Optimizer steps done in total (including resumed ones).
        history: One dict of losses and metrics per checkpoint, ``{"step": ..., "loss": ..., ...}``.
    """

    model: keras.Model
    config: ModelConfig
    output_dir: pathlib.Path
    step: int
    history: list[dict[str, float]]


def inherited_mask_exponent(source: ModelConfig, stems: Sequence[str]) -> float | dict[str, float]:
    """The mask calibration a fine-tune with ``stems`` takes from ``source``: a stem the source has keeps
    its exponent; a new stem takes the mean of the source's."""
    if not isinstance(source.mask_exponent, tuple):
        return source.mask_exponent
    own = dict(zip(source.stems, source.mask_exponent))
    mean = round(sum(own.values()) / len(own), 4)
    return {stem: own.get(stem, mean) for stem in stems}


def fit(
    config: ModelConfig,
    data: str | os.PathLike | tuple[Sequence[data_lib.Track], Sequence[data_lib.Track]],
    *,
    output_dir: str | os.PathLike,
    steps: int = 100_000,
    batch_size: int = 4,
    learning_rate: float = 1e-4,
    lr_schedule: str = "cosine",
    warmup_steps: int = 0,
    num_frames: int | None = None,
    layout: str = "auto",
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    stem_weights: Mapping[str, float] | None = None,
    validation_fraction: float = 0.1,
    validation_tracks: Sequence[str] | None = None,
    validation_crops: int = 4,
    augmentation: data_lib.Augmentation | None = data_lib.DEFAULT_AUGMENTATION,
    seed: int = 0,
    resume: bool = False,
    from_model: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    checkpoint_every: int = 1000,
    overwrite: bool = False,
    mixed_precision: bool | None = None,
    tensorboard: bool | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: ProgressCallback | None = None,
    strategy: str = "auto",
    worker_timeout: float = distributed.DEFAULT_WORKER_TIMEOUT,
    targets: TargetsFunction | None = None,
) -> TrainingResult:
    """Train (or fine-tune, or resume training) a separation model.

    Args:
        config: The model to train; its stems name the targets.
        data: A data folder, CSV manifest or MUSDB18 folder (see :mod:`stemtf.data`), or
            ``(train_tracks, validation_tracks)``. Partly labelled tracks (unknown stems, sums of
            stems) train with per-output sample weights and one more output per sum.
        output_dir: Model directory written at every checkpoint (``config.json`` + weights), with
            ``checkpoint/`` (for ``resume``) and ``logs/`` (TensorBoard).
        steps: Total optimizer steps (a resumed run counts the steps already done).
        batch_size: Examples per step (global, across GPUs and workers; a multiple of their number).
        learning_rate: Peak learning rate of Adam.
        lr_schedule: ``cosine`` (decay to a tenth at ``steps``) or ``constant``.
        warmup_steps: Linear warm-up steps of the cosine schedule.
        num_frames: STFT frames per example, a multiple of ``2 ** len(config.unet.filters)``;
            default ``config.segment_frames``.
        layout: Data layout: ``auto``, ``folder``, ``csv`` or ``musdb``.
        stem_groups: Model stem -> file stems summed into it, e.g. ``{"other": ["other", "piano"]}``.
        stem_weights: Weight of each stem's loss in the total, e.g. ``{"vocals": 2}`` (a stem not
            named weighs 1; sums of stems weigh 1). None: every loss weighs 1.
        validation_fraction: Share of tracks held out (folder and CSV layouts; MUSDB18 uses its
            official split); 0 disables validation.
        validation_tracks: Names of the tracks to hold out instead.
        validation_crops: Fixed crops per validation track.
        augmentation: Training augmentation, or None.
        seed: Seed of the data pipeline, the split and the weights' initialisation.
        resume: Continue from ``output_dir/checkpoint``; required when one exists.
        overwrite: Start again in an ``output_dir`` that already holds a model or a checkpoint
            (without ``resume`` or ``overwrite`` that is an error: a model is never replaced by accident).
        from_model: A trained model (name or directory) to start from: same stems continue
            training, different stems keep the trunk (and the heads of shared stems). The result
            keeps the source's ``mask_exponent`` unless ``config`` sets one other than 1 (per stem:
            see :func:`inherited_mask_exponent`).
        freeze_encoder: Keep the trunk's encoder layers fixed (fine-tuning).
        checkpoint_every: Steps between validation + checkpoint.
        mixed_precision: float16 compute; default: only when a GPU exists.
        tensorboard: Write TensorBoard logs to ``output_dir/logs`` (scalars, and the audio and
            spectrograms of one held-out example at every checkpoint); default: when the
            ``tensorboard`` package is installed.
        callbacks: Extra Keras callbacks.
        progress: Called after every step as ``progress(step, steps, logs)``.
        strategy: ``auto``: this machine (all its GPUs). ``multi-worker``: one of several processes
            described by ``TF_CONFIG`` (``MultiWorkerMirroredStrategy``); every worker runs ``fit``
            with the same arguments, ``output_dir`` and ``data`` on storage they all see; only the
            chief (the ``chief`` task, else worker 0) writes there. Create no other TensorFlow
            state in the process before, and call ``fit`` once per process.
        worker_timeout: Seconds a worker waits for the others before failing (``multi-worker``).
        targets: Distillation (:mod:`stemtf.train.distill`): a function from a batch of mixture
            magnitudes to the training targets ``{stem: magnitude}`` (a teacher's stems), which then
            replace the training data's stems; every example counts in full. The validation data
            keep their own stems, so validation still scores against the truth.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        DataError: bad data (see :mod:`stemtf.data`).
        ModelError: ``from_model`` is incompatible, the checkpoint does not match, or ``output_dir``
            holds a model and neither ``resume`` nor ``overwrite`` is set.
        ClusterError: ``TF_CONFIG`` is missing or malformed, or a worker was lost (restart all of
            them with ``resume``).
        OptionError: a bad argument (a ``ValueError``).
    """
    output_dir = pathlib.Path(output_dir)
    num_frames = config.segment_frames if num_frames is None else num_frames
    options.check_training(
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, checkpoint_every=checkpoint_every,
        from_model=from_model, freeze_encoder=freeze_encoder, num_frames=num_frames, config=config,
    )
    options.check_stem_weights(None if stem_weights is None else dict(stem_weights), config.stems)
    if from_model is not None and config.mask_exponent == 1.0:
        # A fine-tune keeps its source's mask calibration unless the config sets its own.
        config = config.replace(mask_exponent=inherited_mask_exponent(load_model_config(from_model)[0], config.stems))
    state = check_output_dir(output_dir, config, resume=resume, overwrite=overwrite)
    # Before any other TensorFlow work: a multi-worker strategy starts this process's server.
    cluster = distributed.make_cluster(strategy, worker_timeout=worker_timeout)
    replicas = cluster.strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise OptionError(
            "batch_size", f"{{option}} (global) must be a multiple of the {replicas} replicas training together. Received {batch_size}."
        )

    # 1. Data: the split, then endless augmented training crops and fixed validation crops.
    if isinstance(data, (str, os.PathLike)):
        train_tracks, held_out = data_lib.training_split(
            data, stems=config.stems, stem_groups=stem_groups, layout=layout,
            validation_fraction=validation_fraction, validation_tracks=validation_tracks, seed=seed,
        )
    else:
        train_tracks, held_out = list(data[0]), list(data[1])
    start_step = 0 if state is None else int(state["step"])
    # Partly labelled tracks anywhere: both datasets yield the same sums and sample weights.
    every_track = [*train_tracks, *held_out]
    sums = data_lib.stem_sums(every_track) if any(t.partly_labelled for t in every_track) else None

    # 2. Model and optimizer (restored from the checkpoint when resuming).
    keras.utils.set_random_seed(seed)
    model, train_model = _build(
        config, cluster.strategy, from_model=from_model if state is None else None, freeze_encoder=freeze_encoder,
        mixed_precision=mixed_precision, learning_rate=learning_rate, lr_schedule=lr_schedule, steps=steps,
        warmup_steps=warmup_steps, sums=sums, stem_weights=stem_weights,
    )
    if state is not None:
        with cluster.strategy.scope():  # optimizer slots are mirrored variables under a strategy
            restore_checkpoint(output_dir / CHECKPOINT_DIR, model, train_model)
    if start_step >= steps:
        return TrainingResult(model, config, output_dir, start_step, list(state.get("history", [])))

    def make_datasets(num_shards: int, shard_index: int, shard_batch_size: int) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
        return _datasets(
            config, train_tracks, held_out, num_frames=num_frames, batch_size=batch_size, augmentation=augmentation,
            seed=seed, first_example=start_step * batch_size, validation_crops=validation_crops,
            num_shards=num_shards, shard_index=shard_index, shard_batch_size=shard_batch_size, sums=sums,
            targets=targets,
        )

    # 3. Callbacks: validate + checkpoint every `checkpoint_every` steps, progress, TensorBoard.
    new_state = state or {
        "config": config.to_dict(),
        "seed": seed,
        "batch_size": batch_size,
        "freeze_encoder": freeze_encoder,
        "from_model": None if from_model is None else str(from_model),
        "train_tracks": [t.name for t in train_tracks],
        "validation_tracks": [t.name for t in held_out],
    }
    new_state["batch_size"] = batch_size  # a resume with another --batch-size records it (the next resume keeps it)
    if state is None and stem_weights is not None:
        new_state["stem_weights"] = {stem: float(weight) for stem, weight in stem_weights.items()}
    # Workers other than the chief write their checkpoints to a folder deleted at the end rather than
    # skip them: TensorFlow's multi-worker guide has every worker save, as saving may read variables
    # through collective operations, and it keeps the workers' steps in lockstep.
    write_dir = output_dir if cluster.is_chief else pathlib.Path(tempfile.mkdtemp(prefix="stemtf-worker-"))
    checkpointer = Checkpointer(
        mask_model=model, config=config, output_dir=write_dir, steps=steps, state=new_state, progress=progress
    )
    example_track = (held_out or train_tracks)[0]  # a held-out track when there is one
    all_callbacks = [
        checkpointer, *callbacks,
        *_tensorboard(write_dir, tensorboard, mask_model=model, config=config, track=example_track, num_frames=num_frames),
    ]

    # 4. The loop: one Keras "epoch" per checkpoint interval, continuing from the step reached.
    steps_per_epoch = min(checkpoint_every, steps)
    initial_epoch = start_step // steps_per_epoch
    epochs = initial_epoch + math.ceil((steps - start_step) / steps_per_epoch)
    write_dir.mkdir(parents=True, exist_ok=True)
    failure = None
    try:
        if cluster.multi_worker:  # Keras 3's fit fails under MultiWorkerMirroredStrategy
            distributed.fit_loop(
                cluster, train_model, make_datasets, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                epochs=epochs, initial_epoch=initial_epoch, callbacks=all_callbacks,
            )
        else:
            train_data, validation_data = make_datasets(1, 0, batch_size)
            train_model.fit(
                train_data,
                validation_data=validation_data,
                steps_per_epoch=steps_per_epoch,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=all_callbacks,
                shuffle=False,
                verbose=0,
            )
    except tf.errors.OpError as error:
        failure = _data_error(error)
        if failure is None:
            raise
    finally:
        if write_dir != output_dir:
            shutil.rmtree(write_dir, ignore_errors=True)
    if failure is not None:
        # Raised outside the except block, so that TensorFlow's error and its traceback (which hold
        # the dataset iterator and its reader threads) are released first: held, they hang the exit.
        raise failure
    return TrainingResult(model, config, output_dir, checkpointer.step(), list(checkpointer.state["history"]))


def _data_error(error: Exception) -> DataError | None:
    """The stemtf error a data-pipeline read raised (a corrupt file), out of TensorFlow's wrapping; None if none.

    Reads run inside ``tf.numpy_function``, which re-raises every Python error as an OpError whose
    message quotes it: training stops with that one line (naming the file) instead of a traceback.
    """
    found = re.search(r"(?:AudioError|DataError): (.+)", getattr(error, "message", "") or str(error))
    return DataError(f"Training stopped: {found.group(1).strip()}") if found else None


def _build(
    config: ModelConfig, strategy: tf.distribute.Strategy, *, from_model, freeze_encoder: bool, mixed_precision: bool | None, learning_rate: float,
    lr_schedule: str, steps: int, warmup_steps: int, sums: Sequence[tuple[str, ...]] | None = None,
    stem_weights: Mapping[str, float] | None = None,
) -> tuple[keras.Model, keras.Model]:
    """The masks model (initialised from ``from_model`` when given) and its compiled training wrapper.

    With ``sums`` (partly labelled data: the datasets carry sample weights) the wrapper also outputs
    those sums and the SDR metrics are weighted, so that unlabelled stems are left out of them.
    """
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    mixed_precision = has_gpu if mixed_precision is None else mixed_precision
    previous_policy = keras.config.dtype_policy()
    try:
        # Layers take their dtype policy when built; restore the global one right after.
        keras.config.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
        with strategy.scope():
            model = build_model(config)
            if from_model is not None:
                initialise_from(model, config, from_model)
            if freeze_encoder:
                freeze_encoder_layers(model)
            train_model = training_model(model, config.stems, sums or ())
            optimizer = keras.optimizers.Adam(
                learning_rate_schedule(learning_rate, steps=steps, schedule=lr_schedule, warmup_steps=warmup_steps)
            )
            metrics = {"metrics" if sums is None else "weighted_metrics": stem_metrics(config.stems)}
            weights = loss_weights(config.stems, stem_weights, sums or ())
            train_model.compile(optimizer=optimizer, loss=stem_losses(config.stems, sums or ()), loss_weights=weights, **metrics)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model, train_model


def _datasets(
    config: ModelConfig, train_tracks, held_out, *, num_frames: int, batch_size: int, augmentation, seed: int,
    first_example: int, validation_crops: int, num_shards: int = 1, shard_index: int = 0,
    shard_batch_size: int | None = None, sums: Sequence[tuple[str, ...]] | None = None,
    targets: TargetsFunction | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """The endless training stream (continuing at ``first_example``) and the fixed validation set (or None).

    With ``num_shards``, the training stream is shard ``shard_index`` of every global batch of
    ``batch_size`` (see :func:`stemtf.data.training_dataset`); both datasets come in batches of
    ``shard_batch_size`` (default: ``batch_size // num_shards``; less when a worker has several GPUs).
    """
    geometry = {
        "stems": config.stems, "sample_rate": config.sample_rate, "num_channels": config.num_channels,
        "n_fft": config.n_fft, "hop_length": config.hop_length, "max_bins": config.max_bins,
        "num_frames": num_frames, "sums": sums,
    }
    shard_batch_size = shard_batch_size or batch_size // num_shards
    train_data = data_lib.training_dataset(
        train_tracks, augmentation=augmentation, seed=seed, first_example=first_example, batch_size=batch_size,
        num_shards=num_shards, shard_index=shard_index, **geometry,
    )
    if targets is not None:
        train_data = train_data.map(lambda mixture, stems, *weights: (
            mixture, targets(mixture), *[{k: tf.ones_like(w) for k, w in weight.items()} for weight in weights]
        ))
    if shard_batch_size != batch_size // num_shards:
        train_data = train_data.rebatch(shard_batch_size)  # split between this worker's GPUs, in order
    validation_data = None
    if held_out:
        validation_data = data_lib.validation_dataset(
            held_out, crops_per_track=validation_crops, batch_size=shard_batch_size, **geometry
        )
    return train_data, validation_data


def _tensorboard(
    output_dir: pathlib.Path, enabled: bool | None, *, mask_model: keras.Model, config: ModelConfig,
    track: data_lib.Track, num_frames: int,
) -> list[keras.callbacks.Callback]:
    """TensorBoard callbacks when asked (default: when the package is installed): the scalars, and
    the audio and spectrograms of one example at every checkpoint (:mod:`stemtf.train.summaries`)."""
    available = importlib.util.find_spec("tensorboard") is not None
    if enabled and not available:
        raise DependencyError("TensorBoard logs", "tensorboard", "train")
    if not (available if enabled is None else enabled):
        return []
    from stemtf.train.summaries import ExampleSummaries

    log_dir = output_dir / LOG_DIR
    return [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
        ExampleSummaries(mask_model=mask_model, config=config, track=track, log_dir=log_dir, num_frames=num_frames),
    ]
