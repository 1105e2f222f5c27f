"""The two models a run trains: the masks model (fresh, or from a trained model, its encoder frozen or
not) and the compiled training wrapper around it (:mod:`stemtf.train.objective`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from stemtf.config import ModelConfig, load_model_config
from stemtf.errors import ModelError, OptionError
from stemtf.model import build_model, load_model
from stemtf.train.objective import LR_SCHEDULES, learning_rate_schedule, loss_weights, stem_losses, stem_metrics, training_model


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


def inherited_mask_exponent(source: ModelConfig, stems: Sequence[str]) -> float | dict[str, float]:
    """The mask calibration a fine-tune with ``stems`` takes from ``source``: a stem the source has keeps
    its exponent; a new stem takes the mean of the source's."""
    if not isinstance(source.mask_exponent, tuple):
        return source.mask_exponent
    own = dict(zip(source.stems, source.mask_exponent))
    mean = round(sum(own.values()) / len(own), 4)
    return {stem: own.get(stem, mean) for stem in stems}


def fine_tune_config(config: ModelConfig, from_model: str | os.PathLike | None) -> ModelConfig:
    """``config`` for a run that starts from ``from_model``: a fine-tune keeps its source's mask
    calibration (:func:`inherited_mask_exponent`) unless the config sets its own (other than 1)."""
    if from_model is None or config.mask_exponent != 1.0:
        return config
    return config.replace(mask_exponent=inherited_mask_exponent(load_model_config(from_model)[0], config.stems))


def build_models(
    config: ModelConfig, strategy: tf.distribute.Strategy, *, from_model, freeze_encoder: bool, mixed_precision: bool | None,
    learning_rate: float, lr_schedule: str, steps: int, warmup_steps: int, sums: Sequence[tuple[str, ...]] | None = None,
    stem_weights: Mapping[str, float] | None = None,
) -> tuple[keras.Model, keras.Model]:
    """The masks model (initialised from ``from_model`` when given) and its compiled training wrapper.

    With ``sums`` (partly labelled data: the datasets carry sample weights) the wrapper also outputs
    those sums and the SDR metrics are weighted, so that unlabelled stems are left out of them.
    ``mixed_precision`` None: float16 compute only when a GPU exists.
    """
    if lr_schedule not in LR_SCHEDULES:  # fit's keyword, before learning_rate_schedule's (`schedule`) says it
        raise OptionError("lr_schedule", f"{{option}} must be one of {', '.join(LR_SCHEDULES)}. Received {lr_schedule!r}.")
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
