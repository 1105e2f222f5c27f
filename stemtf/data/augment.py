"""Augmentation (gain, channel swap, remixing across tracks, speed) and the reader that draws example ``index`` from its seed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import soxr

from stemtf import options
from stemtf.data.reading import read_crop
from stemtf.data.tracks import Track


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random changes applied to every training example (all draws per example, from its seed).

    With augmentation the mixture is always the sum of the augmented stems; mixture files are only
    used without it (validation).

    Attributes:
        gain_range: Each stem is scaled by a factor drawn uniformly from this (linear) range.
        channel_swap_probability: Probability that a stem's left and right channels are swapped.
        remix_probability: Probability that an example takes every stem from an independently
            drawn track and offset instead of all stems from one track.
        speed_range: Each example is played faster or slower by a factor drawn uniformly from this
            range, tempo and pitch together like a tape (1.06 is about a semitone up): a handful of
            singers and instruments then covers more voices and keys. ``(1, 1)`` turns it off.
    """

    gain_range: tuple[float, float] = (0.25, 1.25)
    channel_swap_probability: float = 0.5
    remix_probability: float = 0.5
    speed_range: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        low, high = self.gain_range
        if not 0 <= low <= high:
            raise ValueError(f"Argument `gain_range` must be (low, high) with 0 <= low <= high. Received {self.gain_range}.")
        options.check_speed_range(self.speed_range)
        for name in ("channel_swap_probability", "remix_probability"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"Argument `{name}` must be in [0, 1]. Received {value}.")


DEFAULT_AUGMENTATION = Augmentation()


class _ExampleReader:
    """Draws training example ``index`` (mixture + stems waveforms) from its own seed."""

    def __init__(self, tracks, stems, num_samples, sample_rate, num_channels, augmentation, seed):
        self.tracks, self.stems, self.num_samples = list(tracks), list(stems), num_samples
        self.sample_rate, self.num_channels = sample_rate, num_channels
        self.augmentation, self.seed = augmentation, seed

    def _draw(self, rng: np.random.Generator, num_samples: int) -> tuple[Track, int]:
        track = self.tracks[rng.integers(len(self.tracks))]
        length = int(track.num_samples * self.sample_rate / track.sample_rate)
        return track, int(rng.integers(max(1, length - num_samples + 1)))

    def __call__(self, index: np.int64) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(index)])
        kwargs = {"sample_rate": self.sample_rate, "num_channels": self.num_channels}
        augmentation = self.augmentation
        if augmentation is None:
            return read_crop(*self._draw(rng, self.num_samples), self.num_samples, stems=self.stems, **kwargs)
        low, high = augmentation.speed_range
        speed = float(rng.uniform(low, high)) if (low, high) != (1.0, 1.0) else 1.0
        # Played `speed` times faster, a crop of num_samples needs that many more source samples
        # (a few extra so the resampler's output is never short).
        needed = self.num_samples if speed == 1.0 else math.ceil(self.num_samples * speed) + 64
        track, start = self._draw(rng, needed)
        if rng.random() < augmentation.remix_probability:
            stems = [read_crop(*self._draw(rng, needed), needed, stems=[s], mixture=False, **kwargs)[0] for s in self.stems]
        else:
            stems = list(read_crop(track, start, needed, stems=self.stems, mixture=False, **kwargs))
        if speed != 1.0:
            stems = [soxr.resample(s, self.sample_rate * speed, self.sample_rate)[: self.num_samples] for s in stems]
        for i in range(len(stems)):
            stems[i] = stems[i] * np.float32(rng.uniform(*augmentation.gain_range))
            if rng.random() < augmentation.channel_swap_probability and self.num_channels == 2:
                stems[i] = stems[i][:, ::-1]
        stack = np.stack(stems)
        return np.concatenate([stack.sum(axis=0, keepdims=True), stack]).astype(np.float32)
