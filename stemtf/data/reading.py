"""Reading crops of tracks with partial reads (never decoding a whole file), resampled to the model's rate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import soxr

from stemtf import audio
from stemtf.data.tracks import AudioSource, Track


def read_segment(source: AudioSource, start: int, num_samples: int, *, sample_rate: int, num_channels: int) -> np.ndarray:
    """Read ``num_samples`` samples from ``start`` without decoding the rest of the file.

    Args:
        source: The file, or one stream of a container.
        start: First sample, at ``sample_rate``.
        num_samples: Samples to read, at ``sample_rate``.
        sample_rate: The source's own sample rate (the track's), in Hz.
        num_channels: Channels of the result (mono is duplicated, stereo averaged).

    Returns:
        float32 ``(num_samples, num_channels)``, zero-padded past the end of the file.

    Raises:
        AudioError: the file cannot be read (see :func:`stemtf.audio.read_segment`).
    """
    block = audio.read_segment(source.path, start, num_samples, sample_rate=sample_rate, stream=source.stream)
    block = audio.convert_channels(block, num_channels)
    if block.shape[0] < num_samples:
        block = np.pad(block, [(0, num_samples - block.shape[0]), (0, 0)])
    return block


def read_crop(
    track: Track,
    start: int,
    num_samples: int,
    *,
    sample_rate: int,
    num_channels: int,
    stems: Sequence[str] | None = None,
    mixture: bool = True,
    sums: Sequence[tuple[str, ...]] = (),
) -> np.ndarray:
    """Read one crop of a track: the mixture, every stem, then every sum of stems asked for.

    A stem the track does not label on its own (:meth:`Track.labels`) reads as silence, and so
    does a sum the track does not have.

    Args:
        track: The track.
        start: First sample, at ``sample_rate``.
        num_samples: Samples to read, at ``sample_rate`` (resampled from the track's rate).
        sample_rate: Rate of the crop, in Hz.
        num_channels: Channels of the crop.
        stems: Stems to read (default: all of the track's, in order).
        mixture: Whether to put the mixture first (the mixture file, or the sum of the stems and
            of the track's sums).
        sums: Sums of stems to read after the stems (keys of :attr:`Track.sums`).

    Returns:
        float32 ``(int(mixture) + len(stems) + len(sums), num_samples, num_channels)``.
    """
    stems = list(track.stems) if stems is None else list(stems)
    rate = track.sample_rate
    if rate == sample_rate:
        source_start, source_samples = start, num_samples
    else:
        source_start = round(start * rate / sample_rate)
        source_samples = math.ceil(num_samples * rate / sample_rate) + 16

    def read(sources: Sequence[AudioSource]) -> np.ndarray:
        total = np.zeros((source_samples, num_channels), np.float32)
        for source in sources:
            total += read_segment(source, source_start, source_samples, sample_rate=rate, num_channels=num_channels)
        return total

    waveforms = [read(track.stems[stem]) for stem in stems]
    summed = [read(track.sums.get(tuple(key), ())) for key in sums]
    if mixture:
        if track.mixture is not None:
            waveforms.insert(0, read([track.mixture]))
        elif track.sums:  # the stems' labels and the sums together are the whole mixture
            waveforms.insert(0, np.sum(waveforms, axis=0) + read([s for files in track.sums.values() for s in files]))
        else:
            waveforms.insert(0, np.sum(waveforms, axis=0))
    stack = np.stack(waveforms + summed)
    if rate != sample_rate:
        resampled = [soxr.resample(w, rate, sample_rate) for w in stack]
        stack = np.stack([np.pad(w, [(0, max(0, num_samples - w.shape[0])), (0, 0)])[:num_samples] for w in resampled])
    return stack.astype(np.float32, copy=False)
