"""The low-latency plan of a stream: masks from a sliding window of STFT frames.

A chunk of the offline plan (:class:`stemtf.plans.ChunkPlan`) needs all its samples before it is separated, so
a stream separated chunk by chunk is a whole chunk late (2.9 s at least for the shipped U-Nets).
Here the STFT runs continuously instead: every ``step_frames`` new frames, the network sees the
last ``window_frames`` frames — the frames to mask, ``lookahead_frames`` after them and the rest
before them — and only those ``step_frames`` frames are masked (the masks extended to every bin as
in :func:`stemtf.dsp.separate_chunk`) and overlap-added into the output. A sample is final
once the last frame covering it is masked, so the latency is::

    (step_frames + lookahead_frames + n_fft // hop_length - 1) * hop_length   samples

and the network runs ``window_frames / step_frames`` times as often per second as offline. The
whole plan is :class:`stemtf.plans.SlidingPlan` (:class:`SlidingSeparation` for a model config); :func:`separate_sliding` runs it over a whole waveform
(the stream's reference: a stream fed in blocks of any size gives the same samples).
"""

from __future__ import annotations

import math

import numpy as np

from stemtf import dsp, options, plans
from stemtf.config import ModelConfig
from stemtf.errors import OptionError

MaskPredictor = dsp.MaskPredictor
plan_latency = plans.sliding_latency  # samples from an input sample to its final stem sample


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


class SlidingSeparation(plans.SlidingPlan):
    """:class:`stemtf.plans.SlidingPlan` for a model config (its stems, channels and frame multiple).

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
        super().__init__(predict, config, num_stems=len(config.stems), num_channels=config.num_channels,
                         window_frames=window_frames, step_frames=step_frames, lookahead_frames=lookahead_frames)
        self.config = config


def separate_sliding(predict: MaskPredictor, config: ModelConfig, waveform: np.ndarray, *, window_frames: int,
                     step_frames: int, lookahead_frames: int) -> np.ndarray:
    """A whole model-format waveform ``(n, C)`` through the sliding plan -> ``(num_stems, n, C)``."""
    plan = SlidingSeparation(predict, config, window_frames=window_frames, step_frames=step_frames,
                             lookahead_frames=lookahead_frames)
    return plans.run_array(plan, waveform)
