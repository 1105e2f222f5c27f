"""The separation network (U-Net trunk + one sigmoid mask head per stem) and model directories.

A model directory holds ``config.json`` (the full :class:`~stemtf.config.ModelConfig`) and
``model.weights.h5``. :func:`load_model` takes a directory or the name of a shipped model.
"""

from __future__ import annotations

import json
import os
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from stemtf import config as config_lib
from stemtf.config import CONFIG_FILE, WEIGHTS_FILE, load_model_config
from stemtf.errors import ModelError
from stemtf.unet import build_unet


class RatioMasks(keras.layers.Layer):
    """Turn one sigmoid mask per stem into ratio masks that sum to one in every bin.

    Args:
        epsilon: Added to every mask before the ratio (silent bins split evenly).
        exponent: At inference each mask is raised to this power before the ratio (the config's
            ``mask_exponent``: below 1 softer masks): one number, or a list with one per mask.
            In training it is always 1.
    """

    def __init__(self, epsilon: float = 1e-7, exponent: float | Sequence[float] = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.exponent = [float(a) for a in exponent] if isinstance(exponent, (list, tuple)) else float(exponent)

    def call(self, masks: list, training: bool | None = None) -> list:
        shifted = [m + self.epsilon for m in masks]
        exponents = self.exponent if isinstance(self.exponent, list) else [self.exponent] * len(masks)
        if len(exponents) != len(masks):
            raise ValueError(f"RatioMasks has {len(exponents)} exponents for {len(masks)} masks.")
        if not training:
            # m ** a as exp(a log m) (m > 0 here): the same function, and LiteRT runs POW single-threaded
            # outside XNNPACK (28 ms for one 4-stem chunk) where EXP and LOG take 5 ms
            shifted = [m if a == 1.0 else keras.ops.exp(a * keras.ops.log(m)) for m, a in zip(shifted, exponents)]
        total = keras.ops.sum(keras.ops.stack(shifted, axis=0), axis=0)
        return [m / total for m in shifted]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon, "exponent": self.exponent}


class SpleeterMasks(keras.layers.Layer):
    """Spleeter's ratio masks: the sigmoid masks scale the mixture magnitude, then a power ratio.

    With ``y_i = m_i * |X|`` (Spleeter's network output, "the estimated spectrogram"), stem ``i``'s
    mask is ``(y_i ** p + eps / n) / (sum_j y_j ** p + eps)``: ``spleeter.model.EstimatorSpecBuilder``
    ``._build_masks`` with ``p = separation_exponent``. They sum to one over the ``n`` stems.

    Called on ``[magnitude, mask_1, ..., mask_n]``. With ``softmax=True`` the inputs are logits and
    ``m`` is their softmax over stems (Spleeter's ``softmax_unet``, its 5stems model).

    Args:
        separation_exponent: ``p``.
        epsilon: ``eps`` (Spleeter: 1e-10).
        exponent: The config's ``mask_exponent`` (one number or one per stem): at inference ``p``
            becomes ``p * exponent``, the same calibration :class:`RatioMasks` applies; 1 in training.
    """

    def __init__(
        self,
        separation_exponent: float = 2.0,
        epsilon: float = 1e-10,
        exponent: float | Sequence[float] = 1.0,
        softmax: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.softmax = bool(softmax)
        self.separation_exponent = float(separation_exponent)
        self.epsilon = epsilon
        self.exponent = [float(a) for a in exponent] if isinstance(exponent, (list, tuple)) else float(exponent)

    def call(self, inputs: list, training: bool | None = None) -> list:
        magnitude, masks = inputs[0], inputs[1:]
        exponents = self.exponent if isinstance(self.exponent, list) else [self.exponent] * len(masks)
        if len(exponents) != len(masks):
            raise ValueError(f"SpleeterMasks has {len(exponents)} exponents for {len(masks)} masks.")
        if self.softmax:
            masks = keras.ops.unstack(keras.ops.softmax(keras.ops.stack(masks, axis=-1), axis=-1), axis=-1)
        powered = []
        for mask, a in zip(masks, exponents):
            power = self.separation_exponent * (1.0 if training else a)
            estimate = mask * magnitude
            # y ** 2 as y * y (exact, and no POW op for LiteRT); otherwise exp(p log y), 0 where y is 0
            if power == 2.0:
                powered.append(estimate * estimate)
            elif power == 1.0:
                powered.append(estimate)
            else:
                safe = keras.ops.maximum(estimate, 1e-30)
                powered.append(keras.ops.where(estimate > 0, keras.ops.exp(power * keras.ops.log(safe)), 0.0))
        total = keras.ops.sum(keras.ops.stack(powered, axis=0), axis=0) + self.epsilon
        share = self.epsilon / len(masks)
        return [(y + share) / total for y in powered]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "separation_exponent": self.separation_exponent,
            "epsilon": self.epsilon,
            "exponent": self.exponent,
            "softmax": self.softmax,
        }


SPLEETER_EPSILON = 1e-10


def build_model(config: config_lib.ModelConfig) -> keras.Model:
    """Build the spectrogram -> masks network described by ``config``.

    ``trunk="shared"``: one U-Net (the nested model ``unet``) and one mask head per stem;
    ``trunk="per_stem"``: one U-Net per stem (``unet_STEM``), Spleeter's layout. The heads
    (``head_STEM``) are dilated 4x4 sigmoid convolutions, and ``ratio_masks`` turns them into masks
    that sum to one: :class:`RatioMasks` or :class:`SpleeterMasks` (``masks="spleeter"``).

    Returns:
        A functional model from float32 ``(batch, num_frames, max_bins, num_channels)`` mixture
        magnitudes to ``{stem: (batch, num_frames, max_bins, num_channels)}`` ratio masks that sum
        to one over stems. ``num_frames`` must be a multiple of ``2 ** len(unet.filters)``.
    """
    unet = config.unet
    trunk_arguments = dict(
        num_bins=config.max_bins,
        num_channels=config.num_channels,
        filters=unet.filters,
        kernel_size=unet.kernel_size,
        dropout_rate=unet.dropout_rate,
        num_dropout_layers=unet.num_dropout_layers,
        leaky_relu_slope=unet.leaky_relu_slope,
        output_filters=unet.head_filters,
        variant=unet.variant,
        encoder_activation=unet.encoder_activation,
        decoder_activation=unet.decoder_activation,
    )
    inputs = keras.Input(shape=(None, config.max_bins, config.num_channels), name="magnitude")
    if config.trunk == "shared":
        shared = build_unet(**trunk_arguments)(inputs)
        features = [shared] * len(config.stems)
    else:  # one trunk per stem (no seeded initializers: every trunk starts from different weights)
        features = [build_unet(**trunk_arguments, name=f"unet_{stem}")(inputs) for stem in config.stems]
    activation = None if config.masks == "spleeter_softmax" else "sigmoid"  # softmax over stems comes later
    heads = [
        keras.layers.Conv2D(
            config.num_channels, 4, dilation_rate=2, padding="same", activation=activation, name=f"head_{stem}"
        )(stem_features)
        for stem, stem_features in zip(config.stems, features)
    ]
    exponents = list(config.stem_mask_exponents)
    if config.masks in ("spleeter", "spleeter_softmax"):
        masks = SpleeterMasks(
            separation_exponent=config.separation_exponent, epsilon=SPLEETER_EPSILON, exponent=exponents,
            softmax=config.masks == "spleeter_softmax", name="ratio_masks",
        )([inputs, *heads])
    else:
        masks = RatioMasks(exponent=exponents, name="ratio_masks")(heads)
    outputs = {
        stem: keras.layers.Identity(name=stem)(mask) for stem, mask in zip(config.stems, masks)
    }
    return keras.Model(inputs, outputs, name=config.name)


def save_model(
    model: keras.Model,
    config: config_lib.ModelConfig,
    directory: str | os.PathLike,
    *,
    weights_dtype: str = "float32",
) -> pathlib.Path:
    """Write ``config.json`` and the weights into ``directory`` (created if needed).

    Both files are written under temporary names and renamed, so a reader never sees half a model.

    Args:
        model: The model from :func:`build_model`.
        config: Its config.
        directory: The model directory.
        weights_dtype: ``float32``, or ``float16`` to halve the file (for shipping; weights are
            cast back to float32 on load, a relative change of about 1e-3).
    """
    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"Argument `weights_dtype` must be 'float32' or 'float16'. Received {weights_dtype!r}.")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_weights = directory / f".{WEIGHTS_FILE}.tmp.weights.h5"
    model.save_weights(tmp_weights)
    if weights_dtype == "float16":
        _cast_weights_file(tmp_weights, np.float16)
    tmp_config = directory / f".{CONFIG_FILE}.tmp"
    tmp_config.write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_weights, directory / WEIGHTS_FILE)
    os.replace(tmp_config, directory / CONFIG_FILE)
    return directory


def _cast_weights_file(path: pathlib.Path, dtype: type) -> None:
    """Rewrite every float32 array of a Keras ``.weights.h5`` file as ``dtype``, in place."""
    import h5py

    cast_path = path.with_name(path.name + ".cast")
    with h5py.File(path, "r") as source, h5py.File(cast_path, "w") as target:
        target.attrs.update(source.attrs)

        def copy(name: str, item) -> None:
            if isinstance(item, h5py.Group):
                target.require_group(name).attrs.update(item.attrs)
                return
            data = item[()]
            target.create_dataset(name, data=data.astype(dtype) if data.dtype == np.float32 else data)
            target[name].attrs.update(item.attrs)

        source.visititems(copy)
    os.replace(cast_path, path)


def load_model(name_or_path: str | os.PathLike) -> tuple[keras.Model, config_lib.ModelConfig]:
    """Build a model from its directory's config and load its weights.

    Raises:
        ModelError: unknown model, bad config, or missing or incompatible weights.
    """
    config, directory = load_model_config(name_or_path)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(
            f"Model {config.name!r} in {str(directory)!r} has no trained weights ({WEIGHTS_FILE} is missing); "
            "train it with `stemtf train` or choose another model."
        )
    heads = _num_heads(weights)
    if heads is not None and heads != len(config.stems):
        # Keras loads heads by position and silently skips a file's extra ones (or leaves missing ones random).
        raise ModelError(
            f"Weights {str(weights)!r} have {heads} stem heads but config.json lists {len(config.stems)} stems "
            f"({', '.join(config.stems)}): the config does not belong to these weights."
        )
    model = build_model(config)
    try:
        with warnings.catch_warnings():
            # Keras only warns when part of a file does not match the model; a half-loaded model is an error.
            warnings.filterwarnings("error", message=".*(Skipping|freshly-initialized|mismatch).*")
            model.load_weights(weights)
    except Exception as error:  # h5py and Keras raise many types for a bad file
        raise ModelError(f"Cannot load weights {str(weights)!r}: {error}".splitlines()[0]) from error
    return model, config


def _num_heads(path: pathlib.Path) -> int | None:
    """Stem heads in a ``.weights.h5`` file (its top-level ``identity*`` output layers); None if unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return sum(1 for name in handle["layers"] if name == "identity" or name.startswith("identity_"))
    except (OSError, KeyError):
        return None  # let load_weights report what is wrong with the file
