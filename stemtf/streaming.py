"""Separate a live signal block by block, with a constant and declared latency.

:class:`StreamingSeparator` takes blocks of any size (one sample to minutes) and returns, for every
block, the same number of samples of every stem, delayed by exactly :attr:`latency_samples`: the
chunk length of the separator. Inside it is the separator's own chunking: chunks of
``chunk_samples`` every ``chunk_samples - overlap_samples`` samples, separated by the separator's
chunk function (:func:`stemtf.apply.separate_chunk_numpy`, Keras or LiteRT masks) and cross-faded
with :func:`stemtf.apply.crossfade_ramp` — so the streamed stems equal ``Separator.separate``'s with
the same chunk plan, and the latency is a chunk because a chunk needs all its samples before it can
be separated. A shorter chunk (``segment_frames``) means a shorter latency and less context; the
README has the measured trade-off.

The stream must be at the model's sample rate (44.1 kHz); mono and stereo are converted at the edges.
"""

from __future__ import annotations

import numpy as np

from stemtf import apply, audio
from stemtf.errors import AudioError


class StreamingSeparator:
    """Separate a stream block by block with the chunking of a :class:`~stemtf.separator.Separator`.

    Args:
        separator: The separator whose model, chunk length and overlap are used.
        num_channels: Channels of the stream (1 or 2; default: the model's).

    Attributes:
        latency_samples: Every stem sample comes out exactly this many samples after its input.
        latency: The same in seconds.
    """

    def __init__(self, separator, *, num_channels: int | None = None) -> None:
        self.stems = separator.stems
        self.sample_rate = separator.sample_rate
        self.num_channels = separator.config.num_channels if num_channels is None else num_channels
        apply.check_num_channels(self.num_channels)
        self._model_channels = separator.config.num_channels
        self._separate = separator._separate_chunk
        self._length, self._overlap = separator.chunk_samples, separator.overlap_samples
        self._stride = self._length - self._overlap
        self._ramp = apply.crossfade_ramp(self._overlap)[:, None]
        self.latency_samples = self._length
        self.latency = self._length / self.sample_rate
        self._pending = np.zeros((0, self._model_channels), np.float32)  # input not yet in a finished chunk
        self._carry = None  # the faded tail of the last chunk, added to the next one's head
        self._tail = None  # the same tail unfaded: the output if the stream ends inside it
        silence = np.zeros((len(self.stems), self.latency_samples, self._model_channels), np.float32)
        self._ready = [silence]  # finished output, starting with the latency's silence
        self._ready_samples = self.latency_samples
        self._finished = False

    def _run_chunk(self, chunk: np.ndarray, *, last: bool) -> np.ndarray:
        stems = self._separate(chunk)
        if self._carry is not None:
            stems[:, : self._overlap] *= self._ramp
            stems[:, : self._overlap] += self._carry
        if not last:
            self._tail = stems[:, self._stride :].copy()
            stems[:, self._stride :] *= 1.0 - self._ramp
            self._carry = stems[:, self._stride :]
        return stems

    def _emit(self, stems: np.ndarray) -> None:
        self._ready.append(stems)
        self._ready_samples += stems.shape[1]

    def _take(self, num_samples: int) -> dict[str, np.ndarray]:
        ready = np.concatenate(self._ready, axis=1) if len(self._ready) > 1 else self._ready[0]
        out, rest = ready[:, :num_samples], ready[:, num_samples:]
        self._ready, self._ready_samples = [rest], rest.shape[1]
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
        self._pending = np.concatenate([self._pending, audio.convert_channels(block.astype(np.float32), self._model_channels)])
        while self._pending.shape[0] >= self._length:
            stems = self._run_chunk(self._pending[: self._length], last=False)
            self._emit(stems[:, : self._stride])
            self._pending = self._pending[self._stride :]
        return self._take(block.shape[0])

    def flush(self) -> dict[str, np.ndarray]:
        """End the stream: the last ``latency_samples`` samples of every stem (the delayed tail)."""
        if self._finished:
            raise AudioError("This stream was flushed already.")
        self._finished = True
        remaining = self._pending.shape[0]
        if self._tail is not None and remaining <= self._overlap:
            # The last chunk already reached the end: its tail stands unfaded, as in Separator.
            self._emit(self._tail[:, :remaining])
        elif remaining:
            chunk = np.pad(self._pending, ((0, self._length - remaining), (0, 0)))
            self._emit(self._run_chunk(chunk, last=True)[:, :remaining])
        self._pending = self._pending[:0]
        return self._take(self._ready_samples)
