"""The low-latency plan of a stream: masks from a sliding window of STFT frames.

A chunk of the offline plan (:mod:`stemtf.apply`) needs all its samples before it is separated, so
a stream separated chunk by chunk is a whole chunk late (2.9 s at least for the shipped U-Nets).
Here the STFT runs continuously instead: every ``step_frames`` new frames, the network sees the
last ``window_frames`` frames — the frames to mask, ``lookahead_frames`` after them and the rest
before them — and only those ``step_frames`` frames are masked (the masks extended to every bin as
in :func:`stemtf.apply.separate_chunk_numpy`) and overlap-added into the output. A sample is final
once the last frame covering it is masked, so the latency is::

    (step_frames + lookahead_frames + n_fft // hop_length - 1) * hop_length   samples

and the network runs ``window_frames / step_frames`` times as often per second as offline. The
whole plan is :class:`SlidingSeparation`; :func:`separate_sliding` runs it over a whole waveform
(the stream's reference: a stream fed in blocks of any size gives the same samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from stemtf import apply, options
from stemtf.config import ModelConfig
from stemtf.errors import OptionError

MaskPredictor = Callable[[np.ndarray], np.ndarray]


def plan_latency(step_frames: int, lookahead_frames: int, *, n_fft: int, hop_length: int) -> int:
    """Samples from an input sample to its final stem sample in a plan masking ``step_frames`` with ``lookahead_frames``."""
    return (step_frames + lookahead_frames + n_fft // hop_length - 1) * hop_length


def frames_for_latency(latency_samples: float, config: ModelConfig) -> tuple[int, int, int]:
    """``(window_frames, step_frames, lookahead_frames)`` of the best plan within a latency budget.

    The budget in frames is split a third lookahead (the network hears what follows the frames it
    masks) and two thirds step (fewer network runs); the window is the shortest the U-Net takes that
    also leaves past context of at least half of step plus lookahead (measured on the held-out song:
    a longer window costs more and does not sound better, see benchmarks/streaming_latency.py).

    Raises:
        OptionError: (``latency``) the budget is shorter than one frame plus the STFT's own delay.
    """
    overlap = config.n_fft // config.hop_length
    budget = int(latency_samples // config.hop_length) - (overlap - 1)
    shortest = (overlap) * config.hop_length / config.sample_rate
    if budget < 1:
        raise OptionError(
            "latency", f"{{option}} must be at least {shortest:.3f} s for this model (one STFT frame). "
            f"Received {latency_samples / config.sample_rate:.3f} s.",
        )
    lookahead = budget // 3
    step = budget - lookahead
    multiple = config.frame_multiple
    window = max(multiple, multiple * math.ceil(1.5 * budget / multiple))
    return window, step, lookahead


def plan_for_latency(latency: float, config: ModelConfig) -> tuple[int, int, int]:
    """:func:`frames_for_latency` for a latency in seconds, checked first (finite and > 0).

    Raises:
        OptionError: (``latency``) not a positive number, or shorter than the model can meet.
    """
    return frames_for_latency(options.check_latency(latency) * config.sample_rate, config)


class SlidingSeparation:
    """Separate a model-format signal block by block on a sliding window of STFT frames.

    Args:
        predict: Magnitudes float32 ``(1, window_frames, max_bins, C)`` -> masks
            ``(num_stems, window_frames, max_bins, C)`` (Keras or LiteRT masks for that window).
        config: The model's config.
        window_frames: Frames the network sees per run (a multiple of ``config.frame_multiple``).
        step_frames: Frames masked per run.
        lookahead_frames: Frames after the masked ones inside the window.

    Attributes:
        latency_samples: Every output sample is final this many input samples after its own.
    """

    def __init__(self, predict: MaskPredictor, config: ModelConfig, *, window_frames: int, step_frames: int,
                 lookahead_frames: int) -> None:
        if window_frames % config.frame_multiple or window_frames < 1:
            raise ValueError(f"`window_frames` must be a positive multiple of {config.frame_multiple}. Received {window_frames}.")
        if step_frames < 1 or lookahead_frames < 0 or step_frames + lookahead_frames > window_frames:
            raise ValueError(
                f"Need step_frames >= 1, lookahead_frames >= 0 and their sum <= window_frames ({window_frames}). "
                f"Received {step_frames} and {lookahead_frames}."
            )
        self.predict, self.config = predict, config
        self.window_frames, self.step_frames, self.lookahead_frames = window_frames, step_frames, lookahead_frames
        n_fft, hop = config.n_fft, config.hop_length
        self._n_fft, self._hop = n_fft, hop
        self.latency_samples = plan_latency(step_frames, lookahead_frames, n_fft=n_fft, hop_length=hop)
        channels, self._num_stems = config.num_channels, len(config.stems)
        self._analysis = apply._hann(n_fft)
        denominator = np.sum(np.square(self._analysis).reshape(n_fft // hop, hop), axis=0)
        self._synthesis = self._analysis / np.tile(denominator, n_fft // hop)
        self._scaled_analysis = self._analysis * np.float32(n_fft)  # for apply.fast_rfft
        # The STFT's front padding (as stft_numpy's), then the input not yet in a complete frame.
        self._input = np.zeros((n_fft - hop, channels), np.float32)
        self._frames: list[np.ndarray] = []  # complex (bins, C) of frames not yet masked, from frame self._masked
        # Magnitudes of frames self._first on (zeros before the stream's first frame), as far back as a window reaches.
        self._magnitudes = np.zeros((window_frames, config.max_bins, channels), np.float32)
        self._first = -window_frames
        self._computed = 0  # frames computed so far
        self._masked = 0  # frames masked (and overlap-added) so far
        # Overlap-add of the masked frames, from padded position self._masked * hop on.
        self._sum = np.zeros((self._num_stems, n_fft, channels), np.float32)
        self._skip = n_fft - hop  # leading output samples that are the STFT's front padding
        self._received = 0
        self._emitted = 0

    def _compute_frames(self) -> None:
        n_fft, hop = self._n_fft, self._hop
        count = (self._input.shape[0] - n_fft) // hop + 1 if self._input.shape[0] >= n_fft else 0
        if not count:
            return
        windows = np.lib.stride_tricks.sliding_window_view(self._input, n_fft, axis=0)[::hop][:count]  # (n, C, n_fft)
        spectra = apply.fast_rfft(windows * self._scaled_analysis).transpose(0, 2, 1).astype(np.complex64)  # (n, bins, C)
        self._frames.extend(spectra)
        self._magnitudes = np.concatenate([self._magnitudes, np.abs(spectra[:, : self.config.max_bins, :])])
        self._computed += count
        self._input = self._input[count * hop :]

    def _run(self, final: bool) -> list[np.ndarray]:
        """Mask every step whose window is complete (or, when ``final``, every frame left)."""
        out = []
        k, lookahead, window = self.step_frames, self.lookahead_frames, self.window_frames
        while self._masked < self._computed and (final or self._masked + k + lookahead <= self._computed):
            end = self._masked + k + lookahead  # the window's end (exclusive), in frames
            magnitudes = self._magnitudes[end - window - self._first : end - self._first]
            missing = window - magnitudes.shape[0]  # frames past the end of the stream: zeros
            if missing > 0:
                magnitudes = np.concatenate([magnitudes, np.zeros((missing,) + magnitudes.shape[1:], np.float32)])
            masks = np.asarray(self.predict(np.ascontiguousarray(magnitudes[None])), np.float32)
            count = min(k, self._computed - self._masked)
            masks = masks[:, window - lookahead - k : window - lookahead - k + count]
            masks = apply.extend_masks_numpy(masks, num_bins=self.config.num_bins, how=self.config.mask_extension,
                                             extension_bins=self.config.extension_bins)
            frames = np.stack(self._frames[:count])  # (count, bins, C)
            del self._frames[:count]
            # bins last and contiguous first: numpy's inverse FFT along a strided axis is 2.5x slower
            signal = np.fft.irfft(np.ascontiguousarray(np.swapaxes(frames[None] * masks, -1, -2)), n=self._n_fft, axis=-1).astype(np.float32)
            signal *= self._synthesis  # (stems, count, C, n_fft)
            out.append(self._overlap_add(np.swapaxes(signal, -1, -2)))
            self._masked += count
            # The next window starts step_frames later: older magnitudes are never needed again.
            drop = max(0, self._masked + k + lookahead - window - self._first)
            self._magnitudes, self._first = self._magnitudes[drop:], self._first + drop
        return out

    def _overlap_add(self, frames: np.ndarray) -> np.ndarray:
        """Add masked frames ``(stems, count, n_fft, C)``; return the samples no later frame touches."""
        hop, count = self._hop, frames.shape[1]
        total = np.concatenate([self._sum, np.zeros((self._num_stems, count * hop, self._sum.shape[2]), np.float32)], axis=1)
        for i in range(count):
            total[:, i * hop : i * hop + self._n_fft] += frames[:, i]
        done, self._sum = total[:, : count * hop], total[:, count * hop :]
        skip = min(self._skip, done.shape[1])
        self._skip -= skip
        return done[:, skip:]

    def _collect(self, parts: list[np.ndarray], limit: int) -> np.ndarray:
        if not parts:
            return np.zeros((self._num_stems, 0, self.config.num_channels), np.float32)
        out = np.concatenate(parts, axis=1)[:, : max(limit - self._emitted, 0)]
        self._emitted += out.shape[1]
        return out

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Model-format input ``(n, C)`` -> the stem samples that became final, ``(num_stems, m, C)``."""
        self._received += block.shape[0]
        self._input = np.concatenate([self._input, np.asarray(block, np.float32)])
        self._compute_frames()
        return self._collect(self._run(final=False), self._received)

    def finish(self) -> np.ndarray:
        """End of input: the rest of the stems (their total length is the input's)."""
        n_fft, hop = self._n_fft, self._hop
        # The padding stft_numpy puts at the end: every frame touching a real sample exists.
        self._input = np.concatenate([self._input, np.zeros((n_fft - hop + (-self._received) % hop, self._input.shape[1]), np.float32)])
        self._compute_frames()
        parts = self._run(final=True)
        parts.append(self._sum)  # the tail (only padding beyond the input's end remains after it)
        return self._collect(parts, self._received)


def separate_sliding(predict: MaskPredictor, config: ModelConfig, waveform: np.ndarray, *, window_frames: int,
                     step_frames: int, lookahead_frames: int) -> np.ndarray:
    """A whole model-format waveform ``(n, C)`` through the sliding plan -> ``(num_stems, n, C)``."""
    plan = SlidingSeparation(predict, config, window_frames=window_frames, step_frames=step_frames,
                             lookahead_frames=lookahead_frames)
    return np.concatenate([plan.feed(waveform), plan.finish()], axis=1)
