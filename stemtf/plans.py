"""The plans that run separation over a signal, behind one push interface.

A plan takes model-format input ``(n, C)`` in blocks of any size and gives back the stem samples
that became final, ``(num_stems, m, C)``:

- ``feed(block) -> stems``: the next input; the stems that are final now (possibly none);
- ``finish() -> stems``: end of input; the rest. Together, exactly as many samples as the input;
- ``latency_samples``: no stem sample waits longer than this after its input sample.

:class:`ChunkPlan` separates chunks of ``chunk_samples`` every ``chunk_samples - overlap_samples``
samples with a chunk function (:func:`stemtf.dsp.separate_chunk`, or an exported chunk model) and
cross-fades neighbours; its latency is a chunk. :class:`SlidingPlan` runs a continuous STFT and masks
the newest frames from a short window of frames around them; its latency is a few frames.
:class:`SpleeterPlan` is ``spleeter separate``'s own chunking (a sliding plan whose windows do not
overlap, on Spleeter's frame grid), for models with ``chunking: spleeter``.

Three ways to drive one: :func:`run` over a reader (files, offline), :func:`run_array` over a whole
waveform, and :class:`Delayed` for a live stream (as many samples out as in, every sample exactly
``latency_samples`` late). ``docs/engine.md`` writes the plans as formulas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from stemtf import dsp
from stemtf.errors import AudioError

ChunkFunction = Callable[[np.ndarray], np.ndarray]
ProgressCallback = Callable[[int, "int | None"], None]


class ChunkPlan:
    """Chunks of ``chunk_samples`` every ``chunk_samples - overlap_samples`` samples, cross-faded linearly.

    Args:
        separate: One chunk float32 ``(chunk_samples, C)`` -> ``(num_stems, chunk_samples, C)``; the
            last chunk is zero-padded to full length.
        num_stems, num_channels: The shape of the stems.
        chunk_samples: Samples per chunk.
        overlap_samples: Samples shared by neighbouring chunks (at most half a chunk).

    Attributes:
        latency_samples: ``chunk_samples``: a chunk needs all its samples before it is separated.
        chunks_done: Chunks separated so far.
    """

    def __init__(self, separate: ChunkFunction, *, num_stems: int, num_channels: int, chunk_samples: int,
                 overlap_samples: int) -> None:
        dsp.check_overlap(overlap_samples, chunk_samples)
        self._separate = separate
        self._length, self._overlap = chunk_samples, overlap_samples
        self._stride = chunk_samples - overlap_samples
        self._ramp = dsp.crossfade_ramp(overlap_samples)[:, None]
        self._pending = np.zeros((0, num_channels), np.float32)  # input not yet in a finished chunk
        self._carry = None  # the faded tail of the last chunk, added to the next one's head
        self._tail = None  # the same tail unfaded: the output if the input ends inside it
        self._none = np.zeros((num_stems, 0, num_channels), np.float32)
        self.latency_samples = chunk_samples
        self.chunks_done = 0

    def wanted(self) -> int:
        """Input samples that complete the next chunk (what an offline loop reads next)."""
        return self._length - self._pending.shape[0]

    def _run_chunk(self, chunk: np.ndarray, *, last: bool) -> np.ndarray:
        stems = np.asarray(self._separate(chunk), np.float32)
        self.chunks_done += 1
        if self._carry is not None:
            stems[:, : self._overlap] *= self._ramp
            stems[:, : self._overlap] += self._carry
        if not last:
            self._tail = stems[:, self._stride :].copy()
            stems[:, self._stride :] *= 1.0 - self._ramp
            self._carry = stems[:, self._stride :]
        return stems

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Model-format input -> the stems that became final (a stride per finished chunk)."""
        self._pending = np.concatenate([self._pending, block])  # a copy: callers may reuse their block
        done = []
        while self._pending.shape[0] >= self._length:
            done.append(self._run_chunk(self._pending[: self._length], last=False)[:, : self._stride])
            self._pending = self._pending[self._stride :]
        return self._none if not done else done[0] if len(done) == 1 else np.concatenate(done, axis=1)

    def finish(self) -> np.ndarray:
        """End of input: the rest of the stems."""
        pending, self._pending = self._pending, self._pending[:0]
        remaining = pending.shape[0]
        if self._tail is not None and remaining <= self._overlap:
            return self._tail[:, :remaining]  # the last chunk already reached the end: its tail stands unfaded
        if not remaining:
            return self._none
        return self._run_chunk(np.pad(pending, ((0, self._length - remaining), (0, 0))), last=True)[:, :remaining]


class SlidingPlan:
    """A continuous STFT whose newest frames are masked from a sliding window of frames around them.

    Every ``step_frames`` new frames, ``predict`` sees the last ``window_frames`` magnitude frames
    (the lowest ``max_bins`` bins; zeros before the first frame and past the end) and the
    ``step_frames`` frames that end ``lookahead_frames`` before the window's end are masked (the
    masks extended to every bin), inverse-transformed and overlap-added.

    Args:
        predict: Magnitudes float32 ``(1, window_frames, max_bins, C)`` -> masks
            ``(num_stems, window_frames, max_bins, C)``.
        spectral: The model's geometry (:class:`stemtf.dsp.Spectral`, or a model config).
        num_stems, num_channels: The shape of the stems.
        window_frames, step_frames, lookahead_frames: The plan.

    Attributes:
        latency_samples: ``(step_frames + lookahead_frames + n_fft // hop_length - 1) * hop_length``.
    """

    def __init__(self, predict: dsp.MaskPredictor, spectral, *, num_stems: int, num_channels: int, window_frames: int,
                 step_frames: int, lookahead_frames: int) -> None:
        if step_frames < 1 or lookahead_frames < 0 or step_frames + lookahead_frames > window_frames:
            raise ValueError(
                f"Need step_frames >= 1, lookahead_frames >= 0 and their sum <= window_frames ({window_frames}). "
                f"Received {step_frames} and {lookahead_frames}."
            )
        self.predict, self.spectral = predict, dsp.Spectral.of(spectral)
        self.window_frames, self.step_frames, self.lookahead_frames = window_frames, step_frames, lookahead_frames
        n_fft, hop = self.spectral.n_fft, self.spectral.hop_length
        self.latency_samples = sliding_latency(step_frames, lookahead_frames, n_fft=n_fft, hop_length=hop)
        self._num_stems, self._channels = num_stems, num_channels
        self._synthesis = dsp.synthesis_window(n_fft, hop)
        self._input = np.zeros((n_fft - hop, num_channels), np.float32)  # the STFT's front padding, then input not yet in a frame
        self._frames: list[np.ndarray] = []  # complex (n, C, bins) blocks of the frames not yet masked, from frame self._masked on
        # Magnitudes of frames self._first on (zeros before the first frame), as far back as a window reaches.
        self._magnitudes = np.zeros((window_frames, self.spectral.max_bins, num_channels), np.float32)
        self._first = -window_frames
        self._computed = self._masked = 0  # frames computed, frames masked and overlap-added
        # The overlap-add from frame self._masked on, channels first (each channel's samples contiguous)
        self._sum = np.zeros((num_stems, num_channels, n_fft), np.float32)
        self._work: tuple[np.ndarray, np.ndarray] | None = None  # _synthesize's arrays, kept between steps
        self._skip = n_fft - hop  # leading output samples that are the front padding
        self._received = self._emitted = 0

    def _compute_frames(self) -> None:
        n_fft, hop = self.spectral.n_fft, self.spectral.hop_length
        count = (self._input.shape[0] - n_fft) // hop + 1 if self._input.shape[0] >= n_fft else 0
        if not count:
            return
        spectra = dsp.rfft_frames(dsp.frames_of(self._input, n_fft, hop, count), n_fft)  # (count, C, bins)
        self._frames.append(spectra)
        self._magnitudes = np.concatenate([self._magnitudes, np.abs(spectra[:, :, : self.spectral.max_bins]).transpose(0, 2, 1)])
        self._computed += count
        self._input = self._input[count * hop :]

    def _window(self, end: int) -> np.ndarray:
        """The magnitudes of frames ``end - window_frames`` to ``end`` (zeros past the last frame)."""
        magnitudes = self._magnitudes[end - self.window_frames - self._first : end - self._first]
        missing = self.window_frames - magnitudes.shape[0]
        if missing > 0:
            magnitudes = np.concatenate([magnitudes, np.zeros((missing,) + magnitudes.shape[1:], np.float32)])
        return np.ascontiguousarray(magnitudes[None])

    def _run(self, final: bool) -> list[np.ndarray]:
        """Mask every step whose window is complete (or, when ``final``, every frame left)."""
        out = []
        k, lookahead, window = self.step_frames, self.lookahead_frames, self.window_frames
        while self._masked < self._computed and (final or self._masked + k + lookahead <= self._computed):
            masks = np.asarray(self.predict(self._window(self._masked + k + lookahead)), np.float32)
            count = min(k, self._computed - self._masked)
            masks = masks[:, window - lookahead - k : window - lookahead - k + count]
            out.append(self._overlap_add(self._take_frames(count), masks))
            self._masked += count
            # The next window starts step_frames later: older magnitudes are never needed again.
            drop = max(0, self._masked + k + lookahead - window - self._first)
            self._magnitudes, self._first = self._magnitudes[drop:], self._first + drop
        return out

    def _take_frames(self, count: int) -> np.ndarray:
        """The next ``count`` frames to mask, complex ``(count, C, bins)`` (a view when one block holds them)."""
        frames = self._frames[0] if len(self._frames) == 1 else np.concatenate(self._frames)
        self._frames = [frames[count:]] if count < frames.shape[0] else []
        return frames[:count]

    def _synthesize(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One stem's windowed frames ``(count, C, n_fft)`` to overlap-add: complex ``frames`` ``(count, C, bins)``
        masked by ``mask`` ``(count, max_bins, C)`` (extended to every bin), inverse-transformed.

        Frame blocks on two threads (:func:`stemtf.dsp.in_frame_blocks`), one stem at a time, into work
        arrays kept for the next step (allocated here, not on the pool's threads: see ``dsp.stft``):
        never every stem's full-band masks, spectra and frames at once (a Spleeter segment's were
        ~300 MB), and no fresh 17 MB arrays per stem and segment (freed ones made the heap creep).
        The returned array is overwritten by the next call.
        """
        g, count, channels = self.spectral, frames.shape[0], frames.shape[1]
        if self._work is None or self._work[0].shape != (count, channels, g.n_fft):
            self._work = (np.empty((count, channels, g.n_fft), np.float32), np.empty((count, channels, g.num_bins), np.complex64))
        out, spectra = self._work

        def transform(start: int, stop: int) -> None:
            # bins last and contiguous: numpy's inverse FFT along a strided axis is 2.5x slower
            block, part, source = spectra[start:stop], mask[start:stop], frames[start:stop]
            np.multiply(source[..., : g.max_bins], np.swapaxes(part, -1, -2), out=block[..., : g.max_bins])
            fill = dsp.mask_fill(part, how=g.mask_extension, extension_bins=g.extension_bins)
            np.multiply(source[..., g.max_bins :], np.swapaxes(fill, -1, -2), out=block[..., g.max_bins :])
            np.fft.irfft(block, n=g.n_fft, axis=-1, out=out[start:stop])
            out[start:stop] *= self._synthesis

        dsp.in_frame_blocks(transform, count)
        return out

    def _overlap_add(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Mask ``frames`` ``(count, C, bins)`` with each stem's ``masks`` ``(num_stems, count, max_bins, C)`` and
        overlap-add them; return the samples no later frame touches.

        Sample block ``b`` (``hop_length`` samples) sums hop ``r`` of frame ``b - r``, added in frame order
        (``r`` descending), as a frame-by-frame loop would; ranges of blocks on the frame pool.
        """
        hop, n_fft, count, channels = self.spectral.hop_length, self.spectral.n_fft, frames.shape[0], self._channels
        total = np.concatenate([self._sum, np.zeros((self._num_stems, channels, count * hop), np.float32)], axis=2)
        for index, mask in enumerate(masks):
            windowed = self._synthesize(frames, mask)

            def add(start: int, stop: int) -> None:  # blocks start..stop-1
                for r in reversed(range(n_fft // hop)):
                    first, last = max(start, r), min(stop, r + count)
                    if first < last:
                        target = total[index, :, first * hop : last * hop].reshape(channels, last - first, hop)  # a view
                        target += windowed[first - r : last - r, :, r * hop : (r + 1) * hop].transpose(1, 0, 2)
            dsp.in_frame_blocks(add, count + n_fft // hop - 1)
        done, self._sum = total[:, :, : count * hop], total[:, :, count * hop :]
        skip = min(self._skip, done.shape[2])
        self._skip -= skip
        return done[:, :, skip:].transpose(0, 2, 1)

    def _collect(self, parts: list[np.ndarray]) -> np.ndarray:
        """The final samples, never past the input's length (the rest is the STFT's end padding)."""
        if not parts:
            return np.zeros((self._num_stems, 0, self._channels), np.float32)
        out = np.concatenate(parts, axis=1)[:, : max(self._received - self._emitted, 0)]
        self._emitted += out.shape[1]
        return out

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Model-format input ``(n, C)`` -> the stem samples that became final, ``(num_stems, m, C)``."""
        self._received += block.shape[0]
        self._input = np.concatenate([self._input, np.asarray(block, np.float32)])
        self._compute_frames()
        return self._collect(self._run(final=False))

    def finish(self) -> np.ndarray:
        """End of input: the rest of the stems (their total length is the input's)."""
        n_fft, hop = self.spectral.n_fft, self.spectral.hop_length
        # The padding dsp.stft puts at the end: every frame touching a real sample exists.
        self._input = np.concatenate([self._input, np.zeros((n_fft - hop + (-self._received) % hop, self._channels), np.float32)])
        self._compute_frames()
        parts = self._run(final=True)
        parts.append(self._sum.transpose(0, 2, 1))  # the tail (only padding beyond the input's end remains after it)
        return self._collect(parts)


class SpleeterPlan:
    """``spleeter separate``'s chunking: one continuous STFT, masked ``segment_frames`` frames at a time.

    Spleeter takes the STFT of the whole song with ``n_fft`` zeros in front (stemtf's STFT puts
    ``n_fft - hop_length``: Spleeter's frame ``k + 1`` is stemtf's frame ``k``) and masks frames
    ``0 .. S - 1``, ``S .. 2S - 1``, ... of that grid (``S = segment_frames``; the last segment
    zero-padded) without overlap, the STFT continuous across segment edges. That is a
    :class:`SlidingPlan` with ``window_frames = step_frames = S``, no lookahead, fed one hop of
    zeros before the input (whose stems are dropped again). The network's output depends on where
    its windows sit (a U-Net of depth ``d`` has a ``2 ** d``-frame stride), so only this grid gives
    Spleeter's stems.

    Args:
        predict: Magnitudes float32 ``(1, S, max_bins, C)`` -> masks ``(num_stems, S, max_bins, C)``.
        spectral: The model's geometry (:class:`stemtf.dsp.Spectral`, or a model config).
        num_stems, num_channels: The shape of the stems.
        segment_frames: ``S``.

    Attributes:
        latency_samples: ``(segment_frames + n_fft // hop_length - 1) * hop_length``.
        chunks_done: Segments masked so far.
    """

    def __init__(self, predict: dsp.MaskPredictor, spectral, *, num_stems: int, num_channels: int,
                 segment_frames: int) -> None:
        self.chunks_done = 0

        def counted(magnitude: np.ndarray) -> np.ndarray:
            self.chunks_done += 1
            return predict(magnitude)

        self._plan = SlidingPlan(counted, spectral, num_stems=num_stems, num_channels=num_channels,
                                 window_frames=segment_frames, step_frames=segment_frames, lookahead_frames=0)
        self.latency_samples = self._plan.latency_samples
        self._hop, self._segment = self._plan.spectral.hop_length, segment_frames
        self._skip = self._hop  # the stems of the hop of zeros put in front
        self._plan.feed(np.zeros((self._hop, num_channels), np.float32))  # nothing is final yet

    def wanted(self) -> int:
        """Input samples that complete the next segment (what an offline loop reads next)."""
        plan, n_fft = self._plan, self._plan.spectral.n_fft
        frames = plan._masked + self._segment - plan._computed  # frames the next segment still needs
        return max(1, n_fft + (frames - 1) * self._hop - plan._input.shape[0])

    def _drop_front(self, stems: np.ndarray) -> np.ndarray:
        skip = min(self._skip, stems.shape[1])
        self._skip -= skip
        return stems[:, skip:]

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Model-format input ``(n, C)`` -> the stem samples that became final (a segment's at a time)."""
        return self._drop_front(self._plan.feed(block))

    def finish(self) -> np.ndarray:
        """End of input: the rest of the stems (their total length is the input's)."""
        return self._drop_front(self._plan.finish())


def spleeter_segments(num_samples: int, *, n_fft: int, hop_length: int, segment_frames: int) -> int:
    """How many segments a :class:`SpleeterPlan` masks for ``num_samples`` samples of input."""
    shifted = int(num_samples) + hop_length  # the plan's hop of zeros in front
    padded = shifted + 2 * (n_fft - hop_length) + (-shifted) % hop_length  # as dsp.stft pads
    frames = (padded - n_fft) // hop_length + 1
    return -(-frames // segment_frames)


def sliding_latency(step_frames: int, lookahead_frames: int, *, n_fft: int, hop_length: int) -> int:
    """Samples from an input sample to its final stem sample in a sliding plan (see :class:`SlidingPlan`)."""
    return (step_frames + lookahead_frames + n_fft // hop_length - 1) * hop_length


class Delayed:
    """A plan as a live stream: every block's answer is as long as the block, ``latency_samples`` late.

    The output starts with ``latency_samples`` of silence; :meth:`flush` ends the input and returns
    the rest (the last ``latency_samples`` of every stem).
    """

    def __init__(self, plan, *, num_stems: int, num_channels: int) -> None:
        self.plan = plan
        self.latency_samples: int = plan.latency_samples
        self._ready = [np.zeros((num_stems, self.latency_samples, num_channels), np.float32)]
        self._ready_samples = self.latency_samples

    def _take(self, stems: np.ndarray, num_samples: int | None) -> np.ndarray:
        self._ready.append(stems)
        self._ready_samples += stems.shape[1]
        ready = np.concatenate(self._ready, axis=1) if len(self._ready) > 1 else self._ready[0]
        out, rest = (ready, ready[:, :0]) if num_samples is None else (ready[:, :num_samples], ready[:, num_samples:])
        self._ready, self._ready_samples = [rest], rest.shape[1]
        return out

    def process(self, block: np.ndarray) -> np.ndarray:
        """The next block float32 ``(n, C)`` -> stems ``(num_stems, n, C)``, ``latency_samples`` late."""
        block = np.asarray(block, np.float32)
        return self._take(self.plan.feed(block), block.shape[0])

    def flush(self) -> np.ndarray:
        """End of input: the rest of every stem."""
        return self._take(self.plan.finish(), None)


def run(plan, reader, *, block_samples: int | None = None, progress: ProgressCallback | None = None,
        total_chunks: int | None = None) -> Iterator[np.ndarray]:
    """Drive ``plan`` over a reader (model format) and yield the stems block by block, as the input ends.

    Memory stays flat in the input's length. A :class:`ChunkPlan` is fed chunk by chunk (what it
    ``wanted``), so ``progress(chunks_done, total_chunks)`` is called before the first chunk and after
    every one; other plans are fed ``block_samples`` at a time.

    Yields:
        float32 ``(num_stems, n, C)`` consecutive blocks; together exactly as long as the input.

    Raises:
        AudioError: the reader holds no samples.
    """
    wanted = getattr(plan, "wanted", None)
    counted = progress is not None and hasattr(plan, "chunks_done")
    if counted:
        progress(0, total_chunks)
    received, reported = 0, 0
    while True:
        block = reader.read(wanted() if wanted is not None else block_samples or 65536)
        last = block.shape[0] == 0
        if last and not received:
            raise AudioError("The input holds no audio samples.")
        received += block.shape[0]
        stems = plan.finish() if last else plan.feed(block)
        if counted and plan.chunks_done != reported:
            reported = plan.chunks_done
            progress(reported, None if total_chunks is None else max(total_chunks, reported))
        if stems.shape[1]:
            yield stems
        if last:
            return


def run_array(plan, waveform: np.ndarray) -> np.ndarray:
    """A whole model-format waveform ``(n, C)`` through ``plan`` -> ``(num_stems, n, C)``."""
    return np.concatenate([plan.feed(np.asarray(waveform, np.float32)), plan.finish()], axis=1)
