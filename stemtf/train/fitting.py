"""Train and fine-tune separation models on one machine or several workers: :func:`fit`, step by step.

:func:`fit` wraps the mask model in a training model that multiplies every stem's mask by the
mixture magnitude and minimises Spleeter's loss (:mod:`stemtf.train.objective`). Every
``checkpoint_every`` steps it validates on held-out tracks and rewrites the output directory as a
loadable model plus a ``checkpoint/`` folder that ``resume=True`` continues from
(:mod:`stemtf.train.checkpoints`). TensorBoard logs go to ``logs/`` (:mod:`stemtf.train.summaries`).
On one machine the loop is Keras ``model.fit``; on several workers (``strategy="multi-worker"``) it is
:func:`stemtf.train.distributed.fit_loop`, which runs the same compiled steps and callbacks.

The parts: :mod:`stemtf.train.datasets` (the split, the training stream, the validation crops),
:mod:`stemtf.train.models` (the masks model, fine-tuning, the compiled training wrapper),
:mod:`stemtf.train.checkpoints` (the run directory and the state a resume continues from).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence

import keras
import tensorflow as tf

from stemtf import data as data_lib
from stemtf import options
from stemtf.config import ModelConfig
from stemtf.errors import OptionError
from stemtf.train import distributed
from stemtf.train.checkpoints import CHECKPOINT_DIR, LOG_DIR, Checkpointer, check_output_dir, restore_checkpoint, run_state
from stemtf.train.datasets import TargetsFunction, data_error, split_tracks, training_datasets
from stemtf.train.models import build_models, fine_tune_config
from stemtf.train.summaries import tensorboard_callbacks

ProgressCallback = Callable[[int, int, Mapping[str, float]], None]


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


def fit(
    config: ModelConfig,
    data: str | os.PathLike | tuple[Sequence[data_lib.Track], Sequence[data_lib.Track]],
    *,
    output_dir: str | os.PathLike,
    steps: int = options.DEFAULT_STEPS, batch_size: int = options.DEFAULT_BATCH_SIZE, learning_rate: float = options.DEFAULT_LEARNING_RATE,
    lr_schedule: str = "cosine", warmup_steps: int = 0, num_frames: int | None = None, layout: str = "auto",
    stem_groups: Mapping[str, Sequence[str]] | None = None, stem_weights: Mapping[str, float] | None = None,
    validation_fraction: float = 0.1, validation_tracks: Sequence[str] | None = None, validation_crops: int = 4,
    augmentation: data_lib.Augmentation | None = data_lib.DEFAULT_AUGMENTATION, seed: int = 0, resume: bool = False,
    from_model: str | os.PathLike | None = None, freeze_encoder: bool = False, overwrite: bool = False,
    checkpoint_every: int = options.DEFAULT_CHECKPOINT_EVERY, mixed_precision: bool | None = None, tensorboard: bool | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (), progress: ProgressCallback | None = None, strategy: str = "auto",
    worker_timeout: float = distributed.DEFAULT_WORKER_TIMEOUT, targets: TargetsFunction | None = None,
) -> TrainingResult:
    """Train (or fine-tune, or resume training) a separation model; returns a :class:`TrainingResult`.

    Args:
        config: The model to train; its stems name the targets.
        data: A data folder, CSV manifest or MUSDB18 folder (:mod:`stemtf.data`), or ``(train_tracks, validation_tracks)``;
            partly labelled tracks train with per-output sample weights and one more output per sum of stems.
        output_dir: Model directory written at every checkpoint, with ``checkpoint/`` and ``logs/``.
        steps: Total optimizer steps (a resumed run counts the steps already done).
        batch_size: Examples per step (global, across GPUs and workers; a multiple of their number).
        learning_rate, lr_schedule, warmup_steps: Adam's peak rate, and ``cosine`` (decay to a tenth at
            ``steps`` after a linear warm-up) or ``constant``.
        num_frames: STFT frames per example (a multiple of ``2 ** len(config.unet.filters)``); default ``config.segment_frames``.
        layout: ``auto``, ``folder``, ``csv`` or ``musdb``.
        stem_groups: Model stem -> file stems summed into it, e.g. ``{"other": ["other", "piano"]}``.
        stem_weights: Weight of a stem's loss, e.g. ``{"vocals": 2}``; other stems and sums weigh 1.
        validation_fraction: Share of tracks held out (MUSDB18: its official split); 0: no validation.
        validation_tracks, validation_crops: The tracks to hold out instead; fixed crops per held-out track.
        augmentation: Training augmentation, or None.
        seed: Seed of the data pipeline, the split and the weights' initialisation.
        resume, overwrite: Continue from ``output_dir/checkpoint`` (required when one exists), or start
            again there; without either, a directory holding a model is an error (:func:`check_output_dir`).
        from_model: A trained model (name or directory) to fine-tune (:func:`initialise_from`); the
            result keeps its ``mask_exponent`` unless ``config`` sets one other than 1.
        freeze_encoder: Keep the trunk's encoder layers fixed (fine-tuning).
        checkpoint_every: Steps between validation + checkpoint.
        mixed_precision: float16 compute; default: only when a GPU exists.
        tensorboard: Scalars, and the audio and spectrograms of a held-out example, in ``output_dir/logs``;
            default: when ``tensorboard`` is installed.
        callbacks, progress: Extra Keras callbacks; a function called as ``progress(step, steps, logs)``.
        strategy: ``auto`` (this machine) or ``multi-worker`` (``TF_CONFIG``; every worker calls ``fit``
            alike, once per fresh process: :mod:`stemtf.train.distributed`).
        worker_timeout: Seconds a worker waits for the others before failing (``multi-worker``).
        targets: Distillation: mixture magnitudes -> the training targets ``{stem: magnitude}``
            (:func:`stemtf.train.datasets.training_datasets`); validation keeps the data's own stems.

    Raises:
        DataError, ModelError, ClusterError, OptionError: bad data; a bad ``from_model``, checkpoint or
            ``output_dir``; a bad ``TF_CONFIG`` or a lost worker; a bad argument (also a ``ValueError``).
    """
    output_dir = pathlib.Path(output_dir)
    num_frames = config.segment_frames if num_frames is None else num_frames
    options.check_training(steps=steps, batch_size=batch_size, learning_rate=learning_rate, checkpoint_every=checkpoint_every,
                           from_model=from_model, freeze_encoder=freeze_encoder, num_frames=num_frames, config=config)
    options.check_stem_weights(None if stem_weights is None else dict(stem_weights), config.stems)
    config = fine_tune_config(config, from_model)
    state = check_output_dir(output_dir, config, resume=resume, overwrite=overwrite)
    cluster = _make_cluster(strategy, worker_timeout, batch_size)
    train_tracks, held_out, sums = split_tracks(data, stems=config.stems, stem_groups=stem_groups, layout=layout, seed=seed,
                                                validation_fraction=validation_fraction, validation_tracks=validation_tracks)
    model, train_model, start_step = _models(
        config, cluster.strategy, state, output_dir, seed=seed, from_model=from_model, freeze_encoder=freeze_encoder, sums=sums,
        mixed_precision=mixed_precision, learning_rate=learning_rate, lr_schedule=lr_schedule, steps=steps,
        warmup_steps=warmup_steps, stem_weights=stem_weights)
    if start_step >= steps:
        return TrainingResult(model, config, output_dir, start_step, list(state.get("history", [])))
    make_datasets = functools.partial(  # (num_shards, shard_index, shard_batch_size) -> (train, validation)
        training_datasets, config, train_tracks, held_out, num_frames=num_frames, batch_size=batch_size, augmentation=augmentation,
        seed=seed, first_example=start_step * batch_size, validation_crops=validation_crops, sums=sums, targets=targets)
    new_state = run_state(state, config=config, seed=seed, batch_size=batch_size, freeze_encoder=freeze_encoder, from_model=from_model,
                          train_tracks=[t.name for t in train_tracks], validation_tracks=[t.name for t in held_out], stem_weights=stem_weights)
    return _train(
        cluster, model, train_model, make_datasets, config=config, output_dir=output_dir, state=new_state, steps=steps,
        start_step=start_step, batch_size=batch_size, checkpoint_every=checkpoint_every, progress=progress, callbacks=callbacks,
        tensorboard=tensorboard, example_track=(held_out or train_tracks)[0], num_frames=num_frames)  # a held-out track if any


def _make_cluster(strategy: str, worker_timeout: float, batch_size: int) -> distributed.Cluster:
    """The run's cluster, made before any other TensorFlow work (a multi-worker strategy starts this
    process's server); the global ``batch_size`` must split evenly between its replicas."""
    cluster = distributed.make_cluster(strategy, worker_timeout=worker_timeout)
    replicas = cluster.strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise OptionError(
            "batch_size", f"{{option}} (global) must be a multiple of the {replicas} replicas training together. Received {batch_size}."
        )
    return cluster


def _models(
    config: ModelConfig, strategy: tf.distribute.Strategy, state: Mapping | None, output_dir: pathlib.Path, *, seed: int,
    from_model, **build_keywords,
) -> tuple[keras.Model, keras.Model, int]:
    """The masks model, its compiled training wrapper (:func:`build_models`, seeded) and the step the run
    starts at: a resumed run's models and optimizer come from its checkpoint (``from_model`` is then unused)."""
    keras.utils.set_random_seed(seed)
    model, train_model = build_models(config, strategy, from_model=from_model if state is None else None, **build_keywords)
    if state is None:
        return model, train_model, 0
    with strategy.scope():  # optimizer slots are mirrored variables under a strategy
        restore_checkpoint(output_dir / CHECKPOINT_DIR, model, train_model)
    return model, train_model, int(state["step"])


def _train(
    cluster: distributed.Cluster, model: keras.Model, train_model: keras.Model, make_datasets: distributed.DatasetsFn, *,
    config: ModelConfig, output_dir: pathlib.Path, state: dict, steps: int, start_step: int, batch_size: int,
    checkpoint_every: int, progress: ProgressCallback | None, callbacks: Sequence[keras.callbacks.Callback],
    tensorboard: bool | None, example_track: data_lib.Track, num_frames: int,
) -> TrainingResult:
    """Run the loop from ``start_step`` to ``steps``: one Keras "epoch" per checkpoint interval, each
    ending in validation and a checkpoint (with TensorBoard summaries of ``example_track``)."""
    # Workers other than the chief write their checkpoints to a folder deleted at the end rather than
    # skip them: TensorFlow's multi-worker guide has every worker save, as saving may read variables
    # through collective operations, and it keeps the workers' steps in lockstep.
    write_dir = output_dir if cluster.is_chief else pathlib.Path(tempfile.mkdtemp(prefix="stemtf-worker-"))
    checkpointer = Checkpointer(mask_model=model, config=config, output_dir=write_dir, steps=steps, state=state, progress=progress)
    all_callbacks = [checkpointer, *callbacks, *tensorboard_callbacks(
        write_dir / LOG_DIR, tensorboard, mask_model=model, config=config, track=example_track, num_frames=num_frames,
    )]
    steps_per_epoch = min(checkpoint_every, steps)
    initial_epoch = start_step // steps_per_epoch
    epochs = initial_epoch + math.ceil((steps - start_step) / steps_per_epoch)
    write_dir.mkdir(parents=True, exist_ok=True)
    failure = None
    try:
        if cluster.multi_worker:  # Keras 3's fit fails under MultiWorkerMirroredStrategy
            distributed.fit_loop(cluster, train_model, make_datasets, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                                 epochs=epochs, initial_epoch=initial_epoch, callbacks=all_callbacks)
        else:
            train_data, validation_data = make_datasets(1, 0, batch_size)
            train_model.fit(train_data, validation_data=validation_data, steps_per_epoch=steps_per_epoch, epochs=epochs,
                            initial_epoch=initial_epoch, callbacks=all_callbacks, shuffle=False, verbose=0)
    except tf.errors.OpError as error:
        failure = data_error(error)
        if failure is None:
            raise
    finally:
        if write_dir != output_dir:
            shutil.rmtree(write_dir, ignore_errors=True)
    if failure is not None:
        # Raised outside the except block, so that TensorFlow's error and its traceback (which hold
        # the dataset iterator and its reader threads) are released first: held, they hang the exit.
        raise failure
    return TrainingResult(model, config, output_dir, checkpointer.step(), list(checkpointer.state["history"]))
