"""What training minimises and reports: Spleeter's masked-magnitude L1, the spectrogram SDR, the LR schedule.

Shared by both training loops (``model.fit`` on one machine, :func:`stemtf.train.distributed.fit_loop` on several workers),
so that loss, metric and schedule are defined once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras

LR_SCHEDULES = ("constant", "cosine")


def spectrogram_sdr(y_true: Any, y_pred: Any, *, scale_invariant: bool = False, epsilon: float = 1e-8) -> Any:
    """Per-example SDR in dB between two (magnitude) spectrograms, the MDX challenge's formula.

    ``10 log10(|s|^2 / |s - s_hat|^2)`` over every bin of an example; with ``scale_invariant`` the
    reference is first scaled by the least-squares gain (SI-SDR). On magnitudes it ignores phase: a
    fast proxy for BSS-eval that runs inside the training graph.

    Args:
        y_true: float ``(batch, ...)`` reference.
        y_pred: float ``(batch, ...)`` estimate.

    Returns:
        float32 ``(batch,)``.
    """
    y_true = keras.ops.cast(y_true, "float32")
    y_pred = keras.ops.cast(y_pred, "float32")
    axes = tuple(range(1, len(y_true.shape)))
    if scale_invariant:
        gain = (keras.ops.sum(y_true * y_pred, axis=axes, keepdims=True) + epsilon) / (
            keras.ops.sum(y_true * y_true, axis=axes, keepdims=True) + epsilon
        )
        y_true = gain * y_true
    signal = keras.ops.sum(keras.ops.square(y_true), axis=axes)
    noise = keras.ops.sum(keras.ops.square(y_true - y_pred), axis=axes)
    return 10.0 * keras.ops.log((signal + epsilon) / (noise + epsilon)) / math.log(10.0)


class SpectrogramSDR(keras.metrics.Mean):
    """Mean :func:`spectrogram_sdr` (dB) over examples; a Keras metric for training and validation.

    Examples whose reference is silent (a stem a track lacks) are left out: their SDR is minus
    infinity up to the epsilon and would swamp the mean.
    """

    def __init__(self, name: str = "sdr", scale_invariant: bool = False, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.scale_invariant = scale_invariant

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        values = spectrogram_sdr(y_true, y_pred, scale_invariant=self.scale_invariant)
        axes = tuple(range(1, len(y_true.shape)))
        audible = keras.ops.cast(keras.ops.max(keras.ops.abs(keras.ops.cast(y_true, "float32")), axis=axes) > 1e-4, "float32")
        if sample_weight is not None:
            audible = audible * keras.ops.cast(sample_weight, "float32")
        super().update_state(values, sample_weight=audible)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale_invariant": self.scale_invariant}


def training_model(model: keras.Model, stems: Sequence[str]) -> keras.Model:
    """Wrap a masks model: mixture magnitude -> ``{stem: mask * mixture}`` (float32 outputs)."""
    inputs = keras.Input(shape=model.input_shape[1:], name="mixture")
    masks = model(inputs)
    outputs = {
        stem: keras.layers.Multiply(name=stem, dtype="float32")([masks[stem], inputs]) for stem in stems
    }
    return keras.Model(inputs, outputs, name=f"{model.name}_training")


def stem_losses(stems: Sequence[str]) -> dict[str, keras.losses.Loss]:
    """Spleeter's loss per stem: L1 between ``mask * mixture`` and the stem magnitude (summed over stems by Keras)."""
    return {stem: keras.losses.MeanAbsoluteError(name=f"{stem}_l1") for stem in stems}


def stem_metrics(stems: Sequence[str]) -> dict[str, list[keras.metrics.Metric]]:
    """The per-stem :class:`SpectrogramSDR` (``sdr``, ``val_sdr``, ...)."""
    return {stem: [SpectrogramSDR(name="sdr")] for stem in stems}


def learning_rate_schedule(learning_rate: float, *, steps: int, schedule: str = "cosine", warmup_steps: int = 0):
    """``constant``, or linear warm-up then cosine decay to a tenth of ``learning_rate`` at ``steps``."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"Argument `schedule` must be one of {list(LR_SCHEDULES)}. Received {schedule!r}.")
    if schedule == "constant":
        return learning_rate
    warmup_steps = min(warmup_steps, max(steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate if not warmup_steps else learning_rate / 100,
        decay_steps=max(steps - warmup_steps, 1),
        alpha=0.1,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
