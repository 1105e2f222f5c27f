"""The tf.data pipelines: endless augmented training crops and fixed validation crops, as magnitude spectrograms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from stemtf import spectral
from stemtf.data.augment import DEFAULT_AUGMENTATION, Augmentation, _ExampleReader
from stemtf.data.reading import read_crop
from stemtf.data.tracks import Track, stem_sums, sum_key, sum_name
from stemtf.errors import DataError


def _spectrogram_dataset(
    waveforms: tf.data.Dataset, *, stems: Sequence[str], sums: Sequence[tuple[str, ...]] | None, batch_size: int,
    n_fft: int, hop_length: int, max_bins: int,
) -> tf.data.Dataset:
    def to_magnitudes(batch: tf.Tensor, weights: tf.Tensor | None = None):
        magnitude = tf.abs(spectral.stft(batch, n_fft=n_fft, hop_length=hop_length))[..., :max_bins, :]
        if sums is None:
            return magnitude[:, 0], {stem: magnitude[:, 1 + i] for i, stem in enumerate(stems)}
        names = [*stems, *(sum_key(key) for key in sums)]
        # Weights shaped (batch, 1, 1) to broadcast over the (batch, frames, bins) values of the L1 loss.
        return (
            magnitude[:, 0],
            {name: magnitude[:, 1 + i] for i, name in enumerate(names)},
            {name: weights[:, i, None, None] for i, name in enumerate(names)},
        )

    batched = waveforms.batch(batch_size, drop_remainder=False, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batched.map(to_magnitudes, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _check_geometry(tracks, stems, num_frames, batch_size) -> None:
    if not tracks:
        raise DataError("No tracks to read examples from.")
    for track in tracks:
        if list(track.stems) != list(stems):
            raise DataError(f"Track {track.name!r} has stems {list(track.stems)}, expected {list(stems)}.")
    if num_frames < 1 or batch_size < 1:
        raise ValueError(f"`num_frames` and `batch_size` must be >= 1. Received {num_frames}, {batch_size}.")


def _dataset_sums(tracks: Sequence[Track], sums: Sequence[tuple[str, ...]] | None) -> list[tuple[str, ...]] | None:
    """The sums a dataset yields: as given (checked to cover the tracks'), else the tracks' own, else None."""
    if sums is None:
        return stem_sums(tracks) if any(track.partly_labelled for track in tracks) else None
    sums = [tuple(key) for key in sums]
    for track in tracks:
        missing = [key for key in track.sums if key not in sums]
        if missing:
            raise DataError(f"Track {track.name!r} has the sum {sum_name(missing[0])!r}, which `sums` leaves out.")
    return sums


def _load(read, shape: tuple[int, ...], weighted: bool, *args: tf.Tensor):
    """``read(*args)`` in the graph: waveforms of ``shape`` (mixture first), and when ``weighted`` the
    weight of every other row."""
    if not weighted:
        waveforms = tf.numpy_function(read, list(args), tf.float32, stateful=False)
        return tf.ensure_shape(waveforms, shape)
    waveforms, weights = tf.numpy_function(read, list(args), [tf.float32, tf.float32], stateful=False)
    return tf.ensure_shape(waveforms, shape), tf.ensure_shape(weights, (shape[0] - 1,))


def training_dataset(
    tracks: Sequence[Track],
    *,
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int,
    n_fft: int,
    hop_length: int,
    max_bins: int,
    num_frames: int,
    batch_size: int,
    augmentation: Augmentation | None = DEFAULT_AUGMENTATION,
    seed: int = 0,
    first_example: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    sums: Sequence[tuple[str, ...]] | None = None,
) -> tf.data.Dataset:
    """An endless, deterministic dataset of augmented random crops as magnitude spectrograms.

    Example ``i`` is drawn from ``(seed, i)`` alone, and step ``s`` of a run uses examples
    ``first_example + s * batch_size`` onwards. With ``num_shards`` (one per training worker) the
    batch is split, not the tracks: shard ``k`` yields the ``k``-th ``batch_size / num_shards``
    examples of every step's batch, so the workers together train on exactly the examples one
    worker would, none twice, and a resumed run continues at the same examples.

    Args:
        tracks: Training tracks (from :func:`training_split` or the layout functions).
        stems: The model's stems, in order (the tracks' stems).
        sample_rate: The model's sample rate, in Hz.
        num_channels: The model's channels.
        n_fft: STFT size.
        hop_length: STFT hop.
        max_bins: Lowest bins kept.
        num_frames: Frames per example (a multiple of ``2 ** depth`` for the U-Net).
        batch_size: Examples per batch.
        augmentation: Augmentation, or None for plain crops (mixture files used when present).
        seed: Seed of every random draw; equal seeds give equal datasets.
        first_example: Index of the first example (to continue a run where it stopped).
        num_shards: Parts each batch is split into (the training workers); must divide ``batch_size``.
        shard_index: The part this dataset yields, in ``[0, num_shards)``.
        sums: The sums of stems to yield, keyed by :func:`sum_key` (``drums.bass.other``), and with
            them the sample weights. Default: None when no track is partly labelled, else every
            sum a track has (:func:`stem_sums`). Give the same list to the training and
            validation datasets of one model (``[]`` when only unknown stems occur).

    Returns:
        Batches ``(mixture, {stem: stem_magnitude})``, each float32
        ``(batch_size // num_shards, num_frames, max_bins, num_channels)``. With sums, batches
        ``(mixture, {name: magnitude}, {name: weight})`` whose dicts hold the stems and then the
        sums, each weight float32 ``(batch, 1, 1)``: 1 where the example's track labels that stem
        or sum, 0 where it does not (unknown, only in a sum, a sum it lacks; the magnitude is then
        silence), for Keras's per-output sample weights.
    """
    _check_geometry(tracks, stems, num_frames, batch_size)
    if num_shards < 1 or not 0 <= shard_index < num_shards or batch_size % num_shards:
        raise ValueError(
            f"`num_shards` must divide `batch_size` and `shard_index` be in [0, num_shards). "
            f"Received num_shards={num_shards}, shard_index={shard_index}, batch_size={batch_size}."
        )
    shard_size = batch_size // num_shards
    sums = _dataset_sums(tracks, sums)
    num_samples = spectral.segment_samples(num_frames, n_fft=n_fft, hop_length=hop_length)
    reader = _ExampleReader(tracks, stems, num_samples, sample_rate, num_channels, augmentation, seed, sums)
    shape = (1 + len(stems) + len(sums or ()), num_samples, num_channels)

    def load(index: tf.Tensor):
        return _load(reader, shape, sums is not None, index)

    def example_index(position: tf.Tensor) -> tf.Tensor:
        # The position-th example of this shard: step position // shard_size, slot position % shard_size.
        step, slot = position // shard_size, position % shard_size
        return first_example + step * batch_size + shard_index * shard_size + slot

    positions = tf.data.Dataset.range(np.iinfo(np.int64).max // 2)
    waveforms = positions.map(example_index).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _spectrogram_dataset(
        waveforms, stems=stems, sums=sums, batch_size=shard_size, n_fft=n_fft, hop_length=hop_length, max_bins=max_bins
    )


def validation_crops(tracks: Sequence[Track], *, num_samples: int, sample_rate: int, crops_per_track: int) -> list[tuple[int, int]]:
    """``(track_index, start)`` of evenly spaced crops over every track (at most ``crops_per_track`` each)."""
    crops = []
    for index, track in enumerate(tracks):
        length = int(track.num_samples * sample_rate / track.sample_rate)
        starts = np.linspace(0, max(0, length - num_samples), crops_per_track).round().astype(int)
        crops += [(index, int(start)) for start in sorted(set(starts.tolist()))]
    return crops


def validation_dataset(
    tracks: Sequence[Track],
    *,
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int,
    n_fft: int,
    hop_length: int,
    max_bins: int,
    num_frames: int,
    batch_size: int,
    crops_per_track: int = 4,
    sums: Sequence[tuple[str, ...]] | None = None,
) -> tf.data.Dataset:
    """A finite dataset of fixed, evenly spaced, unaugmented crops of held-out tracks.

    Arguments and batches as for :func:`training_dataset`; ``crops_per_track`` crops are spread
    over each track. A partly labelled track's mixture is its mixture file, else the sum of its
    labelled stems and sums.
    """
    _check_geometry(tracks, stems, num_frames, batch_size)
    sums = _dataset_sums(tracks, sums)
    num_samples = spectral.segment_samples(num_frames, n_fft=n_fft, hop_length=hop_length)
    crops = validation_crops(tracks, num_samples=num_samples, sample_rate=sample_rate, crops_per_track=crops_per_track)
    shape = (1 + len(stems) + len(sums or ()), num_samples, num_channels)

    def read(track_index: np.int64, start: np.int64):
        track = tracks[int(track_index)]
        crop = read_crop(track, int(start), num_samples, sample_rate=sample_rate, num_channels=num_channels, stems=stems,
                         sums=sums or ())
        if sums is None:
            return crop
        labelled = [track.labels(stem) for stem in stems] + [key in track.sums for key in sums]
        return crop, np.asarray(labelled, np.float32)

    def load(crop: tf.Tensor):
        return _load(read, shape, sums is not None, crop[0], crop[1])

    positions = tf.data.Dataset.from_tensor_slices(np.asarray(crops, np.int64).reshape(-1, 2))
    waveforms = positions.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _spectrogram_dataset(
        waveforms, stems=stems, sums=sums, batch_size=batch_size, n_fft=n_fft, hop_length=hop_length, max_bins=max_bins
    )
