"""What a run trains and validates on: the split of its tracks, the training stream and the fixed
validation crops (:mod:`stemtf.data`), and the one-line error of a bad file read mid-run."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf

from stemtf import data as data_lib
from stemtf.config import ModelConfig
from stemtf.errors import DataError

TargetsFunction = Callable[[tf.Tensor], Mapping[str, tf.Tensor]]


def split_tracks(
    data: str | os.PathLike | tuple[Sequence[data_lib.Track], Sequence[data_lib.Track]], *, stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None, layout: str, validation_fraction: float,
    validation_tracks: Sequence[str] | None, seed: int,
) -> tuple[list[data_lib.Track], list[data_lib.Track], list[tuple[str, ...]] | None]:
    """``(train_tracks, held_out, sums)``: ``data``'s split (:func:`stemtf.data.training_split`, or the
    given pair), and the sums of stems both datasets yield when any track is partly labelled (else None)."""
    if isinstance(data, (str, os.PathLike)):
        train_tracks, held_out = data_lib.training_split(
            data, stems=stems, stem_groups=stem_groups, layout=layout,
            validation_fraction=validation_fraction, validation_tracks=validation_tracks, seed=seed,
        )
    else:
        train_tracks, held_out = data[0], data[1]
    every_track = [*train_tracks, *held_out]
    sums = data_lib.stem_sums(every_track) if any(t.partly_labelled for t in every_track) else None
    return list(train_tracks), list(held_out), sums


def training_datasets(
    config: ModelConfig, train_tracks, held_out, num_shards: int = 1, shard_index: int = 0, shard_batch_size: int | None = None,
    *, num_frames: int, batch_size: int, augmentation, seed: int, first_example: int, validation_crops: int,
    sums: Sequence[tuple[str, ...]] | None = None, targets: TargetsFunction | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """The endless training stream (continuing at ``first_example``) and the fixed validation set (or None).

    With ``num_shards``, the training stream is shard ``shard_index`` of every global batch of
    ``batch_size`` (see :func:`stemtf.data.training_dataset`); both datasets come in batches of
    ``shard_batch_size`` (default: ``batch_size // num_shards``; less when a worker has several GPUs).
    Those three come first: bound to the others, this is :func:`stemtf.train.distributed.fit_loop`'s
    ``make_datasets``.
    With ``targets`` (distillation) the training stems are ``targets(mixture)`` and every example
    counts in full; the validation set keeps its own stems.
    """
    geometry = {
        "stems": config.stems, "sample_rate": config.sample_rate, "num_channels": config.num_channels,
        "n_fft": config.n_fft, "hop_length": config.hop_length, "max_bins": config.max_bins,
        "num_frames": num_frames, "sums": sums,
    }
    shard_batch_size = shard_batch_size or batch_size // num_shards
    train_data = data_lib.training_dataset(
        train_tracks, augmentation=augmentation, seed=seed, first_example=first_example, batch_size=batch_size,
        num_shards=num_shards, shard_index=shard_index, **geometry,
    )
    if targets is not None:
        train_data = train_data.map(lambda mixture, stems, *weights: (
            mixture, targets(mixture), *[{k: tf.ones_like(w) for k, w in weight.items()} for weight in weights]
        ))
    if shard_batch_size != batch_size // num_shards:
        train_data = train_data.rebatch(shard_batch_size)  # split between this worker's GPUs, in order
    validation_data = None
    if held_out:
        validation_data = data_lib.validation_dataset(
            held_out, crops_per_track=validation_crops, batch_size=shard_batch_size, **geometry
        )
    return train_data, validation_data


def data_error(error: Exception) -> DataError | None:
    """The stemtf error a data-pipeline read raised (a corrupt file), out of TensorFlow's wrapping; None if none.

    Reads run inside ``tf.numpy_function``, which re-raises every Python error as an OpError whose
    message quotes it: training stops with that one line (naming the file) instead of a traceback.
    """
    found = re.search(r"(?:AudioError|DataError): (.+)", getattr(error, "message", "") or str(error))
    return DataError(f"Training stopped: {found.group(1).strip()}") if found else None
