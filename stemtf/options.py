"""Every user option's check, in one place and without TensorFlow.

The library calls these checks at its boundary and the CLI calls the same ones before it loads
TensorFlow, so a bad option fails in a fraction of a second and is worded the same way from Python
and from the shell. A failed check raises :class:`OptionError`: its message names the Python
keyword (``overlap``), and :meth:`OptionError.for_cli` the command-line flag (``--overlap``, the
kebab-case of the keyword, as every flag is).
"""

from __future__ import annotations

import math
import os
import pathlib
import string

from stemtf.config import ModelConfig
from stemtf.errors import AudioError, AudioOptionError, OptionError, OutputOptionError

FILENAME_FIELDS = ("track", "stem", "ext", "model")
# Output formats and sample formats, as soundfile names them (stemtf.audio writes them).
OUTPUT_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
BIT_DEPTHS = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}
DEFAULT_FILENAME = "{track}/{stem}.{ext}"
EVALUATION_BASELINES = ("model", "oracle", "mixture")


def _finite(keyword: str, value: float, error: type[OptionError] = OptionError) -> None:
    if not math.isfinite(value):
        raise error(keyword, f"{{option}} must be a finite number. Received {value}.")


# Separation


def check_input_file(path: str | os.PathLike) -> pathlib.Path:
    """Fail with a clear message unless ``path`` is an existing, non-empty, readable file."""
    path = pathlib.Path(path)
    if not path.exists():
        raise AudioError(f"Input {str(path)!r} does not exist; check the path.")
    if path.is_dir():
        raise AudioError(f"Input {str(path)!r} is a directory; give an audio file.")
    if path.stat().st_size == 0:
        raise AudioError(f"Input {str(path)!r} is an empty file; give a file with audio in it.")
    if not os.access(path, os.R_OK):
        raise AudioError(f"Input {str(path)!r} cannot be read (permission denied).")
    return path




def check_overlap(overlap: float | None, config: ModelConfig, *, segment_frames: int | None = None) -> int:
    """The cross-fade between chunks in samples, for ``overlap`` seconds (None: the default, 1 s).

    Raises:
        OptionError: the overlap is negative or longer than half a chunk.
    """
    chunk_samples = config.chunk_samples_for(segment_frames or config.segment_frames)
    if overlap is None:
        return config.default_overlap_for(chunk_samples)
    _finite("overlap", overlap)
    samples = int(round(overlap * config.sample_rate))
    if not 0 <= samples <= chunk_samples // 2:
        raise OptionError(
            "overlap", f"{{option}} must be between 0 and {chunk_samples // 2 / config.sample_rate:.3g} s. Received {overlap:g}."
        )
    return samples


def check_segment_frames(segment_frames: int | None, config: ModelConfig) -> int:
    """STFT frames per chunk (None: the config's), a multiple of the frame multiple and not below the minimum."""
    if segment_frames is None:
        return config.segment_frames
    if segment_frames % config.frame_multiple or segment_frames < config.min_segment_frames:
        raise OptionError(
            "segment_frames",
            f"{{option}} must be a multiple of {config.frame_multiple} and at least {config.min_segment_frames}. "
            f"Received {segment_frames}.",
        )
    return segment_frames


def check_wiener_iterations(wiener_iterations: int) -> None:
    """Wiener filter EM iterations: 0 (off) or more."""
    if wiener_iterations < 0:
        raise OptionError("wiener_iterations", f"{{option}} must be >= 0 iterations. Received {wiener_iterations}.")


def check_offset(offset: float) -> None:
    """Seconds skipped at the start of an input: finite and >= 0."""
    _finite("offset", offset, AudioOptionError)
    if offset < 0:
        raise AudioOptionError("offset", f"{{option}} must be >= 0 seconds. Received {offset:g}.")


def check_duration(duration: float | None) -> None:
    """Seconds to process: None (to the end) or finite and > 0."""
    if duration is None:
        return
    _finite("duration", duration, AudioOptionError)
    if duration <= 0:
        raise AudioOptionError("duration", f"{{option}} must be > 0 seconds. Received {duration:g}.")


def check_output(fmt: str, bit_depth: int, bitrate: int | None) -> None:
    """The output format, sample format and bitrate go together (see :mod:`stemtf.audio`)."""
    if fmt not in OUTPUT_FORMATS:
        raise OutputOptionError("fmt", f"{{option}} {fmt!r} is not supported; use one of {', '.join(OUTPUT_FORMATS)}.")
    if bit_depth not in BIT_DEPTHS:
        raise OutputOptionError("bit_depth", f"{{option}} must be 16, 24 or 32. Received {bit_depth}.")
    if fmt == "flac" and bit_depth == 32:
        raise OutputOptionError("bit_depth", "FLAC stores at most 24 bits; use {option} 16 or 24, or {option:fmt} wav for float.")
    if bitrate is not None and not 32 <= bitrate <= 320:
        raise OutputOptionError("bitrate", f"{{option}} must be between 32 and 320 kbps. Received {bitrate}.")
    if bitrate is not None and fmt in ("wav", "flac"):
        # An error, not a warning: a bitrate that silently does nothing looks like it worked.
        raise OutputOptionError(
            "bitrate", f"{{option}} applies to mp3 and ogg only; {fmt} is lossless (its sample format is {{option:bit_depth}})."
        )


def check_filename(filename: str) -> None:
    """An output path template uses only ``{track}``, ``{stem}``, ``{ext}``, ``{model}`` and names each stem apart."""
    try:
        keys = {name for _, name, _, _ in string.Formatter().parse(filename) if name is not None}
    except ValueError as error:
        raise OutputOptionError("filename", f"{{option}} {filename!r} is not a valid template: {error}.") from error
    unknown = keys - set(FILENAME_FIELDS)
    if unknown:
        raise OutputOptionError(
            "filename",
            f"{{option}} {filename!r} uses unknown field {{{sorted(unknown)[0]}}}; use {{track}}, {{stem}}, {{ext}} and {{model}}.",
        )
    if "stem" not in keys:
        raise OutputOptionError("filename", f"{{option}} {filename!r} must contain {{stem}}, or every stem would go to the same file.")
    check_output_path(filename, filename)


def check_output_path(filename: str, relative: str) -> None:
    """An output path made from the template ``filename`` stays inside the output folder (no ``/...``, no ``..``)."""
    path = pathlib.PurePosixPath(relative.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise OutputOptionError(
            "filename", f"{{option}} {filename!r} must be a relative path inside the output folder (no leading / and no ..)."
        )


def parse_groups(values: list[str] | None, *, two_stems: str | None = None) -> dict[str, list[str]] | None:
    """``["accompaniment=drums,bass,other"]`` (``--group``, repeatable) -> ``{"accompaniment": [...]}``.

    ``two_stems="vocals"`` (``--two-stems``, as Demucs users know it) is the group ``no_vocals`` of
    every other stem; it is expanded by :func:`check_groups`, which knows the model's stems.
    """
    if values and two_stems is not None:
        raise OptionError("two_stems", "{option} and {option:groups} cannot be combined; use one or the other.")
    if two_stems is not None:
        return {f"no_{two_stems}": [f"!{two_stems}"]}  # "every stem but": resolved against the model
    if not values:
        return None
    groups: dict[str, list[str]] = {}
    for value in values:
        name, sep, members = value.partition("=")
        stems = [stem.strip() for stem in members.split(",") if stem.strip()]
        if not sep or not name.strip() or not stems:
            raise OptionError("group", f"{{option}} {value!r} must look like NAME=STEM,STEM..., e.g. accompaniment=drums,bass,other.")
        if name.strip() in groups:
            raise OptionError("group", f"{{option}} names the group {name.strip()!r} twice.")
        groups[name.strip()] = stems
    return groups


def check_groups(groups, stems) -> list[tuple[str, tuple[int, ...]]] | None:
    """The output stems when ``groups`` sums some of the model's ``stems``: ``[(name, stem indices)]``.

    Stems in no group are kept as they are; a group takes the place of its first stem. None when
    there are no groups.

    Raises:
        OptionError: an unknown stem, a stem in two groups, a bad or clashing group name.
    """
    if not groups:
        return None
    stems = list(stems)
    owner: dict[str, str] = {}
    resolved: dict[str, list[str]] = {}
    for name, members in groups.items():
        keyword = "two_stems" if any(m.startswith("!") for m in members) else "groups"
        if any(m.startswith("!") for m in members):
            kept = members[0][1:]
            if kept not in stems:
                raise OptionError(keyword, f"{{option}} {kept!r} is not a stem of this model; it has {', '.join(stems)}.")
            members = [stem for stem in stems if stem != kept]
        if not name or name in (".", "..") or any(ch in name for ch in "/\\{}"):
            raise OptionError(keyword, f"{{option}} group name {name!r} cannot be a file name.")
        unknown = [stem for stem in members if stem not in stems]
        if unknown:
            raise OptionError(keyword, f"{{option}} {name}: {unknown[0]!r} is not a stem of this model; it has {', '.join(stems)}.")
        for stem in members:
            if stem in owner:
                raise OptionError(keyword, f"{{option}} puts {stem!r} in two groups ({owner[stem]} and {name}).")
            owner[stem] = name
        resolved[name] = members
    for name, members in resolved.items():
        if name in stems and name not in members and name not in owner:
            raise OptionError("groups", f"{{option}} group name {name!r} is also a stem of this model left out of it.")
    plan, done = [], set()
    for stem in stems:
        name = owner.get(stem)
        if name is None:
            plan.append((stem, (stems.index(stem),)))
        elif name not in done:
            done.add(name)
            plan.append((name, tuple(stems.index(member) for member in resolved[name])))
    return plan


def check_chunk_seconds(chunk_seconds: float | None) -> None:
    """Chunk length of an export in seconds: None (the model's) or finite and > 0."""
    if chunk_seconds is None:
        return
    _finite("chunk_seconds", chunk_seconds)
    if not chunk_seconds > 0:
        raise OptionError("chunk_seconds", f"{{option}} must be > 0. Received {chunk_seconds:g}.")


def check_latency(latency: float) -> float:
    """Latency of a stream in seconds: finite and > 0 (whether the model meets it is the plan's check)."""
    _finite("latency", latency)
    if not latency > 0:
        raise OptionError("latency", f"{{option}} must be > 0 seconds. Received {latency:g}.")
    return float(latency)


# Training


def check_training(
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    checkpoint_every: int,
    from_model: object = None,
    freeze_encoder: bool = False,
    num_frames: int | None = None,
    config: ModelConfig | None = None,
) -> None:
    """The counts, learning rate and fine-tuning options of a training run."""
    for keyword, value in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise OptionError(keyword, f"{{option}} must be >= 1. Received {value}.")
    _finite("learning_rate", learning_rate)
    if not learning_rate > 0:
        raise OptionError("learning_rate", f"{{option}} must be > 0. Received {learning_rate:g}.")
    if freeze_encoder and from_model is None:
        raise OptionError(
            "freeze_encoder", "{option} needs {option:from_model} MODEL: a randomly initialised encoder would stay random."
        )
    if num_frames is not None and config is not None and (num_frames < 1 or num_frames % config.frame_multiple):
        raise OptionError(
            "num_frames", f"{{option}} must be a positive multiple of {config.frame_multiple} (2 ** U-Net depth). Received {num_frames}."
        )


def parse_stem_weights(values: list[str] | None) -> dict[str, float] | None:
    """``["vocals=2"]`` (``--stem-weight``, repeatable) -> ``{"vocals": 2.0}``; None for none."""
    if not values:
        return None
    weights: dict[str, float] = {}
    for value in values:
        stem, sep, number = value.partition("=")
        try:
            weight = float(number)
        except ValueError:
            weight = None
        if not sep or not stem.strip() or weight is None:
            raise OptionError("stem_weights", f"{{option}} {value!r} must look like STEM=WEIGHT, e.g. vocals=2.")
        weights[stem.strip()] = weight
    return weights


def check_stem_weights(stem_weights: dict[str, float] | None, stems: tuple[str, ...] | list[str]) -> None:
    """Per-stem loss weights: the model's stems, finite and >= 0, not all 0 (a stem not named weighs 1)."""
    if stem_weights is None:
        return
    for stem, weight in stem_weights.items():
        if stem not in stems:
            raise OptionError("stem_weights", f"{{option}} names {stem!r}, which is not one of the model's stems {list(stems)}.")
        if not (math.isfinite(weight) and weight >= 0):
            raise OptionError("stem_weights", f"{{option}} for {stem!r} must be a finite number >= 0. Received {weight}.")
    if all(stem_weights.get(stem, 1.0) == 0 for stem in stems):
        raise OptionError("stem_weights", "{option} are all 0: nothing would be trained; give some stem a weight > 0.")


def check_speed_range(speed_range: tuple[float, float]) -> None:
    """The speed augmentation's ``(low, high)`` factors: finite, 0.5 <= low <= high <= 2."""
    low, high = speed_range
    _finite("speed_range", low)
    _finite("speed_range", high)
    if not 0.5 <= low <= high <= 2.0:
        raise OptionError("speed_range", f"{{option}} must be (low, high) with 0.5 <= low <= high <= 2. Received {low:g} {high:g}.")


def check_eq_reverb_probability(probability: float) -> None:
    """The equaliser-and-room augmentation's probability per stem: a number in [0, 1]."""
    _finite("eq_reverb_probability", probability)
    if not 0.0 <= probability <= 1.0:
        raise OptionError("eq_reverb_probability", f"{{option}} must be in [0, 1]. Received {probability:g}.")


# Evaluation


def check_baseline(baseline: str) -> None:
    """What ``evaluate`` scores: the model, or the oracle or mixture baseline."""
    if baseline not in EVALUATION_BASELINES:
        raise OptionError("baseline", f"{{option}} must be one of {', '.join(EVALUATION_BASELINES)}. Received {baseline!r}.")


# Serving


def check_serving(
    *,
    port: int,
    max_upload_mb: float,
    max_duration: float,
    max_concurrency: int,
    read_timeout: float,
    max_connections: int,
) -> None:
    """The port and limits of ``stemtf serve``."""
    if not 0 <= port <= 65535:
        raise OptionError("port", f"{{option}} must be between 0 and 65535. Received {port}.")
    for keyword, value in (("max_upload_mb", max_upload_mb), ("max_duration", max_duration), ("read_timeout", read_timeout)):
        _finite(keyword, value)
        if value <= 0:
            raise OptionError(keyword, f"{{option}} must be > 0. Received {value:g}.")
    for keyword, value in (("max_concurrency", max_concurrency), ("max_connections", max_connections)):
        if value < 1:
            raise OptionError(keyword, f"{{option}} must be >= 1. Received {value}.")


# Defaults shared by the library's keywords and the CLI's flags (the CLI imports these, never TensorFlow).
DEFAULT_MODEL = "4stems"
DEFAULT_RUNTIME = "auto"
DEFAULT_WIENER_ITERATIONS = 0  # off
DEFAULT_OFFSET = 0.0
DEFAULT_OVERLAP = None  # None: the model's (1 s, or a quarter of a chunk for short chunks)
DEFAULT_RAW_RATE = 44100  # stemtf stream --raw
DEFAULT_RAW_CHANNELS = 2
DEFAULT_SAMPLE_FORMAT = "s16le"
DEFAULT_BLOCK_SIZE = 4096  # samples a stream reads per block
DEFAULT_OUTPUT_DIR = "separated"
DEFAULT_FORMAT = "wav"
DEFAULT_BIT_DEPTH = 16
DEFAULT_STEPS = 100_000
DEFAULT_BATCH_SIZE = 4
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_RUNS_DIR = "runs"
DEFAULT_EXPORT_DIR = "exported"
DEFAULT_EXPORT_FORMAT = "savedmodel"
DEFAULT_QUANTIZE = "none"  # exported TFLite weights: float32, what stemtf separate runs
# The web export's (stemtf export --format web; the reasons in stemtf.export.web): float16 weights,
# half the download; songs up to 10 min (the memory of a phone or laptop tab).
DEFAULT_WEB_QUANTIZE = "float16"
DEFAULT_WEB_MAX_DURATION = 600.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
DEFAULT_MAX_UPLOAD_MB = 100.0
DEFAULT_MAX_DURATION = 600.0
DEFAULT_MAX_CONCURRENCY = 2
DEFAULT_READ_TIMEOUT = 30.0  # seconds a request body may go without a byte arriving
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_WORKER_TIMEOUT = 600.0  # seconds a training worker waits for its peers (stemtf train, multi-worker)
DEFAULT_MAX_QUEUE = 8  # jobs waiting or running at once (stemtf serve)
DEFAULT_WORKERS = 1  # jobs separated at once
DEFAULT_QUOTA_MB = 2000.0  # the job cache's size
DEFAULT_EXPIRY = 3600.0  # seconds a finished job's stems are kept
