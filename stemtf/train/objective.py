"""What training minimises and reports: Spleeter's masked-magnitude L1, the spectrogram SDR, the LR schedule.

Shared by both training loops (``model.fit`` on one machine, :func:`stemtf.train.distributed.fit_loop` on several workers),
so that loss, metric and schedule are defined once.

Partly labelled data (:class:`stemtf.data.Track`) comes with per-output sample weights: a stem an
example's track does not label has weight 0 there, so it adds nothing to the loss, its gradient or
its SDR; a sum of stems the track labels (``drums+bass+other``) is one more training output, the sum
of those stems' ``mask * mixture``, with its own L1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from stemtf.data.tracks import sum_key
from stemtf.errors import OptionError

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
    infinity up to the epsilon and would swamp the mean. So are examples of weight 0 (a stem their
    track does not label), when compiled as a weighted metric; weights may be ``(batch,)`` or
    ``(batch, 1, ...)``.
    """

    def __init__(self, name: str = "sdr", scale_invariant: bool = False, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.scale_invariant = scale_invariant

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        values = spectrogram_sdr(y_true, y_pred, scale_invariant=self.scale_invariant)
        axes = tuple(range(1, len(y_true.shape)))
        audible = keras.ops.cast(keras.ops.max(keras.ops.abs(keras.ops.cast(y_true, "float32")), axis=axes) > 1e-4, "float32")
        if sample_weight is not None:
            audible = audible * keras.ops.reshape(keras.ops.cast(sample_weight, "float32"), (-1,))
        super().update_state(values, sample_weight=audible)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale_invariant": self.scale_invariant}


def training_model(model: keras.Model, stems: Sequence[str], sums: Sequence[Sequence[str]] = ()) -> keras.Model:
    """Wrap a masks model: mixture magnitude -> ``{stem: mask * mixture}`` (float32 outputs).

    Every sum of stems in ``sums`` adds the output ``{sum_key: sum of its stems' mask * mixture}``
    (keyed ``drums.bass.other``, as :func:`stemtf.data.training_dataset` yields its magnitude).
    """
    inputs = keras.Input(shape=model.input_shape[1:], name="mixture")
    masks = model(inputs)
    outputs = {
        stem: keras.layers.Multiply(name=stem, dtype="float32")([masks[stem], inputs]) for stem in stems
    }
    for members in sums:
        key = sum_key(members)
        outputs[key] = keras.layers.Add(name=key, dtype="float32")([outputs[s] for s in members])
    return keras.Model(inputs, outputs, name=f"{model.name}_training")


def stem_losses(stems: Sequence[str], sums: Sequence[Sequence[str]] = ()) -> dict[str, keras.losses.Loss]:
    """Spleeter's loss per stem: L1 between ``mask * mixture`` and the stem magnitude (summed over stems by Keras).

    Every sum of stems adds the L1 between the sum of its stems' ``mask * mixture`` and its magnitude.
    With sample weights Keras still divides by the whole batch: an example whose track does not
    label a stem counts as zero there, and every labelled one weighs what it would alone.
    """
    losses = {stem: keras.losses.MeanAbsoluteError(name=f"{stem}_l1") for stem in stems}
    losses.update({sum_key(members): keras.losses.MeanAbsoluteError(name=f"{sum_key(members)}_l1") for members in sums})
    return losses


def loss_weights(
    stems: Sequence[str], stem_weights: Mapping[str, float] | None, sums: Sequence[Sequence[str]] = ()
) -> dict[str, float] | None:
    """Keras ``loss_weights``: ``stem_weights`` (1 for a stem not named), 1 for every sum; None without ``stem_weights``."""
    if stem_weights is None:
        return None
    weights = {stem: float(stem_weights.get(stem, 1.0)) for stem in stems}
    weights.update({sum_key(members): 1.0 for members in sums})
    return weights


def stem_metrics(stems: Sequence[str]) -> dict[str, list[keras.metrics.Metric]]:
    """The per-stem :class:`SpectrogramSDR` (``sdr``, ``val_sdr``, ...)."""
    return {stem: [SpectrogramSDR(name="sdr")] for stem in stems}


def learning_rate_schedule(learning_rate: float, *, steps: int, schedule: str = "cosine", warmup_steps: int = 0):
    """``constant``, or linear warm-up then cosine decay to a tenth of ``learning_rate`` at ``steps``."""
    if schedule not in LR_SCHEDULES:
        raise OptionError("schedule", f"{{option}} must be one of {', '.join(LR_SCHEDULES)}. Received {schedule!r}.")
    if warmup_steps < 0:
        raise OptionError("warmup_steps", f"{{option}} must be >= 0. Received {warmup_steps}.")
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
