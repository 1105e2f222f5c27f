"""Spleeter's models in stemtf: their configs, and their TF1 checkpoints read into :func:`~stemtf.model.build_model`.

Spleeter 2.4.2 (Deezer, MIT licence) builds one U-Net per stem (``spleeter/model/functions/unet.py``)
and ratio masks from the networks' estimated magnitudes (``spleeter/model/__init__.py``). stemtf
expresses that as model configuration, not as a second model family: ``trunk="per_stem"``,
``unet.variant="spleeter"``, ``masks="spleeter"`` (or ``spleeter_softmax`` for 5stems), with
Spleeter's activations and ``separation_exponent``. The weights of a checkpoint then load layer by
layer into that model: no ``spleeter`` import, TensorFlow reads the checkpoint.

Spleeter names its variables by creation order (TF1 Keras layer counters), one U-Net after the
other in ``instrument_list`` order. U-Net ``s`` of a checkpoint holds:

========================================  =============================================
checkpoint variable                       stemtf layer (in ``unet_STEM`` / the model)
========================================  =============================================
``conv2d_{7s+i}`` (i = 0..5)              ``encoder_conv_i``
``conv2d_{7s+6}`` (4x4, dilation 2)       ``head_STEM``
``conv2d_transpose_{6s+j}`` (j = 0..5)    ``decoder_conv_j``
``batch_normalization_{12s+i}`` (i < 5)   ``encoder_bn_i``
``batch_normalization_{12s+5}``           none: Spleeter computes it and discards it
``batch_normalization_{12s+6+j}``         ``decoder_bn_j``
========================================  =============================================

(``conv2d_0`` is spelt ``conv2d``.) ``global_step`` and optimizer slots (``*/Adam``, ``beta1_power``,
...) are training state and are skipped; any other variable is an error, so a checkpoint of another
family never loads half.

TensorFlow is imported inside the functions that read or build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Any

from stemtf.config import ModelConfig
from stemtf.errors import ModelError, SpleeterCheckpointError

SPLEETER_FILTERS = (16, 32, 64, 128, 256, 512)
# Per U-Net: 6 encoder convolutions + the 4x4 output convolution, 6 transposed ones, 12 batch norms.
CONVS_PER_UNET, TRANSPOSES_PER_UNET, NORMS_PER_UNET = 7, 6, 12
_OPTIMIZER_STATE = re.compile(r"(^|/)(global_step|beta[12]_power(_\d+)?|Adam(_\d+)?|Adadelta(_\d+)?|Momentum)$")


@dataclasses.dataclass(frozen=True)
class SpleeterRelease:
    """What the network of one of Spleeter's released configs (``spleeter/resources/NAME.json``) is.

    Attributes:
        archive: The release archive holding its checkpoint (``NAME.tar.gz``; the ``-16kHz``
            configs reuse the full-band archives with more bins).
        stems: ``instrument_list``: the U-Nets' order in the checkpoint.
        max_bins: ``F``.
        encoder_activation, decoder_activation: ``conv_activation`` / ``deconv_activation``.
        masks: ``spleeter`` (``unet.unet``) or ``spleeter_softmax`` (``unet.softmax_unet``).
    """

    archive: str
    stems: tuple[str, ...]
    max_bins: int
    encoder_activation: str
    decoder_activation: str
    masks: str


_FOUR = ("vocals", "drums", "bass", "other")
_FIVE = ("vocals", "piano", "drums", "bass", "other")
RELEASES: dict[str, SpleeterRelease] = {
    "2stems": SpleeterRelease("2stems", ("vocals", "accompaniment"), 1024, "leaky_relu", "relu", "spleeter"),
    "4stems": SpleeterRelease("4stems", _FOUR, 1024, "elu", "elu", "spleeter"),
    "5stems": SpleeterRelease("5stems", _FIVE, 1024, "elu", "elu", "spleeter_softmax"),
    "2stems-16kHz": SpleeterRelease("2stems", ("vocals", "accompaniment"), 1536, "leaky_relu", "relu", "spleeter"),
    "4stems-16kHz": SpleeterRelease("4stems", _FOUR, 1536, "elu", "elu", "spleeter"),
    "5stems-16kHz": SpleeterRelease("5stems", _FIVE, 1536, "elu", "elu", "spleeter_softmax"),
}
_ACTIVATIONS = {"ELU": "elu", "ReLU": "relu", "LeakyReLU": "leaky_relu"}


def release_config(release: str, *, name: str, mask_extension: str = "zeros") -> ModelConfig:
    """The stemtf config of one of Spleeter's released models (``2stems``, ``4stems-16kHz``, ...).

    Args:
        release: A key of :data:`RELEASES`.
        name: The stemtf model's name.
        mask_extension: ``zeros`` (Spleeter's: nothing above ``max_bins``), or stemtf's full-band
            ``average`` / ``edge``.
    """
    if release not in RELEASES:
        raise ModelError(f"Unknown Spleeter model {release!r}; Spleeter's are: {', '.join(RELEASES)}.")
    spec = RELEASES[release]
    return _config(
        name=name, stems=spec.stems, max_bins=spec.max_bins, encoder_activation=spec.encoder_activation,
        decoder_activation=spec.decoder_activation, masks=spec.masks, mask_extension=mask_extension,
    )


def config_from_params(params: dict[str, Any], *, name: str, mask_extension: str | None = None) -> ModelConfig:
    """The stemtf config of a model described by a Spleeter JSON config (its ``params`` dict).

    Reads ``instrument_list``, ``sample_rate``, ``frame_length``, ``frame_step``, ``T``, ``F``,
    ``n_channels``, ``separation_exponent``, ``mask_extension`` and ``model`` (``type`` and
    ``params``: ``conv_activation``, ``deconv_activation``, ``conv_n_filters``).

    Raises:
        ModelError: a value stemtf cannot express (another model type, mono, an unknown activation).
    """
    def get(key: str, default: Any = None) -> Any:
        if key not in params and default is None:
            raise ModelError(f"The Spleeter config has no {key!r}.")
        return params.get(key, default)

    model = get("model", {"type": "unet.unet", "params": {}})
    kind = model.get("type", "unet.unet")
    if kind not in ("unet.unet", "unet.softmax_unet"):
        raise ModelError(f"Spleeter model type {kind!r} is not supported (only unet.unet and unet.softmax_unet).")
    unet_params = model.get("params") or {}
    activations = []
    for key, default in (("conv_activation", "leaky_relu"), ("deconv_activation", "relu")):
        value = unet_params.get(key)
        if value is not None and value not in _ACTIVATIONS:
            raise ModelError(f"Spleeter {key} {value!r} is not one of {', '.join(_ACTIVATIONS)}.")
        activations.append(_ACTIVATIONS[value] if value is not None else default)
    if get("n_channels", 2) != 2:
        raise ModelError(f"Spleeter models are stereo (their output convolution has 2 filters); n_channels is {params['n_channels']}.")
    extension = get("mask_extension", "zeros")
    if mask_extension is None:
        if extension not in ("zeros", "average"):
            raise ModelError(f"Spleeter mask_extension {extension!r} is not 'zeros' or 'average'.")
        mask_extension = extension
    max_bins = int(get("F"))
    return _config(
        name=name,
        stems=tuple(get("instrument_list")),
        max_bins=max_bins,
        encoder_activation=activations[0],
        decoder_activation=activations[1],
        masks="spleeter_softmax" if kind == "unet.softmax_unet" else "spleeter",
        mask_extension=mask_extension,
        # Spleeter's "average" is the mean over every predicted bin
        extension_bins=max_bins if mask_extension == "average" and extension == "average" else None,
        sample_rate=int(get("sample_rate", 44100)),
        n_fft=int(get("frame_length", 4096)),
        hop_length=int(get("frame_step", 1024)),
        segment_frames=int(get("T", 512)),
        separation_exponent=float(get("separation_exponent", 2)),
        filters=tuple(unet_params.get("conv_n_filters", SPLEETER_FILTERS)),
    )


def _config(
    *, name: str, stems, max_bins: int, encoder_activation: str, decoder_activation: str, masks: str,
    mask_extension: str, extension_bins: int | None = None, sample_rate: int = 44100, n_fft: int = 4096,
    hop_length: int = 1024, segment_frames: int = 512, separation_exponent: float = 2.0,
    filters: tuple[int, ...] = SPLEETER_FILTERS,
) -> ModelConfig:
    if len(filters) != len(SPLEETER_FILTERS):
        raise ModelError(f"Spleeter's U-Net has {len(SPLEETER_FILTERS)} levels; conv_n_filters has {len(filters)}.")
    from stemtf.config import from_dict
    from stemtf.errors import ConfigError

    data = dict(
        name=name, stems=list(stems), sample_rate=sample_rate, num_channels=2, n_fft=n_fft, hop_length=hop_length,
        max_bins=max_bins, mask_extension=mask_extension, segment_frames=segment_frames,
        trunk="per_stem", masks=masks, separation_exponent=separation_exponent,
        # Spleeter-exact: its own grid too (one STFT, 512-frame segments without overlap); full band: stemtf's chunks
        chunking="spleeter" if mask_extension == "zeros" else "crossfade",
        unet=dict(
            filters=list(filters), kernel_size=5, dropout_rate=0.5, num_dropout_layers=3, leaky_relu_slope=0.2,
            head_filters=1, variant="spleeter", encoder_activation=encoder_activation,
            decoder_activation=decoder_activation,
        ),
    )
    data["extension_bins"] = extension_bins if extension_bins is not None else min(256, max_bins)
    try:
        return from_dict(data)
    except ConfigError as error:
        raise ModelError(f"The Spleeter model cannot be expressed in stemtf: {error}") from error


def is_spleeter_config(config: ModelConfig) -> bool:
    """Whether ``config`` has Spleeter's network (what :func:`load_checkpoint_weights` can fill)."""
    return config.trunk == "per_stem" and config.unet.variant == "spleeter" and config.masks.startswith("spleeter")


# ------------------------------------------------------------------------------------------------
# Checkpoints


def _indexed(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def variable_map(config: ModelConfig) -> dict[str, tuple[str, str, int]]:
    """Spleeter variable name -> ``(stemtf layer path, weight name, position)`` for every variable the model uses.

    The layer path is ``unet_STEM/LAYER`` inside a trunk, or ``head_STEM``. Batch norm positions are
    Keras' order: gamma, beta, moving_mean, moving_variance.
    """
    mapping: dict[str, tuple[str, str, int]] = {}
    depth = len(config.unet.filters)
    for s, stem in enumerate(config.stems):
        trunk = f"unet_{stem}"
        for level in range(depth):
            for position, weight in enumerate(("kernel", "bias")):
                mapping[f"{_indexed('conv2d', CONVS_PER_UNET * s + level)}/{weight}"] = (f"{trunk}/encoder_conv_{level}", weight, position)
                mapping[f"{_indexed('conv2d_transpose', TRANSPOSES_PER_UNET * s + level)}/{weight}"] = (
                    f"{trunk}/decoder_conv_{level}", weight, position)
            for position, weight in enumerate(("gamma", "beta", "moving_mean", "moving_variance")):
                if level < depth - 1:
                    mapping[f"{_indexed('batch_normalization', NORMS_PER_UNET * s + level)}/{weight}"] = (
                        f"{trunk}/encoder_bn_{level}", weight, position)
                mapping[f"{_indexed('batch_normalization', NORMS_PER_UNET * s + depth + level)}/{weight}"] = (
                    f"{trunk}/decoder_bn_{level}", weight, position)
        for position, weight in enumerate(("kernel", "bias")):
            mapping[f"{_indexed('conv2d', CONVS_PER_UNET * s + depth)}/{weight}"] = (f"head_{stem}", weight, position)
    return mapping


def unused_variables(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Variables of a Spleeter checkpoint its own graph never reads, with their shapes: each U-Net's deepest batch norm."""
    depth = len(config.unet.filters)
    deepest = config.unet.filters[-1]
    return {
        f"{_indexed('batch_normalization', NORMS_PER_UNET * s + depth - 1)}/{weight}": (deepest,)
        for s in range(len(config.stems))
        for weight in ("gamma", "beta", "moving_mean", "moving_variance")
    }


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Every variable of a TF1 checkpoint (a folder with a ``checkpoint`` file, or a ``model`` prefix), as numpy arrays.

    Raises:
        SpleeterCheckpointError: no checkpoint there, or it cannot be read.
    """
    import tensorflow as tf

    path = pathlib.Path(path)
    try:
        reader = tf.train.load_checkpoint(str(path))
        shapes = reader.get_variable_to_shape_map()
        return {name: reader.get_tensor(name) for name in shapes}
    except (ValueError, tf.errors.OpError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        where = f"{str(path)!r}" + ("" if path.is_dir() else " (give the folder holding `checkpoint` and model.*)")
        raise SpleeterCheckpointError(f"Cannot read a TensorFlow checkpoint from {where}: {detail}") from None


def count_unets(variables: dict[str, Any]) -> int:
    """How many of Spleeter's U-Nets a checkpoint's variables hold (0: not a Spleeter checkpoint)."""
    transposes = sum(1 for name in variables if re.fullmatch(r"conv2d_transpose(_\d+)?/kernel", name))
    return transposes // TRANSPOSES_PER_UNET


def check_variables(variables: dict[str, Any], config: ModelConfig, *, source: str = "the checkpoint") -> None:
    """Check that ``variables`` are exactly the weights of ``config``'s Spleeter network, shapes included.

    Raises:
        SpleeterCheckpointError: one line saying what does not match (not Spleeter's at all, another
            number of stems, or a variable of the wrong shape or missing).
    """
    import numpy as np

    mapping = variable_map(config)
    unused = unused_variables(config)
    unets = count_unets(variables)
    if "conv2d/kernel" not in variables or not unets:
        sample = ", ".join(sorted(variables)[:3]) or "no variables"
        raise SpleeterCheckpointError(
            f"{source} is not a Spleeter checkpoint (no conv2d/kernel or conv2d_transpose variables; it has {sample}, ...)."
        )
    if unets != len(config.stems):
        raise SpleeterCheckpointError(
            f"{source} holds {unets} Spleeter U-Nets, but {config.name!r} has {len(config.stems)} stems "
            f"({', '.join(config.stems)}): it is another Spleeter model (import it as {unets}stems or pass its config)."
        )
    expected = _expected_shapes(config)
    for name, shape in {**expected, **unused}.items():
        if name not in variables:
            raise SpleeterCheckpointError(f"{source} has no variable {name!r}: it is not laid out like Spleeter's {config.name!r}.")
        found = tuple(np.shape(variables[name]))
        if found != tuple(shape):
            raise SpleeterCheckpointError(
                f"Variable {name!r} of {source} has shape {list(found)}, {config.name!r} needs {list(shape)} "
                "(another U-Net geometry: check conv_n_filters / F of its Spleeter config)."
            )
    extra = sorted(name for name in variables if name not in mapping and name not in unused and not _OPTIMIZER_STATE.search(name))
    if extra:
        raise SpleeterCheckpointError(f"{source} has variables Spleeter's {config.name!r} does not use, e.g. {extra[0]!r}.")


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every mapped variable, from the config alone (so a mismatch is named before anything is built)."""
    filters = config.unet.filters
    k, channels = config.unet.kernel_size, config.num_channels
    decoder = list(filters[:-1])[::-1] + [config.unet.head_filters]
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (layer, weight, _) in variable_map(config).items():
        level = int(layer.rsplit("_", 1)[1]) if "/" in layer else None
        if layer.startswith("head_"):
            shape = (4, 4, config.unet.head_filters, channels) if weight == "kernel" else (channels,)
        elif "/encoder_conv_" in layer:
            inputs = channels if level == 0 else filters[level - 1]
            shape = (k, k, inputs, filters[level]) if weight == "kernel" else (filters[level],)
        elif "/encoder_bn_" in layer:
            shape = (filters[level],)
        elif "/decoder_conv_" in layer:
            # input: the deepest conv, then [skip, upsampled] concatenations
            inputs = filters[-1] if level == 0 else 2 * decoder[level - 1]
            shape = (k, k, decoder[level], inputs) if weight == "kernel" else (decoder[level],)
        else:  # decoder_bn
            shape = (decoder[level],)
        shapes[name] = shape
    return shapes


def load_checkpoint_weights(model, config: ModelConfig, variables: dict[str, Any], *, source: str = "the checkpoint") -> int:
    """Set every weight of ``model`` (:func:`~stemtf.model.build_model` of a Spleeter ``config``) from ``variables``.

    Returns:
        How many checkpoint variables were consumed (every one but training state).

    Raises:
        SpleeterCheckpointError: see :func:`check_variables`; also when a model weight is left unset.
    """
    check_variables(variables, config, source=source)
    layers: dict[str, list] = {}
    for name, (path, _, position) in variable_map(config).items():
        layers.setdefault(path, []).append((position, name))
    for path, entries in layers.items():
        if "/" in path:
            trunk, layer_name = path.split("/")
            layer = model.get_layer(trunk).get_layer(layer_name)
        else:
            layer = model.get_layer(path)
        values = [variables[name] for _, name in sorted(entries)]
        if len(values) != len(layer.get_weights()):
            raise SpleeterCheckpointError(f"Layer {path!r} has {len(layer.get_weights())} weights, the checkpoint gives {len(values)}.")
        layer.set_weights(values)
    set_weights = sum(len(entries) for entries in layers.values())
    if set_weights != len(model.weights):
        raise SpleeterCheckpointError(f"{set_weights} of the model's {len(model.weights)} weights came from {source}.")
    return set_weights + len(unused_variables(config))


def convert_checkpoint(path: str | os.PathLike, config: ModelConfig):
    """Build ``config``'s model and fill it from the Spleeter checkpoint at ``path``; returns the Keras model."""
    from stemtf.model import build_model

    variables = read_checkpoint(path)
    if not is_spleeter_config(config):
        raise ModelError(f"{config.name!r} is not a Spleeter-layout config (trunk per_stem, unet.variant spleeter, masks spleeter*).")
    check_variables(variables, config, source=f"checkpoint {str(path)!r}")
    model = build_model(config)
    load_checkpoint_weights(model, config, variables, source=f"checkpoint {str(path)!r}")
    return model


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """A Spleeter JSON config file as a dict (one-line errors)."""
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"Cannot read the Spleeter config {str(path)!r}: {error}".splitlines()[0]) from None
