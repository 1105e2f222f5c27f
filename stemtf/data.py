"""Training data: track sources (folders of stems, CSV manifests, MUSDB18) and the tf.data pipeline.

Every source becomes a list of :class:`Track`: a name, a length, and for every model stem the audio
files summed to make it (none: the stem is silent in that track). The pipeline then draws random
crops with partial reads (never decoding a whole file per example), augments them (random gain per
stem, channel swap, stems remixed across tracks), and turns them into magnitude spectrograms with
:func:`stemtf.spectral.stft`. Everything random is drawn from ``numpy.random.default_rng([seed,
example_index])``, so a pipeline is deterministic given its seed and can restart at any example.

Layouts:

* **folder**: ``ROOT/<track>/<stem>.<ext>``; ``mixture.<ext>`` is the mixture if present, else the
  sum of the stems.
* **csv**: a Spleeter-style manifest with ``mixture_path`` (or ``mix_path``), ``<stem>_path`` columns
  and an optional ``duration`` column (seconds); paths are relative to the manifest's folder (or
  ``root``); an empty cell is a silent stem.
* **musdb**: a local MUSDB18 copy read with the ``musdb`` package (``.stem.mp4`` or the WAV "HQ"
  release), with its official train/valid/test splits.

File stems are mapped to model stems by ``stem_groups`` (``{"other": ["other", "piano"]}`` sums two
files into ``other``); a model stem not named there takes the file stem of its own name. An audio
file no model stem takes is an error rather than silently left out of the mixture.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import pathlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence

import numpy as np
import soundfile as sf
import soxr
import tensorflow as tf

from stemtf import audio, spectral
from stemtf.errors import DataError

LAYOUTS = ("auto", "folder", "csv", "musdb")
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".mp4", ".wma", ".webm"}
)
MIXTURE = "mixture"
MUSDB_SOURCES = {"drums": 1, "bass": 2, "other": 3, "vocals": 4}  # stream index in a .stem.mp4


@dataclasses.dataclass(frozen=True)
class AudioSource:
    """One audio file, or one stream of a multi-stream container (MUSDB18 ``.stem.mp4``).

    Attributes:
        path: The file.
        stream: Absolute ffmpeg stream index in ``path``, or None for the file's only audio.
    """

    path: str
    stream: int | None = None


@dataclasses.dataclass(frozen=True)
class Track:
    """One song: its stems as files, all of the same length and sample rate.

    Attributes:
        name: Track name (folder name, MUSDB name, or manifest path).
        num_samples: Length of every file, in samples at ``sample_rate``.
        sample_rate: Sample rate of the files, in Hz.
        stems: For every model stem in order, the sources summed to make it; ``()`` is silence.
        mixture: The mixture file, or None when the mixture is the sum of the stems.
    """

    name: str
    num_samples: int
    sample_rate: int
    stems: Mapping[str, tuple[AudioSource, ...]]
    mixture: AudioSource | None = None


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random changes applied to every training example (all draws per example, from its seed).

    With augmentation the mixture is always the sum of the augmented stems; mixture files are only
    used without it (validation).

    Attributes:
        gain_range: Each stem is scaled by a factor drawn uniformly from this (linear) range.
        channel_swap_probability: Probability that a stem's left and right channels are swapped.
        remix_probability: Probability that an example takes every stem from an independently
            drawn track and offset instead of all stems from one track.
    """

    gain_range: tuple[float, float] = (0.25, 1.25)
    channel_swap_probability: float = 0.5
    remix_probability: float = 0.5

    def __post_init__(self) -> None:
        low, high = self.gain_range
        if not 0 <= low <= high:
            raise ValueError(f"Argument `gain_range` must be (low, high) with 0 <= low <= high. Received {self.gain_range}.")
        for name in ("channel_swap_probability", "remix_probability"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"Argument `{name}` must be in [0, 1]. Received {value}.")


DEFAULT_AUGMENTATION = Augmentation()


# ---------------------------------------------------------------------------------------------
# Track sources


def _stem_groups(stems: Sequence[str], stem_groups: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """Model stem -> file stems, checked: known keys, no file stem taken twice."""
    stem_groups = dict(stem_groups or {})
    unknown = sorted(set(stem_groups) - set(stems))
    if unknown:
        raise DataError(f"`stem_groups` names {unknown[0]!r}, which is not one of the model's stems {list(stems)}.")
    groups = {stem: tuple(stem_groups.get(stem, (stem,))) for stem in stems}
    owner: dict[str, str] = {}
    for stem, files in groups.items():
        for name in files:
            if name == MIXTURE:
                raise DataError(f"`stem_groups[{stem!r}]` lists {MIXTURE!r}, which is the mixture, not a stem.")
            if name in owner:
                raise DataError(f"File stem {name!r} is taken by both {owner[name]!r} and {stem!r} in `stem_groups`.")
            owner[name] = stem
    return groups


def _probe(source: AudioSource) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` of a source, from its header."""
    if source.stream is None:
        try:
            info = sf.info(source.path)
            return info.frames, info.samplerate
        except (sf.LibsndfileError, RuntimeError, TypeError):
            pass
    reader = audio.open_audio(source.path)
    try:
        if reader.num_samples is None:
            raise DataError(f"Cannot tell the length of {source.path!r}; convert it to WAV or FLAC.")
        return reader.num_samples, reader.sample_rate
    finally:
        reader.close()


def _make_track(
    name: str,
    files: Mapping[str, AudioSource],
    groups: Mapping[str, tuple[str, ...]],
    mixture: AudioSource | None,
    *,
    max_seconds: float | None = None,
    probed: Mapping[AudioSource, tuple[int, int]] | None = None,
) -> Track:
    """Check one track's files (all used, same length and rate) and build its :class:`Track`."""
    taken = {name for group in groups.values() for name in group}
    unused = sorted(set(files) - taken)
    if unused:
        raise DataError(
            f"Track {name!r} has a {unused[0]!r} stem that no model stem takes; merge it into one "
            f"(--stem-group STEM={unused[0]},... on the command line, stem_groups in Python), or remove the file."
        )
    every = dict(files)
    if mixture is not None:
        every[MIXTURE] = mixture
    if not every:
        raise DataError(f"Track {name!r} has no audio files.")
    probed = probed or {}
    shapes = {stem: probed.get(source) or _probe(source) for stem, source in every.items()}
    if len({rate for _, rate in shapes.values()}) > 1:
        found = ", ".join(f"{stem}: {rate} Hz" for stem, (_, rate) in shapes.items())
        raise DataError(f"Track {name!r} mixes sample rates ({found}); resample its files to one rate.")
    if len({length for length, _ in shapes.values()}) > 1:
        found = ", ".join(f"{stem}: {length}" for stem, (length, _) in shapes.items())
        raise DataError(f"Track {name!r} has files of different lengths in samples ({found}); trim or pad them to one length.")
    num_samples, sample_rate = next(iter(shapes.values()))
    if max_seconds is not None:
        num_samples = min(num_samples, round(max_seconds * sample_rate))
    stems = {stem: tuple(files[f] for f in group if f in files) for stem, group in groups.items()}
    return Track(name=name, num_samples=num_samples, sample_rate=sample_rate, stems=stems, mixture=mixture)


def _check_stems_found(tracks: Sequence[Track], stems: Sequence[str], where: str) -> None:
    if not tracks:
        raise DataError(f"No tracks found in {where}.")
    for stem in stems:
        if not any(track.stems[stem] for track in tracks):
            raise DataError(
                f"No track in {where} has a {stem!r} stem; check the model's stems and `stem_groups` "
                f"against the file names."
            )


def folder_tracks(
    root: str | os.PathLike, *, stems: Sequence[str], stem_groups: Mapping[str, Sequence[str]] | None = None
) -> list[Track]:
    """Tracks of a folder laid out as ``ROOT/<track>/<stem>.<ext>``, sorted by name.

    Args:
        root: The folder holding one folder per track.
        stems: The model's stems, in order.
        stem_groups: Model stem -> file stems summed into it (default: the stem's own name).

    Raises:
        DataError: no tracks, a model stem no track has, an audio file no stem takes, two files
            for one stem, or files of different lengths or rates within a track.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"Data folder {str(root)!r} does not exist or is not a folder.")
    groups = _stem_groups(stems, stem_groups)
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if loose:
        raise DataError(
            f"{str(root)!r} holds audio files directly ({loose[0]}, ...); point at the folder that holds "
            "one folder per track (ROOT/<track>/<stem>.<ext>)."
        )
    tracks = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files: dict[str, AudioSource] = {}
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            if path.stem in files:
                raise DataError(f"Track {folder.name!r} has two files for {path.stem!r}; keep one.")
            files[path.stem] = AudioSource(str(path))
        mixture = files.pop(MIXTURE, None)
        tracks.append(_make_track(folder.name, files, groups, mixture))
    _check_stems_found(
        tracks, stems, f"{str(root)!r} (expected ROOT/<track>/<stem>.<ext> with stems {list(stems)})"
    )
    return tracks


def csv_tracks(
    path: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    root: str | os.PathLike | None = None,
) -> list[Track]:
    """Tracks of a Spleeter-style CSV manifest, in row order.

    Columns: ``mixture_path`` or ``mix_path`` (optional), one ``<stem>_path`` per file stem, and
    an optional ``duration`` in seconds that limits the usable length; other columns are ignored.

    Args:
        path: The CSV file.
        stems: The model's stems, in order.
        stem_groups: Model stem -> file stems (column prefixes) summed into it.
        root: Folder the paths are relative to; defaults to the CSV's folder.

    Raises:
        DataError: the CSV is missing or empty, a ``<stem>_path`` column names a stem no model
            stem takes, a file is missing, or lengths differ within a row.
    """
    path = pathlib.Path(path)
    root = pathlib.Path(root) if root is not None else path.parent
    groups = _stem_groups(stems, stem_groups)
    taken = {name for group in groups.values() for name in group}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except FileNotFoundError:
        raise DataError(f"CSV manifest {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"Cannot read CSV manifest {str(path)!r}: {error}.") from None
    mixture_columns = [c for c in columns if c in ("mixture_path", "mix_path")]
    stem_columns = {c[: -len("_path")]: c for c in columns if c.endswith("_path") and c not in mixture_columns}
    unknown = sorted(set(stem_columns) - taken)
    if unknown:
        raise DataError(
            f"CSV manifest {str(path)!r} has a column {stem_columns[unknown[0]]!r} for stem {unknown[0]!r}, "
            f"which no model stem takes (stems: {list(stems)}); rename the column or use `stem_groups`."
        )
    if not stem_columns:
        raise DataError(f"CSV manifest {str(path)!r} has no <stem>_path columns (columns: {columns}).")
    tracks = []
    for number, row in enumerate(rows, start=2):
        def source(column: str, row: dict = row, number: int = number) -> AudioSource | None:
            if not row.get(column):
                return None
            file = root / row[column]
            if not file.is_file():
                raise DataError(f"{path.name} line {number}: {column} {str(file)!r} does not exist.")
            return AudioSource(str(file))

        files = {stem: s for stem, column in stem_columns.items() if (s := source(column)) is not None}
        mixture = source(mixture_columns[0]) if mixture_columns else None
        name = row.get(mixture_columns[0]) if mixture_columns and row.get(mixture_columns[0]) else f"line {number}"
        duration = None
        if row.get("duration"):
            try:
                duration = float(row["duration"])
            except ValueError:
                raise DataError(f"{path.name} line {number}: duration {row['duration']!r} is not a number.") from None
            if duration <= 0:
                raise DataError(f"{path.name} line {number}: duration must be > 0 seconds. Received {duration}.")
        tracks.append(_make_track(name, files, groups, mixture, max_seconds=duration))
    _check_stems_found(tracks, stems, f"CSV manifest {str(path)!r}")
    return tracks


def musdb_tracks(
    root: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    subset: str = "train",
    split: str | None = None,
    is_wav: bool | None = None,
) -> list[Track]:
    """Tracks of a local MUSDB18 copy through the ``musdb`` package (no download).

    Args:
        root: The MUSDB18 folder (holding ``train/`` and ``test/``).
        stems: The model's stems; MUSDB18 has ``vocals``, ``drums``, ``bass`` and ``other``.
        stem_groups: Model stem -> MUSDB sources, e.g. ``{"accompaniment": ["drums", "bass", "other"]}``.
        subset: ``train`` or ``test``.
        split: With ``subset="train"``: ``train`` or ``valid`` (the official validation tracks), or
            None for all of them.
        is_wav: True for the WAV (HQ) release, False for ``.stem.mp4``; None detects it.

    Raises:
        ImportError: ``musdb`` is not installed.
        DataError: the folder is not a MUSDB18 copy, or a stem is not a MUSDB18 source.
    """
    try:
        import musdb
    except ImportError:
        raise ImportError('Reading MUSDB18 needs the musdb package: pip install "stemtf[eval]"') from None
    root = pathlib.Path(root)
    subset_folder = root / subset
    if subset not in ("train", "test"):
        raise DataError(f"MUSDB18 `subset` must be 'train' or 'test'. Received {subset!r}.")
    if not subset_folder.is_dir():
        raise DataError(f"{str(root)!r} is not a MUSDB18 folder: {subset}/ is missing.")
    if is_wav is None:
        is_wav = not any(subset_folder.glob("*.stem.mp4"))
    groups = _stem_groups(stems, stem_groups)
    unknown = sorted({f for group in groups.values() for f in group} - set(MUSDB_SOURCES))
    if unknown:
        raise DataError(
            f"MUSDB18 has no {unknown[0]!r} source (it has {list(MUSDB_SOURCES)}); "
            "map the model's stems onto them with `stem_groups`."
        )
    database = musdb.DB(root=str(root), subsets=[subset], split=split if subset == "train" else None, is_wav=is_wav)
    tracks = []
    for item in database.tracks:
        if is_wav:
            files = {name: AudioSource(source.path) for name, source in item.sources.items()}
            mixture = AudioSource(item.path)
            tracks.append(_make_track(item.name, files, groups, mixture))
        else:
            files = {name: AudioSource(item.path, MUSDB_SOURCES[name]) for name in MUSDB_SOURCES}
            mixture = AudioSource(item.path, 0)
            shape = (int(item.samples), int(item.rate))
            probed = {source: shape for source in [*files.values(), mixture]}
            tracks.append(_make_track(item.name, files, groups, mixture, probed=probed))
    _check_stems_found(tracks, stems, f"MUSDB18 {str(root)!r} ({subset}{'/' + split if split else ''})")
    return tracks


def detect_layout(data: str | os.PathLike) -> str:
    """``csv`` for a ``.csv`` file, ``musdb`` for a folder with ``train/`` and ``test/``, else ``folder``."""
    path = pathlib.Path(data)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"{str(path)!r} is a file but not a .csv manifest; give a data folder or a CSV file.")
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "musdb"
    return "folder"


def split_tracks(
    tracks: Sequence[Track],
    *,
    validation_fraction: float = 0.1,
    validation_tracks: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[list[Track], list[Track]]:
    """Split tracks into ``(train, validation)`` by track, reproducibly.

    Args:
        tracks: All tracks.
        validation_fraction: Share of tracks held out (at least one when > 0 and there are two or
            more tracks); ignored when ``validation_tracks`` is given.
        validation_tracks: Names of the tracks to hold out.
        seed: Seed of the shuffle that picks held-out tracks (the order of ``tracks`` does not matter).
    """
    names = [t.name for t in tracks]
    if validation_tracks is not None:
        missing = sorted(set(validation_tracks) - set(names))
        if missing:
            raise DataError(f"Validation track {missing[0]!r} is not in the data (tracks: {names}).")
        held = set(validation_tracks)
    else:
        if not 0 <= validation_fraction < 1:
            raise DataError(f"`validation_fraction` must be in [0, 1). Received {validation_fraction}.")
        count = round(validation_fraction * len(tracks))
        if validation_fraction > 0 and len(tracks) >= 2:
            count = min(max(count, 1), len(tracks) - 1)
        order = np.random.default_rng(seed).permutation(sorted(names))
        held = set(order[:count].tolist())
    train = [t for t in tracks if t.name not in held]
    validation = [t for t in tracks if t.name in held]
    if not train:
        raise DataError("Every track is held out for validation; leave some for training.")
    return train, validation


def training_split(
    data: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    layout: str = "auto",
    validation_fraction: float = 0.1,
    validation_tracks: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[list[Track], list[Track]]:
    """Load ``(train, validation)`` tracks from a folder, CSV manifest or MUSDB18 copy.

    MUSDB18 uses its official ``train``/``valid`` split; the other layouts :func:`split_tracks`.

    Args:
        layout: ``folder``, ``csv``, ``musdb``, or ``auto`` (see :func:`detect_layout`).
    """
    if layout not in LAYOUTS:
        raise DataError(f"`layout` must be one of {list(LAYOUTS)}. Received {layout!r}.")
    if layout == "auto":
        layout = detect_layout(data)
    if layout == "musdb":
        train = musdb_tracks(data, stems=stems, stem_groups=stem_groups, subset="train", split="train")
        validation = musdb_tracks(data, stems=stems, stem_groups=stem_groups, subset="train", split="valid")
        return train, validation
    if layout == "csv":
        tracks = csv_tracks(data, stems=stems, stem_groups=stem_groups)
    else:
        tracks = folder_tracks(data, stems=stems, stem_groups=stem_groups)
    return split_tracks(tracks, validation_fraction=validation_fraction, validation_tracks=validation_tracks, seed=seed)


# ---------------------------------------------------------------------------------------------
# Reading crops


def _read_stream(source: AudioSource, start: int, num_samples: int, sample_rate: int) -> np.ndarray:
    """Decode one stream of a container with ffmpeg, seeking on the input side (fast)."""
    if shutil.which("ffmpeg") is None:
        raise DataError(f"Reading {source.path!r} needs ffmpeg (apt-get install ffmpeg).")
    command = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{start / sample_rate:.6f}", "-i", source.path,
               "-map", f"0:{source.stream}", "-t", f"{num_samples / sample_rate:.6f}",
               "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "2", "-ar", str(sample_rate), "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"ffmpeg cannot decode {source.path!r}: {message[-1] if message else 'unknown error'}.")
    return np.frombuffer(result.stdout, dtype="<f4").reshape(-1, 2)[:num_samples]


def read_segment(source: AudioSource, start: int, num_samples: int, *, sample_rate: int, num_channels: int) -> np.ndarray:
    """Read ``num_samples`` samples from ``start`` without decoding the rest of the file.

    Returns:
        float32 ``(num_samples, num_channels)``, zero-padded past the end of the file.
    """
    if source.stream is not None:
        block = _read_stream(source, start, num_samples, sample_rate)
    else:
        try:
            with sf.SoundFile(source.path) as handle:
                if start < handle.frames:
                    handle.seek(start)
                    block = handle.read(num_samples, dtype="float32", always_2d=True)
                else:
                    block = np.zeros((0, handle.channels), np.float32)
        except (sf.LibsndfileError, RuntimeError, TypeError):
            reader = audio.open_audio(source.path, offset=start / sample_rate)
            try:
                block = reader.read(num_samples)
            finally:
                reader.close()
    block = audio.convert_channels(block, num_channels)
    if block.shape[0] < num_samples:
        block = np.pad(block, [(0, num_samples - block.shape[0]), (0, 0)])
    return block


def read_crop(
    track: Track,
    start: int,
    num_samples: int,
    *,
    sample_rate: int,
    num_channels: int,
    stems: Sequence[str] | None = None,
    mixture: bool = True,
) -> np.ndarray:
    """Read one crop of a track: the mixture then every stem.

    Args:
        track: The track.
        start: First sample, at ``sample_rate``.
        num_samples: Samples to read, at ``sample_rate`` (resampled from the track's rate).
        sample_rate: Rate of the crop, in Hz.
        num_channels: Channels of the crop.
        stems: Stems to read (default: all of the track's, in order).
        mixture: Whether to put the mixture first (the mixture file, or the sum of the stems).

    Returns:
        float32 ``(int(mixture) + len(stems), num_samples, num_channels)``.
    """
    stems = list(track.stems) if stems is None else list(stems)
    rate = track.sample_rate
    if rate == sample_rate:
        source_start, source_samples = start, num_samples
    else:
        source_start = round(start * rate / sample_rate)
        source_samples = math.ceil(num_samples * rate / sample_rate) + 16

    def read(sources: Sequence[AudioSource]) -> np.ndarray:
        total = np.zeros((source_samples, num_channels), np.float32)
        for source in sources:
            total += read_segment(source, source_start, source_samples, sample_rate=rate, num_channels=num_channels)
        return total

    waveforms = [read(track.stems[stem]) for stem in stems]
    if mixture:
        waveforms.insert(0, read([track.mixture]) if track.mixture is not None else np.sum(waveforms, axis=0))
    stack = np.stack(waveforms)
    if rate != sample_rate:
        resampled = [soxr.resample(w, rate, sample_rate) for w in stack]
        stack = np.stack([np.pad(w, [(0, max(0, num_samples - w.shape[0])), (0, 0)])[:num_samples] for w in resampled])
    return stack.astype(np.float32, copy=False)


class _ExampleReader:
    """Draws training example ``index`` (mixture + stems waveforms) from its own seed."""

    def __init__(self, tracks, stems, num_samples, sample_rate, num_channels, augmentation, seed):
        self.tracks, self.stems, self.num_samples = list(tracks), list(stems), num_samples
        self.sample_rate, self.num_channels = sample_rate, num_channels
        self.augmentation, self.seed = augmentation, seed

    def _draw(self, rng: np.random.Generator) -> tuple[Track, int]:
        track = self.tracks[rng.integers(len(self.tracks))]
        length = int(track.num_samples * self.sample_rate / track.sample_rate)
        return track, int(rng.integers(max(1, length - self.num_samples + 1)))

    def __call__(self, index: np.int64) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(index)])
        kwargs = {"sample_rate": self.sample_rate, "num_channels": self.num_channels}
        track, start = self._draw(rng)
        augmentation = self.augmentation
        if augmentation is None:
            return read_crop(track, start, self.num_samples, stems=self.stems, **kwargs)
        if rng.random() < augmentation.remix_probability:
            stems = [read_crop(*self._draw(rng), self.num_samples, stems=[s], mixture=False, **kwargs)[0] for s in self.stems]
        else:
            stems = list(read_crop(track, start, self.num_samples, stems=self.stems, mixture=False, **kwargs))
        for i in range(len(stems)):
            stems[i] = stems[i] * np.float32(rng.uniform(*augmentation.gain_range))
            if rng.random() < augmentation.channel_swap_probability and self.num_channels == 2:
                stems[i] = stems[i][:, ::-1]
        stack = np.stack(stems)
        return np.concatenate([stack.sum(axis=0, keepdims=True), stack]).astype(np.float32)


def _spectrogram_dataset(
    waveforms: tf.data.Dataset, *, stems: Sequence[str], batch_size: int, n_fft: int, hop_length: int, max_bins: int
) -> tf.data.Dataset:
    def to_magnitudes(batch: tf.Tensor):
        magnitude = tf.abs(spectral.stft(batch, n_fft=n_fft, hop_length=hop_length))[..., :max_bins, :]
        return magnitude[:, 0], {stem: magnitude[:, 1 + i] for i, stem in enumerate(stems)}

    batched = waveforms.batch(batch_size, drop_remainder=False, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batched.map(to_magnitudes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _check_geometry(tracks, stems, num_frames, batch_size) -> None:
    if not tracks:
        raise DataError("No tracks to read examples from.")
    for track in tracks:
        if list(track.stems) != list(stems):
            raise DataError(f"Track {track.name!r} has stems {list(track.stems)}, expected {list(stems)}.")
    if num_frames < 1 or batch_size < 1:
        raise ValueError(f"`num_frames` and `batch_size` must be >= 1. Received {num_frames}, {batch_size}.")


def training_dataset(
    tracks: Sequence[Track],
    *,
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int,
    n_fft: int,
    hop_length: int,
    max_bins: int,
    num_frames: int,
    batch_size: int,
    augmentation: Augmentation | None = DEFAULT_AUGMENTATION,
    seed: int = 0,
    first_example: int = 0,
) -> tf.data.Dataset:
    """An endless, deterministic dataset of augmented random crops as magnitude spectrograms.

    Args:
        tracks: Training tracks (from :func:`training_split` or the layout functions).
        stems: The model's stems, in order (the tracks' stems).
        sample_rate: The model's sample rate, in Hz.
        num_channels: The model's channels.
        n_fft: STFT size.
        hop_length: STFT hop.
        max_bins: Lowest bins kept.
        num_frames: Frames per example (a multiple of ``2 ** depth`` for the U-Net).
        batch_size: Examples per batch.
        augmentation: Augmentation, or None for plain crops (mixture files used when present).
        seed: Seed of every random draw; equal seeds give equal datasets.
        first_example: Index of the first example (to continue a run where it stopped).

    Returns:
        Batches ``(mixture, {stem: stem_magnitude})``, each float32
        ``(batch_size, num_frames, max_bins, num_channels)``.
    """
    _check_geometry(tracks, stems, num_frames, batch_size)
    num_samples = spectral.segment_samples(num_frames, n_fft=n_fft, hop_length=hop_length)
    reader = _ExampleReader(tracks, stems, num_samples, sample_rate, num_channels, augmentation, seed)
    shape = (1 + len(stems), num_samples, num_channels)

    def load(index: tf.Tensor) -> tf.Tensor:
        waveforms = tf.numpy_function(reader, [index], tf.float32, stateful=False)
        return tf.ensure_shape(waveforms, shape)

    indices = tf.data.Dataset.range(first_example, np.iinfo(np.int64).max)
    waveforms = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _spectrogram_dataset(
        waveforms, stems=stems, batch_size=batch_size, n_fft=n_fft, hop_length=hop_length, max_bins=max_bins
    )


def validation_crops(tracks: Sequence[Track], *, num_samples: int, sample_rate: int, crops_per_track: int) -> list[tuple[int, int]]:
    """``(track_index, start)`` of evenly spaced crops over every track (at most ``crops_per_track`` each)."""
    crops = []
    for index, track in enumerate(tracks):
        length = int(track.num_samples * sample_rate / track.sample_rate)
        starts = np.linspace(0, max(0, length - num_samples), crops_per_track).round().astype(int)
        crops += [(index, int(start)) for start in sorted(set(starts.tolist()))]
    return crops


def validation_dataset(
    tracks: Sequence[Track],
    *,
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int,
    n_fft: int,
    hop_length: int,
    max_bins: int,
    num_frames: int,
    batch_size: int,
    crops_per_track: int = 4,
) -> tf.data.Dataset:
    """A finite dataset of fixed, evenly spaced, unaugmented crops of held-out tracks.

    Arguments as for :func:`training_dataset`; ``crops_per_track`` crops are spread over each track.
    """
    _check_geometry(tracks, stems, num_frames, batch_size)
    num_samples = spectral.segment_samples(num_frames, n_fft=n_fft, hop_length=hop_length)
    crops = validation_crops(tracks, num_samples=num_samples, sample_rate=sample_rate, crops_per_track=crops_per_track)
    shape = (1 + len(stems), num_samples, num_channels)

    def read(track_index: np.int64, start: np.int64) -> np.ndarray:
        return read_crop(tracks[int(track_index)], int(start), num_samples, sample_rate=sample_rate,
                         num_channels=num_channels, stems=stems)

    def load(crop: tf.Tensor) -> tf.Tensor:
        waveforms = tf.numpy_function(read, [crop[0], crop[1]], tf.float32, stateful=False)
        return tf.ensure_shape(waveforms, shape)

    positions = tf.data.Dataset.from_tensor_slices(np.asarray(crops, np.int64).reshape(-1, 2))
    waveforms = positions.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _spectrogram_dataset(
        waveforms, stems=stems, batch_size=batch_size, n_fft=n_fft, hop_length=hop_length, max_bins=max_bins
    )
