"""Augmentation (gain, channel swap, remixing across tracks, speed, equaliser and room) and the reader that draws example ``index`` from its seed."""

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
    used without it (validation). A partly labelled track (:attr:`Track.partly_labelled`) is never
    remixed: an example drawn from it is that track's crop, each labelled stem and each sum of stems
    with its own gain and swap, and the rest of its mixture file (the unknown stems) with one more.

    Attributes:
        gain_range: Each stem is scaled by a factor drawn uniformly from this (linear) range.
        channel_swap_probability: Probability that a stem's left and right channels are swapped.
        remix_probability: Probability that an example takes every stem from an independently
            drawn track and offset instead of all stems from one track. A stem is drawn only from
            tracks that label it on its own (not unknown, not only in a sum).
        speed_range: Each example is played faster or slower by a factor drawn uniformly from this
            range, tempo and pitch together like a tape (1.06 is about a semitone up): a handful of
            singers and instruments then covers more voices and keys. ``(1, 1)`` turns it off.
        remix_silent_stems: Whether the remix may draw a stem from a track where it is labelled
            silent. False draws each stem only from tracks with a file for it (silence when no track
            has one): with many parts alone (a guitar, a drum loop) most remixed stems would
            otherwise be silent. True (the default) keeps earlier runs' examples unchanged.
        eq_reverb_probability: Probability that a stem (each drawn on its own) is coloured like
            another recording: a random equaliser curve (gains of up to ``eq_db`` dB at 100 Hz,
            600 Hz, 3 kHz and 12 kHz, smooth in log-frequency) and a random room (an exponentially
            decaying noise tail, reverberation time 0.1-1.2 s, mixed in at up to 40%): a few
            dry studio stems then sound like more rooms and microphones. 0 (the default) draws
            exactly the examples it drew before.
        eq_db: Largest equaliser gain or cut, in dB.
    """

    gain_range: tuple[float, float] = (0.25, 1.25)
    channel_swap_probability: float = 0.5
    remix_probability: float = 0.5
    speed_range: tuple[float, float] = (1.0, 1.0)
    remix_silent_stems: bool = True
    eq_reverb_probability: float = 0.0
    eq_db: float = 6.0

    def __post_init__(self) -> None:
        low, high = self.gain_range
        if not 0 <= low <= high:
            raise ValueError(f"Argument `gain_range` must be (low, high) with 0 <= low <= high. Received {self.gain_range}.")
        options.check_speed_range(self.speed_range)
        if not 0 <= self.eq_db <= 24:
            raise ValueError(f"Argument `eq_db` must be in [0, 24]. Received {self.eq_db}.")
        for name in ("channel_swap_probability", "remix_probability", "eq_reverb_probability"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"Argument `{name}` must be in [0, 1]. Received {value}.")


DEFAULT_AUGMENTATION = Augmentation()

EQ_FREQUENCIES = (100.0, 600.0, 3000.0, 12000.0)  # Hz: where the equaliser's random gains sit
REVERB_TIME_RANGE = (0.1, 1.2)  # seconds to decay by 60 dB
REVERB_WET_MAX = 0.4


def eq_reverb(waveform: np.ndarray, rng: np.random.Generator, sample_rate: int, *, eq_db: float = 6.0) -> np.ndarray:
    """``waveform`` ``(num_samples, C)`` through a random equaliser and a random room (:func:`colour`)."""
    gains_db = rng.uniform(-eq_db, eq_db, len(EQ_FREQUENCIES))
    reverb_time = rng.uniform(*REVERB_TIME_RANGE)
    wet = rng.uniform(0.0, REVERB_WET_MAX)
    tail = max(1, int(reverb_time * sample_rate))
    # A diffuse room: noise decaying by 60 dB over the reverberation time, unit energy.
    room = rng.standard_normal(tail) * 10.0 ** (-3.0 * np.arange(tail) / (reverb_time * sample_rate))
    return colour(waveform, sample_rate, gains_db=gains_db, room=room / np.sqrt(np.sum(room**2)), wet=wet)


def colour(waveform: np.ndarray, sample_rate: int, *, gains_db, room: np.ndarray, wet: float) -> np.ndarray:
    """``waveform`` ``(num_samples, C)`` equalised and played in a room, same length, float32.

    One FFT convolution: the spectrum times the equaliser's curve (``gains_db`` at
    :data:`EQ_FREQUENCIES`, linear in log-frequency between them, flat beyond) times
    ``(1 - wet) + wet * room``'s response, the same for every channel. The room's tail beyond the
    crop is cut, as a crop of a longer reverberant recording would be.
    """
    num_samples = waveform.shape[0]
    size = _fft_size(num_samples + len(room) - 1)
    frequencies = np.fft.rfftfreq(size, 1.0 / sample_rate)
    curve_db = np.interp(np.log(np.maximum(frequencies, 20.0)), np.log(EQ_FREQUENCIES), np.asarray(gains_db, float))
    room_response = np.fft.rfft(np.asarray(room, np.float32), size, norm="forward") * size
    response = (10.0 ** (curve_db / 20.0) * ((1.0 - wet) + wet * room_response)).astype(np.complex64)
    # Channels as contiguous rows, float32, norm="forward" both ways (the same round trip): numpy's
    # FFT is several times faster like this than along axis 0 in float64 with the default norm.
    channels = np.ascontiguousarray(np.asarray(waveform, np.float32).T)
    spectrum = np.fft.rfft(channels, size, norm="forward") * response
    return np.ascontiguousarray(np.fft.irfft(spectrum, size, norm="forward")[:, :num_samples].T, dtype=np.float32)


def _fft_size(length: int) -> int:
    """The smallest ``2^a 3^b 5^c >= length``: sizes numpy's FFT transforms fast, less padding than a power of two."""
    best = 1 << max(0, length - 1).bit_length()  # the power of two
    power5 = 1
    while power5 < best:
        power35 = power5  # 3^b 5^c
        while power35 < best:
            size = power35
            while size < length:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


class _ExampleReader:
    """Draws training example ``index`` (mixture + stems waveforms) from its own seed.

    With ``sums`` (a list, even empty: the dataset has partly labelled tracks) an example also holds
    those sums of stems after the stems, and comes with the weight of every stem and sum: 1 where
    the example's track labels it, else 0 (its waveform is then silence).
    """

    def __init__(self, tracks, stems, num_samples, sample_rate, num_channels, augmentation, seed, sums=None):
        self.tracks, self.stems, self.num_samples = list(tracks), list(stems), num_samples
        self.sample_rate, self.num_channels = sample_rate, num_channels
        self.augmentation, self.seed = augmentation, seed
        self.sums = None if sums is None else [tuple(key) for key in sums]
        silence = augmentation is None or augmentation.remix_silent_stems
        # The tracks the remix may take each stem from; every track when all are fully labelled.
        self.donors = {
            stem: [t for t in self.tracks if t.labels(stem) and (silence or t.stems[stem])] for stem in self.stems
        }

    def _draw(self, rng: np.random.Generator, num_samples: int, tracks: list[Track] | None = None) -> tuple[Track, int]:
        tracks = self.tracks if tracks is None else tracks
        track = tracks[rng.integers(len(tracks))]
        length = int(track.num_samples * self.sample_rate / track.sample_rate)
        return track, int(rng.integers(max(1, length - num_samples + 1)))

    def _weights(self, track: Track) -> np.ndarray:
        labelled = [track.labels(stem) for stem in self.stems] + [key in track.sums for key in self.sums]
        return np.asarray(labelled, np.float32)

    def __call__(self, index: np.int64) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        kwargs = {"sample_rate": self.sample_rate, "num_channels": self.num_channels}
        augmentation = self.augmentation
        if augmentation is None:
            track, start = self._draw(rng, self.num_samples)
            crop = read_crop(track, start, self.num_samples, stems=self.stems, sums=self.sums or (), **kwargs)
            return crop if self.sums is None else (crop, self._weights(track))
        low, high = augmentation.speed_range
        speed = float(rng.uniform(low, high)) if (low, high) != (1.0, 1.0) else 1.0
        # Played `speed` times faster, a crop of num_samples needs that many more source samples
        # (a few extra so the resampler's output is never short).
        needed = self.num_samples if speed == 1.0 else math.ceil(self.num_samples * speed) + 64
        track, start = self._draw(rng, needed)
        if track.partly_labelled:
            stems = self._parts(track, start, needed)  # the stems, the track's sums, the unknown rest
        elif rng.random() < augmentation.remix_probability:
            stems = [self._donated(rng, stem, needed) for stem in self.stems]
        else:
            stems = list(read_crop(track, start, needed, stems=self.stems, mixture=False, **kwargs))
        if speed != 1.0:
            stems = [soxr.resample(s, self.sample_rate * speed, self.sample_rate)[: self.num_samples] for s in stems]
        for i in range(len(stems)):
            if augmentation.eq_reverb_probability and rng.random() < augmentation.eq_reverb_probability:
                stems[i] = eq_reverb(stems[i], rng, self.sample_rate, eq_db=augmentation.eq_db)
            stems[i] = stems[i] * np.float32(rng.uniform(*augmentation.gain_range))
            if rng.random() < augmentation.channel_swap_probability and self.num_channels == 2:
                stems[i] = stems[i][:, ::-1]
        stack = np.stack(stems)  # a partly labelled track's also holds its sums and unknown rest
        example = np.concatenate([stack.sum(axis=0, keepdims=True), stack[: len(self.stems)]]).astype(np.float32)
        if self.sums is None:
            return example
        silence = np.zeros(example.shape[1:], np.float32)
        own = list(track.sums)
        summed = [stack[len(self.stems) + own.index(key)] if key in track.sums else silence for key in self.sums]
        return np.concatenate([example, np.asarray(summed, np.float32).reshape(-1, *silence.shape)]), self._weights(track)

    def _donated(self, rng: np.random.Generator, stem: str, num_samples: int) -> np.ndarray:
        """``stem`` of a crop of a track drawn among those that may give it (silence when none may)."""
        donors = self.donors[stem]
        if not donors:
            return np.zeros((num_samples, self.num_channels), np.float32)
        track, start = self._draw(rng, num_samples, donors)
        return read_crop(track, start, num_samples, stems=[stem], mixture=False, sample_rate=self.sample_rate,
                         num_channels=self.num_channels)[0]

    def _parts(self, track: Track, start: int, num_samples: int) -> list[np.ndarray]:
        """A partly labelled track's crop as parts to augment: the stems, the track's sums, then what
        the mixture file holds beyond them (the unknown stems), when the track has unknown stems."""
        crop = read_crop(track, start, num_samples, stems=self.stems, sums=list(track.sums), mixture=bool(track.unknown),
                         sample_rate=self.sample_rate, num_channels=self.num_channels)
        if not track.unknown:
            return list(crop)
        return [*crop[1:], crop[0] - crop[1:].sum(axis=0)]
