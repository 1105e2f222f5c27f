"""Every default stemtf uses, as frozen dataclasses, and strict JSON loading.

A preset file (``configs/4stems.json``) states only what differs from these defaults. Loading is
strict: an unknown key is an error that names it, so a typo never silently falls back to a default.
This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import types
import typing
from typing import Any

from stemtf.errors import ConfigError, ModelError

# Model directories, found by path or by name without building anything, live in stemtf.model_store;
# their names stay importable from here.
from stemtf.model_store import (  # noqa: F401
    CACHE_ENV,
    CONFIG_FILE,
    MODELS_ENV,
    PRESETS,
    SHIPPED_MODELS,
    WEIGHTS_FILE,
    available_models,
    cache_root,
    model_search_path,
    resolve_model_dir,
    user_model_store,
)

MASK_EXTENSIONS = ("average", "edge", "zeros")
UNET_VARIANTS = ("stemtf", "spleeter")
ACTIVATIONS = ("leaky_relu", "relu", "elu")
TRUNK_LAYOUTS = ("shared", "per_stem")
MASK_FORMULAS = ("ratio", "spleeter", "spleeter_softmax")
CHUNKINGS = ("crossfade", "spleeter")
_STEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Geometry of the U-Net trunk (defaults: Spleeter's).

    Attributes:
        filters: Filters of each strided encoder level; its length is the depth.
        kernel_size: Square kernel size of every (transposed) convolution.
        dropout_rate: Dropout after the first ``num_dropout_layers`` decoder levels.
        num_dropout_layers: How many decoder levels (from the deepest) get dropout.
        leaky_relu_slope: Negative slope of the encoder's leaky ReLU.
        head_filters: Feature maps the trunk hands to every stem's mask head.
        variant: Layer order of every level. ``stemtf``: encoder conv -> batch norm -> activation,
            skips taken after the activation, decoder ``[upsampled, skip]``. ``spleeter`` (Spleeter
            2.4.2's ``apply_unet``, for imported checkpoints): skips and the decoder's input taken from
            the convolutions before batch norm (the deepest level's batch norm and activation are
            unused), decoder ``[skip, upsampled]``.
        encoder_activation: ``leaky_relu`` (slope ``leaky_relu_slope``), ``relu`` or ``elu``.
        decoder_activation: ``relu``, ``leaky_relu`` or ``elu``.
    """

    filters: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    kernel_size: int = 5
    dropout_rate: float = 0.5
    num_dropout_layers: int = 3
    leaky_relu_slope: float = 0.2
    head_filters: int = 8
    variant: str = "stemtf"
    encoder_activation: str = "leaky_relu"
    decoder_activation: str = "relu"

    def __post_init__(self) -> None:
        if not self.filters or any(f < 1 for f in self.filters):
            raise ConfigError(f"`unet.filters` must be a non-empty list of positive integers. Received {list(self.filters)}.")
        if self.kernel_size < 1:
            raise ConfigError(f"`unet.kernel_size` must be >= 1. Received {self.kernel_size}.")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"`unet.dropout_rate` must be in [0, 1). Received {self.dropout_rate}.")
        if not 0 <= self.num_dropout_layers <= len(self.filters):
            raise ConfigError(
                f"`unet.num_dropout_layers` must be between 0 and the depth ({len(self.filters)}). "
                f"Received {self.num_dropout_layers}."
            )
        if self.head_filters < 1:
            raise ConfigError(f"`unet.head_filters` must be >= 1. Received {self.head_filters}.")
        if self.variant not in UNET_VARIANTS:
            raise ConfigError(f"`unet.variant` must be one of {list(UNET_VARIANTS)}. Received {self.variant!r}.")
        for key in ("encoder_activation", "decoder_activation"):
            if getattr(self, key) not in ACTIVATIONS:
                raise ConfigError(f"`unet.{key}` must be one of {list(ACTIVATIONS)}. Received {getattr(self, key)!r}.")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a separation model is: its stems, its signal geometry and its network.

    Attributes:
        name: Model name, shown by ``stemtf models``.
        stems: Names of the stems, in output order; used in file names.
        sample_rate: Sample rate the model works at, in Hz; other rates are resampled.
        num_channels: Channels the network sees (2: stereo; mono input is duplicated).
        n_fft: STFT size in samples (Hann window of the same length).
        hop_length: STFT hop in samples.
        max_bins: Lowest frequency bins the network sees; the masks above are extended.
        mask_extension: How masks are extended above ``max_bins``: ``average`` (per frame, the mean
            of the top ``extension_bins`` predicted bins), ``edge`` (the highest predicted bin) or
            ``zeros`` (Spleeter's default: nothing above ``max_bins``, so the stems no longer sum to
            the mixture there).
        extension_bins: Bins averaged by the ``average`` extension.
        segment_frames: STFT frames per inference chunk (512 frames ~ 11.8 s at 44.1 kHz).
        mask_exponent: Inference calibration of the ratio masks: each stem's mask ``m`` becomes
            ``m ** a / sum(m ** a)`` (below 1 softer, above 1 sharper; 1 leaves them as trained).
            One number for every stem, or one per stem: in JSON an object ``{"vocals": 0.35, ...}``
            naming every stem (or a list in stem order); stored as a tuple in stem order, or as one
            float when all stems share it. Training always uses 1; the shipped models' values are
            chosen on the validation collection.
        unet: The trunk's geometry.
        trunk: ``shared`` (one U-Net, one mask head per stem: stemtf's own models) or ``per_stem``
            (one U-Net and head per stem: Spleeter's layout).
        masks: ``ratio`` (sigmoid masks ``m`` -> ``m / sum(m)``) or ``spleeter`` (Spleeter's formula
            on the masked magnitudes ``y = m * |X|``: ``(y ** p + eps / n) / (sum(y ** p) + eps)``,
            ``p = separation_exponent``, ``eps = 1e-10``) or ``spleeter_softmax`` (the same on
            ``m = softmax`` over stems of linear heads: Spleeter's 5stems ``softmax_unet``); all
            sum to one over stems.
        separation_exponent: ``p`` of the ``spleeter`` masks (Spleeter's released models: 2).
            With ``mask_exponent`` ``a`` the inference uses ``p * a``.
        chunking: How offline separation and the chunk stream cut a song: ``crossfade`` (chunks of
            ``segment_frames`` frames, each with its own STFT, cross-faded) or ``spleeter`` (``spleeter
            separate``'s: one STFT with ``n_fft`` zeros in front, masked ``segment_frames`` frames at a
            time without overlap; :class:`stemtf.plans.SpleeterPlan`).
    """

    name: str = "custom"
    stems: tuple[str, ...] = ("vocals", "accompaniment")
    sample_rate: int = 44100
    num_channels: int = 2
    n_fft: int = 4096
    hop_length: int = 1024
    max_bins: int = 1024
    mask_extension: str = "average"
    extension_bins: int = 256
    segment_frames: int = 512
    mask_exponent: float | tuple[float, ...] = 1.0
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    trunk: str = "shared"
    masks: str = "ratio"
    separation_exponent: float = 2.0
    chunking: str = "crossfade"

    def __post_init__(self) -> None:
        if len(self.stems) < 2:
            raise ConfigError(f"`stems` must name at least two stems. Received {list(self.stems)}.")
        if len(set(self.stems)) != len(self.stems):
            raise ConfigError(f"`stems` must be unique. Received {list(self.stems)}.")
        for stem in self.stems:
            if not _STEM_NAME.match(stem):
                raise ConfigError(
                    f"Stem name {stem!r} is not allowed: use letters, digits, '_' and '-' (it becomes a file name)."
                )
        if self.sample_rate < 1000:
            raise ConfigError(f"`sample_rate` must be >= 1000 Hz. Received {self.sample_rate}.")
        if self.num_channels not in (1, 2):
            raise ConfigError(f"`num_channels` must be 1 or 2. Received {self.num_channels}.")
        if self.n_fft < 16 or self.n_fft & (self.n_fft - 1):
            raise ConfigError(f"`n_fft` must be a power of two >= 16. Received {self.n_fft}.")
        if self.hop_length < 1 or self.n_fft % self.hop_length or self.n_fft // self.hop_length < 2:
            raise ConfigError(
                f"`hop_length` must divide `n_fft` ({self.n_fft}) at least twice. Received {self.hop_length}."
            )
        stride = self.frame_multiple
        if not 0 < self.max_bins <= self.n_fft // 2 + 1 or self.max_bins % stride:
            raise ConfigError(
                f"`max_bins` must be a multiple of {stride} (2 ** U-Net depth) and at most "
                f"n_fft // 2 + 1 = {self.n_fft // 2 + 1}. Received {self.max_bins}."
            )
        if self.mask_extension not in MASK_EXTENSIONS:
            raise ConfigError(f"`mask_extension` must be one of {list(MASK_EXTENSIONS)}. Received {self.mask_extension!r}.")
        if not 0 < self.extension_bins <= self.max_bins:
            raise ConfigError(f"`extension_bins` must be in [1, max_bins={self.max_bins}]. Received {self.extension_bins}.")
        object.__setattr__(self, "mask_exponent", _per_stem_exponents(self.mask_exponent, self.stems))
        if self.trunk not in TRUNK_LAYOUTS:
            raise ConfigError(f"`trunk` must be one of {list(TRUNK_LAYOUTS)}. Received {self.trunk!r}.")
        if self.masks not in MASK_FORMULAS:
            raise ConfigError(f"`masks` must be one of {list(MASK_FORMULAS)}. Received {self.masks!r}.")
        if not 0.1 <= self.separation_exponent <= 8:  # also rejects NaN
            raise ConfigError(f"`separation_exponent` must be between 0.1 and 8. Received {self.separation_exponent!r}.")
        if self.chunking not in CHUNKINGS:
            raise ConfigError(f"`chunking` must be one of {list(CHUNKINGS)}. Received {self.chunking!r}.")
        if self.segment_frames % stride or self.segment_frames < self.min_segment_frames:
            raise ConfigError(
                f"`segment_frames` must be a multiple of {stride} and at least {self.min_segment_frames}. "
                f"Received {self.segment_frames}."
            )

    @property
    def stem_mask_exponents(self) -> tuple[float, ...]:
        """``mask_exponent`` of every stem, in stem order."""
        exponent = self.mask_exponent
        return exponent if isinstance(exponent, tuple) else (exponent,) * len(self.stems)

    @property
    def num_bins(self) -> int:
        """Frequency bins of the full STFT: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def frame_multiple(self) -> int:
        """``2 ** U-Net depth``: every spectrogram the network sees has a multiple of this many frames and bins."""
        return 2 ** len(self.unet.filters)

    @property
    def min_segment_frames(self) -> int:
        """The shortest chunk in STFT frames: the STFT's own padding on both sides plus one network stride, rounded up."""
        frames = 2 * (self.n_fft // self.hop_length) + self.frame_multiple
        return frames + (-frames) % self.frame_multiple

    def chunk_samples_for(self, segment_frames: int) -> int:
        """Samples whose STFT (with stemtf's padding) has exactly ``segment_frames`` frames."""
        return segment_samples(segment_frames, n_fft=self.n_fft, hop_length=self.hop_length)

    @property
    def chunk_samples(self) -> int:
        """Samples in one inference chunk of ``segment_frames`` frames (~11.8 s at the defaults)."""
        return self.chunk_samples_for(self.segment_frames)

    def default_overlap_for(self, chunk_samples: int) -> int:
        """The default cross-fade of chunks of ``chunk_samples``: 1 s, at most a quarter chunk."""
        return min(self.sample_rate, chunk_samples // 4)

    @property
    def default_overlap_samples(self) -> int:
        """The default cross-fade between neighbouring chunks, in samples (1 s, at most a quarter chunk)."""
        return self.default_overlap_for(self.chunk_samples)

    def segment_frames_for(self, chunk_seconds: float | None) -> int:
        """STFT frames per chunk for chunks of about ``chunk_seconds`` (None: ``segment_frames``).

        Rounded to a multiple of :attr:`frame_multiple`, and at least :attr:`min_segment_frames`.
        """
        if chunk_seconds is None:
            return self.segment_frames
        front = self.n_fft - self.hop_length
        frames = (chunk_seconds * self.sample_rate + 2 * front - self.n_fft) / self.hop_length + 1
        return max(self.min_segment_frames, int(round(frames / self.frame_multiple)) * self.frame_multiple)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready nested dicts and lists (per-stem exponents as ``{stem: exponent}``)."""
        data = _to_jsonable(dataclasses.asdict(self))
        if isinstance(self.mask_exponent, tuple):
            data["mask_exponent"] = dict(zip(self.stems, self.mask_exponent))
        return data

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with ``changes`` applied (validated like a loaded config)."""
        return from_dict({**self.to_dict(), **_to_jsonable(changes)})


def _per_stem_exponents(value: Any, stems: tuple[str, ...]) -> float | tuple[float, ...]:
    """``mask_exponent`` given as a number, ``{stem: number}`` or a list in stem order, checked and normalised."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(stems))
        missing = [stem for stem in stems if stem not in value]
        if unknown or missing:
            problem = f"names unknown stem {unknown[0]!r}" if unknown else f"misses stem {missing[0]!r}"
            raise ConfigError(f"`mask_exponent` {problem}: give one number, or one per stem of {list(stems)}.")
        value = [value[stem] for stem in stems]
    if isinstance(value, (list, tuple)):
        if len(value) != len(stems):
            raise ConfigError(f"`mask_exponent` must have one value per stem ({len(stems)}). Received {list(value)!r}.")
        values = tuple(value)
    else:
        values = (value,)
    for number in values:
        if not _is_type(number, float) or not 0.05 <= number <= 8:  # also rejects NaN
            raise ConfigError(f"`mask_exponent` must be between 0.05 and 8. Received {number!r}.")
    values = tuple(float(number) for number in values)
    return values[0] if len(set(values)) == 1 else values


def segment_samples(num_frames: int, *, n_fft: int, hop_length: int) -> int:
    """The number of samples whose STFT (padded by ``n_fft - hop_length`` on each side) has ``num_frames`` frames."""
    return (num_frames - 1) * hop_length + n_fft - 2 * (n_fft - hop_length)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value):
        return _to_jsonable(dataclasses.asdict(value))
    return value


def _coerce(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'The config'} must be a JSON object. Received {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"Unknown config key {where}{unknown[0]!r}; valid keys: {', '.join(sorted(fields))}.")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        name = f"{where}{key}"
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _coerce(hint, value, f"{name}.")
        elif isinstance(hint, types.UnionType):  # ModelConfig.mask_exponent: its __post_init__ checks it
            if not (_is_type(value, float) or isinstance(value, (dict, list))):
                raise ConfigError(f"`{name}` must be a number, or one per stem. Received {value!r}.")
            kwargs[key] = value
        elif typing.get_origin(hint) is tuple:
            item_type = typing.get_args(hint)[0]
            if not isinstance(value, list) or not all(_is_type(v, item_type) for v in value):
                raise ConfigError(f"`{name}` must be a list of {item_type.__name__}. Received {value!r}.")
            kwargs[key] = tuple(value)
        elif not _is_type(value, hint):
            raise ConfigError(f"`{name}` must be {hint.__name__}. Received {value!r}.")
        else:
            kwargs[key] = float(value) if hint is float else value
    return cls(**kwargs)


def _is_type(value: Any, hint: type) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def from_dict(data: dict[str, Any]) -> ModelConfig:
    """Build a validated :class:`ModelConfig` from a (partial) dict; missing keys take defaults."""
    return _coerce(ModelConfig, data, "")


def preset_path(name: str) -> pathlib.Path | None:
    """The shipped preset ``configs/NAME.json`` (``2stems``, ``4stems``, ``5stems``, ...), or None."""
    if not _STEM_NAME.match(name):
        return None
    path = PRESETS / f"{name}.json"
    return path if path.is_file() else None


def load_config(path: str | os.PathLike) -> ModelConfig:
    """Load a JSON config file strictly; a preset name (``4stems``) loads the shipped preset, another
    model's name (``spleeter-4stems``) that model's ``config.json``.

    Raises:
        ConfigError: the file is missing, is not valid JSON, or has an unknown or invalid key.
    """
    if not pathlib.Path(path).exists() and preset_path(str(path)) is not None:
        path = preset_path(str(path))
    elif not pathlib.Path(path).exists() and str(path) in available_models():
        path = available_models()[str(path)] / CONFIG_FILE  # a model's own config (an imported one, say)
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        presets = ", ".join(sorted(p.stem for p in PRESETS.glob("*.json") if preset_path(p.stem))) or "none"
        raise ConfigError(f"Config file {str(path)!r} does not exist (presets by name: {presets}).") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"Cannot read config file {str(path)!r}: {error}.") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"Config file {str(path)!r} is not valid JSON: {error.msg} (line {error.lineno}).") from None
    try:
        return from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def load_model_config(name_or_path: str | os.PathLike) -> tuple[ModelConfig, pathlib.Path]:
    """The config of a model and its directory, without building the network."""
    directory = resolve_model_dir(name_or_path)
    try:
        return load_config(directory / CONFIG_FILE), directory
    except ConfigError as error:
        raise ModelError(str(error)) from error
