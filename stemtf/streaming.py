"""Separate a live signal block by block, with a constant and declared latency.

:class:`StreamingSeparator` takes blocks of any size (one sample to minutes) and returns, for every
block, the same number of samples of every stem, delayed by exactly :attr:`latency_samples`: the
chunk length of the separator. Inside it is the separator's own chunking: chunks of
``chunk_samples`` every ``chunk_samples - overlap_samples`` samples, separated by the separator's
chunk function (:func:`stemtf.dsp.separate_chunk`, Keras or LiteRT masks) and cross-faded — the
separator's :class:`stemtf.plans.ChunkPlan` — so the streamed stems equal ``Separator.separate``'s with
the same chunk plan, and the latency is a chunk because a chunk needs all its samples before it can
be separated. A shorter chunk (``segment_frames``) means a shorter latency and less context.

Below a chunk — down to a tenth of a second — ``latency=SECONDS`` switches to the sliding plan of
:class:`stemtf.plans.SlidingPlan`: a continuous STFT whose newest frames are masked from a short window of
frames around them, as soon as the window is complete; the stream then equals
:func:`stemtf.sliding.separate_sliding` with the same plan. The README has the measured trade-off.

Mono and stereo are converted at the edges, and so is the sample rate: a stream at another rate is
resampled in and out with soxr's streaming resamplers, whose output is time-aligned; a short buffer
absorbs their start-up delay, so the latency stays constant (then it is ``latency`` seconds, a whole
number of samples only at the model's rate).
"""

from __future__ import annotations

import math

import numpy as np

from stemtf import apply, audio, plans, sliding, streamio
from stemtf.errors import AudioError


def _resampler_lag(rate_in: int, rate_out: int, channels: int) -> int:
    """Input samples a fresh soxr stream swallows before its first output (its start-up delay)."""
    import soxr

    stream, fed = soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32"), 0
    silence = np.zeros((64, channels), np.float32)
    while not len(stream.resample_chunk(silence)):
        fed += 64
    return fed + 64


class StreamingSeparator:
    """Separate a stream block by block, with a constant latency.

    Args:
        separator: The separator whose model (and, without ``latency``, chunk length and overlap) is used.
        sample_rate: Rate of the stream in Hz (default: the model's; others are resampled).
        num_channels: Channels of the stream (1 or 2; default: the model's).
        latency: Seconds (at least a tenth or so, see :func:`stemtf.sliding.frames_for_latency`):
            use the sliding plan within this latency. Default: the separator's chunk plan, whose
            latency is one chunk (its :meth:`~stemtf.separator.Separator.separation_plan`).

    Attributes:
        latency_samples: Every stem sample comes out exactly this many samples after its input (at
            the stream's rate; a whole number at the model's rate).
        latency: The same in seconds.
        plan: ``"chunk"``, ``"spleeter"`` (without ``latency``, for a model with ``chunking: spleeter``:
            latency ``(segment_frames + n_fft // hop_length - 1) * hop_length``) or ``"sliding"``; for
            ``"sliding"``, ``window_frames``, ``step_frames`` and ``lookahead_frames`` say which
            (:mod:`stemtf.sliding`).

    Raises:
        OptionError: (``latency``) a latency the model cannot meet.
    """

    def __init__(self, separator, *, sample_rate: int | None = None, num_channels: int | None = None,
                 latency: float | None = None) -> None:
        self.stems = separator.stems
        model_rate = separator.sample_rate
        self.sample_rate = model_rate if sample_rate is None else int(sample_rate)
        if self.sample_rate < streamio.MIN_SAMPLE_RATE:
            raise AudioError(f"The stream's sample rate must be >= {streamio.MIN_SAMPLE_RATE} Hz. Received {self.sample_rate}.")
        self.num_channels = separator.config.num_channels if num_channels is None else num_channels
        apply.check_num_channels(self.num_channels)
        self._model_channels = separator.config.num_channels
        if latency is None:
            core = separator.separation_plan()
            self.plan = "spleeter" if isinstance(core, plans.SpleeterPlan) else "chunk"
        else:
            self.plan = "sliding"
            window, step, lookahead = sliding.plan_for_latency(latency, separator.config)
            self.window_frames, self.step_frames, self.lookahead_frames = window, step, lookahead
            core = sliding.SlidingSeparation(separator.masks_for(window), separator.config, window_frames=window,
                                             step_frames=step, lookahead_frames=lookahead)
        num_stems = len(self.stems)
        # Finished output at the model's rate, starting with the latency's silence.
        self._delayed = plans.Delayed(core, num_stems=num_stems, num_channels=self._model_channels)
        model_latency = self._delayed.latency_samples
        self._finished = False
        self._resample_in = self._resample_out = None
        self.latency_samples: float = model_latency
        self._output = np.zeros((num_stems, 0, self._model_channels), np.float32)  # at the stream's rate
        if self.sample_rate != model_rate:
            import soxr

            rate = self.sample_rate
            self._resample_in = soxr.ResampleStream(rate, model_rate, self._model_channels, dtype="float32")
            self._resample_out = soxr.ResampleStream(model_rate, rate, num_stems * self._model_channels, dtype="float32")
            # The resamplers hold back up to their start-up delay; this much silence up front (twice
            # their measured delay, in stream samples) keeps every block's answer full length.
            lag = _resampler_lag(rate, model_rate, self._model_channels)
            lag += math.ceil(_resampler_lag(model_rate, rate, num_stems * self._model_channels) * rate / model_rate)
            prefill = 2 * lag
            self._output = np.zeros((num_stems, prefill, self._model_channels), np.float32)
            self.latency_samples = model_latency * rate / model_rate + prefill
        self.latency = self.latency_samples / self.sample_rate

    def _to_stream(self, stems: np.ndarray, *, last: bool = False) -> None:
        """Model-rate stems -> the output buffer at the stream's rate."""
        if self._resample_out is None:
            self._output = np.concatenate([self._output, stems], axis=1)
            return
        num_stems, count, channels = stems.shape
        flat = np.ascontiguousarray(stems.transpose(1, 0, 2).reshape(count, num_stems * channels))
        resampled = self._resample_out.resample_chunk(flat, last=last)
        self._output = np.concatenate([self._output, resampled.reshape(-1, num_stems, channels).transpose(1, 0, 2)], axis=1)

    def _pop(self, num_samples: int | None) -> dict[str, np.ndarray]:
        out = self._output if num_samples is None else self._output[:, :num_samples]
        self._output = self._output[:, out.shape[1] :]
        return {stem: audio.convert_channels(np.ascontiguousarray(out[i]), self.num_channels) for i, stem in enumerate(self.stems)}

    def process(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Separate the next block of the stream.

        Args:
            block: float ``(n, num_channels)`` (or ``(n,)`` for mono), any ``n`` >= 0.

        Returns:
            ``{stem: (n, num_channels)}`` float32 (also for ``(n,)`` mono blocks): the stems of the
            stream ``latency_samples`` earlier.

        Raises:
            AudioError: the block is not float audio with the stream's channels, or holds NaN/Inf.
        """
        if self._finished:
            raise AudioError("This stream was flushed; make a new StreamingSeparator for a new stream.")
        block = np.asarray(block)
        if block.ndim == 1:
            block = block[:, None]
        if block.ndim != 2 or block.shape[1] != self.num_channels or not np.issubdtype(block.dtype, np.floating):
            raise AudioError(f"A block must be float (n, {self.num_channels}). Received {block.dtype} {block.shape}.")
        if not np.all(np.isfinite(block)):
            raise AudioError("The block contains NaN or infinite samples.")
        model_block = audio.convert_channels(block.astype(np.float32), self._model_channels)
        if self._resample_in is not None:
            model_block = self._resample_in.resample_chunk(model_block)
        self._to_stream(self._delayed.process(model_block))
        if self._output.shape[1] < block.shape[0]:  # never: the silence up front covers the resamplers' delay
            raise RuntimeError("The resampling buffer ran dry; please report this with the stream's rate.")
        return self._pop(block.shape[0])

    def flush(self) -> dict[str, np.ndarray]:
        """End the stream: the rest of every stem (the delayed tail, about ``latency_samples`` long)."""
        if self._finished:
            raise AudioError("This stream was flushed already.")
        self._finished = True
        if self._resample_in is not None:
            self._to_stream(self._delayed.process(self._resample_in.resample_chunk(np.zeros((0, self._model_channels), np.float32), last=True)))
        self._to_stream(self._delayed.flush(), last=True)
        return self._pop(None)
