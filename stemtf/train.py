"""Train and fine-tune separation models with Keras ``model.fit``.

:func:`fit` wraps the mask model in a training model that multiplies every stem's mask by the
mixture magnitude and minimises Spleeter's loss: the L1 distance between the masked mixture and the
stem magnitude, summed over stems. Every ``checkpoint_every`` steps it validates on held-out tracks
and writes the output directory as a loadable model (``config.json`` + weights) plus a
``checkpoint/`` folder (weights, optimizer state, step) that ``resume=True`` continues from.
TensorBoard logs go to ``logs/``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from stemtf import data as data_lib
from stemtf.config import ModelConfig
from stemtf.errors import ModelError
from stemtf.model import build_model, load_model, save_model

CHECKPOINT_DIR = "checkpoint"
LOG_DIR = "logs"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.npz"
CHECKPOINT_WEIGHTS = "model.weights.h5"
LR_SCHEDULES = ("constant", "cosine")

ProgressCallback = Callable[[int, int, Mapping[str, float]], None]


# ---------------------------------------------------------------------------------------------
# Metric


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


# ---------------------------------------------------------------------------------------------
# Model assembly


def training_model(model: keras.Model, stems: Sequence[str]) -> keras.Model:
    """Wrap a masks model: mixture magnitude -> ``{stem: mask * mixture}`` (float32 outputs)."""
    inputs = keras.Input(shape=model.input_shape[1:], name="mixture")
    masks = model(inputs)
    outputs = {
        stem: keras.layers.Multiply(name=stem, dtype="float32")([masks[stem], inputs]) for stem in stems
    }
    return keras.Model(inputs, outputs, name=f"{model.name}_training")


def initialise_from(model: keras.Model, config: ModelConfig, source: str | os.PathLike) -> list[str]:
    """Copy weights from a trained model (name or directory) into ``model``.

    Same stems: every weight. Different stems: the trunk (the nested ``unet`` model) and the heads
    of stems both models have; the other heads keep their fresh initialisation.

    Returns:
        Names of the layers whose weights were copied.

    Raises:
        ModelError: the source is missing, or its input geometry or trunk differs from ``config``.
    """
    source_model, source_config = load_model(source)
    for field in ("sample_rate", "num_channels", "n_fft", "hop_length", "max_bins", "unet"):
        mine, theirs = getattr(config, field), getattr(source_config, field)
        if mine != theirs:
            raise ModelError(
                f"Cannot fine-tune from {str(source)!r}: its {field} is {theirs!r} but the config's is {mine!r}; "
                f"use the same {field} as the source model."
            )
    if tuple(source_config.stems) == tuple(config.stems):
        model.set_weights(source_model.get_weights())
        return [layer.name for layer in model.layers if layer.weights]
    copied = ["unet"]
    model.get_layer("unet").set_weights(source_model.get_layer("unet").get_weights())
    for stem in config.stems:
        if stem in source_config.stems:
            model.get_layer(f"head_{stem}").set_weights(source_model.get_layer(f"head_{stem}").get_weights())
            copied.append(f"head_{stem}")
    return copied


def freeze_encoder_layers(model: keras.Model) -> list[str]:
    """Make the trunk's ``encoder_*`` layers untrainable (their batch norms then run in inference mode)."""
    frozen = []
    for layer in model.get_layer("unet").layers:
        if layer.name.startswith("encoder_"):
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


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


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _write_json(path: pathlib.Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(
    directory: pathlib.Path, model: keras.Model, optimizer: keras.optimizers.Optimizer, state: Mapping[str, Any]
) -> None:
    """Write weights, optimizer variables and ``state.json`` (last, so a reader sees whole checkpoints)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp_weights = directory / f".{CHECKPOINT_WEIGHTS}.tmp.weights.h5"
    model.save_weights(tmp_weights)
    tmp_optimizer = directory / f".{OPTIMIZER_FILE}.tmp.npz"
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    np.savez(tmp_optimizer, **arrays)
    os.replace(tmp_weights, directory / CHECKPOINT_WEIGHTS)
    os.replace(tmp_optimizer, directory / OPTIMIZER_FILE)
    _write_json(directory / STATE_FILE, dict(state))


def load_checkpoint_state(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``state.json`` of ``output_dir``'s checkpoint, or None when there is none."""
    path = pathlib.Path(output_dir) / CHECKPOINT_DIR / STATE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _restore_checkpoint(directory: pathlib.Path, model: keras.Model, train_model: keras.Model) -> None:
    model.load_weights(directory / CHECKPOINT_WEIGHTS)
    optimizer = train_model.optimizer
    optimizer.build(train_model.trainable_variables)
    with np.load(directory / OPTIMIZER_FILE) as saved:
        arrays = [saved[key] for key in sorted(saved.files)]
    if len(arrays) != len(optimizer.variables):
        raise ModelError(
            f"The checkpoint in {str(directory)!r} has {len(arrays)} optimizer variables, this run {len(optimizer.variables)}; "
            "resume with the same settings (freeze_encoder, mixed precision) or start a new output_dir."
        )
    for variable, array in zip(optimizer.variables, arrays):
        variable.assign(array)


class _Checkpointer(keras.callbacks.Callback):
    """Validate-then-save at every epoch end (an epoch is ``checkpoint_every`` steps); stop at ``steps``."""

    def __init__(self, *, mask_model, config, output_dir, steps, state, progress):
        super().__init__()
        self.mask_model, self.config, self.output_dir = mask_model, config, output_dir
        self.steps, self.state, self.progress = steps, dict(state), progress

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if self.progress is not None:
            self.progress(step, self.steps, {k: float(v) for k, v in (logs or {}).items()})
        if step >= self.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        step = self._step()
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.state.update(step=step, epoch=epoch + 1, logs=logs)
        self.state.setdefault("history", []).append({"step": step, **logs})
        save_checkpoint(self.output_dir / CHECKPOINT_DIR, self.mask_model, self.model.optimizer, self.state)
        save_model(self.mask_model, self.config, self.output_dir)


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


def _devices() -> tuple[tf.distribute.Strategy, bool]:
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return strategy, bool(gpus)


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
    validation_fraction: float = 0.1,
    validation_tracks: Sequence[str] | None = None,
    validation_crops: int = 4,
    augmentation: data_lib.Augmentation | None = data_lib.DEFAULT_AUGMENTATION,
    seed: int = 0,
    resume: bool = False,
    from_model: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    checkpoint_every: int = 1000,
    mixed_precision: bool | None = None,
    tensorboard: bool | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train (or fine-tune, or resume training) a separation model.

    Args:
        config: The model to train; its stems name the targets.
        data: A data folder, CSV manifest or MUSDB18 folder (see :mod:`stemtf.data`), or
            ``(train_tracks, validation_tracks)``.
        output_dir: Model directory written at every checkpoint (``config.json`` + weights), with
            ``checkpoint/`` (for ``resume``) and ``logs/`` (TensorBoard).
        steps: Total optimizer steps (a resumed run counts the steps already done).
        batch_size: Examples per step (global, across GPUs).
        learning_rate: Peak learning rate of Adam.
        lr_schedule: ``cosine`` (decay to a tenth at ``steps``) or ``constant``.
        warmup_steps: Linear warm-up steps of the cosine schedule.
        num_frames: STFT frames per example, a multiple of ``2 ** len(config.unet.filters)``;
            default ``config.segment_frames``.
        layout: Data layout: ``auto``, ``folder``, ``csv`` or ``musdb``.
        stem_groups: Model stem -> file stems summed into it, e.g. ``{"other": ["other", "piano"]}``.
        validation_fraction: Share of tracks held out (folder and CSV layouts; MUSDB18 uses its
            official split); 0 disables validation.
        validation_tracks: Names of the tracks to hold out instead.
        validation_crops: Fixed crops per validation track.
        augmentation: Training augmentation, or None.
        seed: Seed of the data pipeline, the split and the weights' initialisation.
        resume: Continue from ``output_dir/checkpoint``; required when one exists.
        from_model: A trained model (name or directory) to start from: same stems continue
            training, different stems keep the trunk (and the heads of shared stems).
        freeze_encoder: Keep the trunk's encoder layers fixed (fine-tuning).
        checkpoint_every: Steps between validation + checkpoint.
        mixed_precision: float16 compute; default: only when a GPU exists.
        tensorboard: Write TensorBoard logs to ``output_dir/logs``; default: when the
            ``tensorboard`` package is installed.
        callbacks: Extra Keras callbacks.
        progress: Called after every step as ``progress(step, steps, logs)``.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        DataError: bad data (see :mod:`stemtf.data`).
        ModelError: ``from_model`` is incompatible, or the checkpoint does not match.
        ValueError: a bad argument.
    """
    output_dir = pathlib.Path(output_dir)
    stride = 2 ** len(config.unet.filters)
    num_frames = config.segment_frames if num_frames is None else num_frames
    if num_frames < stride or num_frames % stride:
        raise ValueError(f"Argument `num_frames` must be a positive multiple of {stride} (2 ** U-Net depth). Received {num_frames}.")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise ValueError(f"Argument `{name}` must be >= 1. Received {value}.")
    state = load_checkpoint_state(output_dir)
    if state is not None and not resume:
        raise ModelError(
            f"{str(output_dir)!r} already holds a training checkpoint (step {state['step']}); pass resume=True "
            "(--resume) to continue it, or choose another output directory."
        )
    if resume and state is None:
        raise ModelError(f"Nothing to resume: {str(output_dir)!r} has no {CHECKPOINT_DIR}/{STATE_FILE}; drop --resume.")
    if state is not None and state["config"] != config.to_dict():
        raise ModelError(f"The checkpoint in {str(output_dir)!r} was trained with a different config; resume with the same config.")

    if isinstance(data, (str, os.PathLike)):
        train_tracks, validation_tracks_ = data_lib.training_split(
            data, stems=config.stems, stem_groups=stem_groups, layout=layout,
            validation_fraction=validation_fraction, validation_tracks=validation_tracks, seed=seed,
        )
    else:
        train_tracks, validation_tracks_ = list(data[0]), list(data[1])

    keras.utils.set_random_seed(seed)
    strategy, has_gpu = _devices()
    mixed_precision = has_gpu if mixed_precision is None else mixed_precision
    previous_policy = keras.config.dtype_policy()
    start_step = 0 if state is None else int(state["step"])
    try:
        # Layers take their dtype policy when built; restore the global one right after.
        keras.config.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
        with strategy.scope():
            model = build_model(config)
            if from_model is not None and state is None:
                initialise_from(model, config, from_model)
            if freeze_encoder:
                freeze_encoder_layers(model)
            train_model = training_model(model, config.stems)
            optimizer = keras.optimizers.Adam(
                learning_rate_schedule(learning_rate, steps=steps, schedule=lr_schedule, warmup_steps=warmup_steps)
            )
            train_model.compile(
                optimizer=optimizer,
                loss={stem: keras.losses.MeanAbsoluteError(name=f"{stem}_l1") for stem in config.stems},
                metrics={stem: [SpectrogramSDR(name="sdr")] for stem in config.stems},
            )
            if state is not None:
                _restore_checkpoint(output_dir / CHECKPOINT_DIR, model, train_model)
    finally:
        keras.config.set_dtype_policy(previous_policy)

    if start_step >= steps:
        return TrainingResult(model, config, output_dir, start_step, list(state.get("history", [])))

    geometry = {
        "stems": config.stems, "sample_rate": config.sample_rate, "num_channels": config.num_channels,
        "n_fft": config.n_fft, "hop_length": config.hop_length, "max_bins": config.max_bins,
        "num_frames": num_frames, "batch_size": batch_size,
    }
    train_data = data_lib.training_dataset(
        train_tracks, augmentation=augmentation, seed=seed, first_example=start_step * batch_size, **geometry
    )
    validation_data = None
    if validation_tracks_:
        validation_data = data_lib.validation_dataset(validation_tracks_, crops_per_track=validation_crops, **geometry)

    new_state = state or {
        "config": config.to_dict(),
        "seed": seed,
        "batch_size": batch_size,
        "freeze_encoder": freeze_encoder,
        "from_model": None if from_model is None else str(from_model),
        "train_tracks": [t.name for t in train_tracks],
        "validation_tracks": [t.name for t in validation_tracks_],
    }
    checkpointer = _Checkpointer(
        mask_model=model, config=config, output_dir=output_dir, steps=steps, state=new_state, progress=progress
    )
    all_callbacks = [checkpointer, *callbacks]
    if tensorboard is None:
        tensorboard = importlib.util.find_spec("tensorboard") is not None
    elif tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ImportError('TensorBoard logs need the tensorboard package: pip install "stemtf[train]"')
    if tensorboard:
        all_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(output_dir / LOG_DIR), write_graph=False))
    steps_per_epoch = min(checkpoint_every, steps)
    initial_epoch = start_step // steps_per_epoch
    epochs = initial_epoch + math.ceil((steps - start_step) / steps_per_epoch)
    output_dir.mkdir(parents=True, exist_ok=True)
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
    return TrainingResult(model, config, output_dir, checkpointer._step(), list(checkpointer.state["history"]))

