"""Checkpoints of a training run: the loadable model directory, ``checkpoint/`` (weights, optimizer, state), and its guard.

A run directory is rewritten at every checkpoint as a loadable model (``config.json`` + weights),
with ``checkpoint/`` holding what ``resume`` needs. :func:`check_output_dir` refuses to train into a
directory that already holds a model or a checkpoint unless the caller says ``resume`` or
``overwrite``: a shipped model is never replaced by accident.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from stemtf import config as config_lib
from stemtf.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from stemtf.errors import ConfigError, ModelError
from stemtf.model import save_model

CHECKPOINT_DIR = "checkpoint"
LOG_DIR = "logs"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.npz"
CHECKPOINT_WEIGHTS = "model.weights.h5"


def check_output_dir(output_dir: pathlib.Path, config: ModelConfig, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Decide whether a run may write to ``output_dir``; return the checkpoint state to resume from (or None).

    Raises:
        ModelError: the directory holds a checkpoint or a model and neither ``resume`` nor
            ``overwrite`` says what to do with it, or ``resume`` has nothing to continue.
    """
    if resume and overwrite:
        raise ModelError("Pass either {option:resume} or {option:overwrite}, not both.")
    state = None if overwrite else load_checkpoint_state(output_dir)
    if state is not None and not resume:
        raise ModelError(
            f"{str(output_dir)!r} already holds a training checkpoint (step {state['step']}); pass {{option:resume}} "
            "to continue it, {option:overwrite} to start again, or choose another {option:output_dir}."
        )
    if resume and state is None:
        raise ModelError(f"Nothing to resume: {str(output_dir)!r} has no {CHECKPOINT_DIR}/{STATE_FILE}; drop {{option:resume}}.")
    if state is not None and not _same_config(state["config"], config):
        raise ModelError(f"The checkpoint in {str(output_dir)!r} was trained with a different config; resume with the same config.")
    holds_model = any((output_dir / name).exists() for name in (CONFIG_FILE, WEIGHTS_FILE))
    if state is None and holds_model and not overwrite:
        raise ModelError(
            f"{str(output_dir)!r} already holds a model; pass {{option:overwrite}} to replace it, "
            "or choose another {option:output_dir}."
        )
    return state


def run_state(
    resumed: Mapping[str, Any] | None, *, config: ModelConfig, seed: int, batch_size: int, freeze_encoder: bool,
    from_model: str | os.PathLike | None, train_tracks: Sequence[str], validation_tracks: Sequence[str],
    stem_weights: Mapping[str, float] | None,
) -> dict[str, Any]:
    """What a run's checkpoints record (``state.json``): a resumed run's state, or a new run's settings and split.

    Either way it holds this run's ``batch_size``: a resume with another batch size records it, and the
    next resume keeps it.
    """
    if resumed is not None:
        return {**resumed, "batch_size": batch_size}
    state = {
        "config": config.to_dict(),
        "seed": seed,
        "batch_size": batch_size,
        "freeze_encoder": freeze_encoder,
        "from_model": None if from_model is None else str(from_model),
        "train_tracks": list(train_tracks),
        "validation_tracks": list(validation_tracks),
    }
    if stem_weights is not None:
        state["stem_weights"] = {stem: float(weight) for stem, weight in stem_weights.items()}
    return state


def _same_config(saved: Mapping[str, Any], config: ModelConfig) -> bool:
    """Whether a checkpoint's stored config is ``config`` (keys added to ModelConfig since take their
    defaults; ``mask_exponent`` is an inference setting that training never uses, so it may differ)."""
    try:
        return config_lib.from_dict(dict(saved)).replace(mask_exponent=config.mask_exponent) == config
    except ConfigError:
        return False


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


def restore_checkpoint(directory: pathlib.Path, model: keras.Model, train_model: keras.Model) -> None:
    """Load the masks model's weights and the optimizer's state saved by :func:`save_checkpoint`."""
    model.load_weights(directory / CHECKPOINT_WEIGHTS)
    optimizer = train_model.optimizer
    optimizer.build(train_model.trainable_variables)
    with np.load(directory / OPTIMIZER_FILE) as saved:
        arrays = [saved[key] for key in sorted(saved.files)]
    if len(arrays) != len(optimizer.variables):
        raise ModelError(
            f"The checkpoint in {str(directory)!r} has {len(arrays)} optimizer variables, this run {len(optimizer.variables)}; "
            "resume with the same settings ({option:freeze_encoder}, mixed precision) or start a new {option:output_dir}."
        )
    for variable, array in zip(optimizer.variables, arrays):
        variable.assign(array)


class Checkpointer(keras.callbacks.Callback):
    """Validate-then-save at every epoch end (an epoch is ``checkpoint_every`` steps); stop at ``steps``."""

    def __init__(self, *, mask_model, config, output_dir, steps, state, progress):
        super().__init__()
        self.mask_model, self.config, self.output_dir = mask_model, config, output_dir
        self.steps, self.state, self.progress = steps, dict(state), progress

    def step(self) -> int:
        """Optimizer steps done so far."""
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self.step()
        if self.progress is not None:
            self.progress(step, self.steps, {k: float(v) for k, v in (logs or {}).items()})
        if step >= self.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        step = self.step()
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.state.update(step=step, epoch=epoch + 1, logs=logs)
        self.state.setdefault("history", []).append({"step": step, **logs})
        save_checkpoint(self.output_dir / CHECKPOINT_DIR, self.mask_model, self.model.optimizer, self.state)
        save_model(self.mask_model, self.config, self.output_dir)
