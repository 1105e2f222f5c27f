"""The signal processing of separation, in numpy only: what runs in production on both runtimes.

One home for every numpy piece the engine uses (``docs/engine.md`` writes them as formulas):

- :class:`Spectral`: the STFT and mask geometry of a model (from a :class:`~stemtf.config.ModelConfig`
  or an export's JSON description);
- the window (:func:`hann`, :func:`synthesis_window`), the forward transform of windowed frames
  (:func:`rfft_frames`) and the STFT pair (:func:`stft`, :func:`istft`), the two-thread frame pool
  under both (:func:`in_frame_blocks`);
- the masks' full-band extension (:func:`mask_fill`, :func:`extend_masks`) and the multichannel
  Wiener filter (:func:`wiener`);
- one chunk, masks -> stems (:func:`separate_chunk`), and the chunk plan's arithmetic
  (:func:`num_chunks`, :func:`crossfade_ramp`, :func:`check_overlap`).

The plans that run chunks and sliding windows over a signal are :mod:`stemtf.plans`. TensorFlow's
versions of the same math (for exported graphs) are :mod:`stemtf.spectral` and
:mod:`stemtf.apply`; tests pin them to these. Nothing here imports TensorFlow or the rest of stemtf.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

MaskPredictor = Callable[[np.ndarray], np.ndarray]
MASK_EXTENSIONS = ("average", "edge", "zeros")


@dataclasses.dataclass(frozen=True)
class Spectral:
    """The STFT and mask geometry of a model: what the engine needs besides the masks.

    Attributes:
        n_fft, hop_length: The STFT's frame length and hop (``n_fft`` a multiple of ``hop_length``).
        max_bins: The lowest bins the network sees and masks.
        mask_extension: ``average`` (every bin above ``max_bins`` gets the mean of the top
            ``extension_bins`` masks), ``edge`` (the top mask) or ``zeros`` (0: nothing above
            ``max_bins``, as Spleeter does; the stems then do not sum to the input there).
        extension_bins: See ``mask_extension``.
    """

    n_fft: int
    hop_length: int
    max_bins: int
    mask_extension: str = "average"
    extension_bins: int = 256

    def __post_init__(self) -> None:
        if self.mask_extension not in MASK_EXTENSIONS:
            raise ValueError(f"Argument `mask_extension` must be one of {list(MASK_EXTENSIONS)}. Received {self.mask_extension!r}.")

    @property
    def num_bins(self) -> int:
        """Bins of the full spectrum, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @classmethod
    def of(cls, source) -> "Spectral":
        """The geometry of anything that carries these attributes (a model config, an export description)."""
        return cls(source.n_fft, source.hop_length, source.max_bins, source.mask_extension, source.extension_bins)


# ----------------------------------------------------------------------------------------------------------
# Windows, the frame pool, the STFT pair


def hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 ``(n_fft,)`` (as ``tf.signal.hann_window``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def synthesis_window(n_fft: int, hop_length: int) -> np.ndarray:
    """The inverse STFT's window: Hann divided by the sum of squared Hann windows over each hop."""
    window = hann(n_fft)
    overlap = n_fft // hop_length
    denominator = np.sum(np.square(window).reshape(overlap, hop_length), axis=0)
    return window / np.tile(denominator, overlap)


_POOL: dict = {}  # {process id: the FFT thread pool}, created on first use (a forked child makes its own)


def in_frame_blocks(function: Callable[[int, int], None], num_frames: int) -> None:
    """Call ``function(start, stop)`` on consecutive frame ranges covering ``num_frames``, on up to two threads.

    numpy's FFTs and element-wise ops release the GIL, so two halves of a chunk's frames transform
    at once: the STFT pair takes about half the time on two cores (``benchmarks/separate_speed.py``).
    Short inputs (streams' blocks) stay on the calling thread.
    """
    workers = min(2, os.cpu_count() or 1)
    if workers < 2 or num_frames < 64:
        function(0, num_frames)
        return
    pool = _POOL.get(os.getpid())
    if pool is None:  # the first call in this process: a parent's pool has no threads in a forked child
        from concurrent.futures import ThreadPoolExecutor

        _POOL.clear()
        pool = _POOL[os.getpid()] = ThreadPoolExecutor(workers, thread_name_prefix="stemtf-fft")
    bounds = np.linspace(0, num_frames, workers + 1).astype(int)
    for future in [pool.submit(function, start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]:
        future.result()


def fast_rfft(scaled_frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.fft.rfft(frames)`` along the last axis, given ``frames * n_fft`` (callers scale their window).

    numpy 2's default normalisation passes its factor 1 as a Python int, which (numpy 2.0-2.4 at
    least) sends the transform down a path ~3.5x slower than ``norm="forward"``'s float factor
    1/n (48 vs 14 ms for 1024 frames of 4096 samples). So the callers scale the window by ``n_fft``
    (exact for powers of two) and this asks for ``norm="forward"``.
    """
    return np.fft.rfft(scaled_frames, axis=-1, norm="forward", out=out)


def frames_of(padded: np.ndarray, n_fft: int, hop_length: int, count: int | None = None) -> np.ndarray:
    """A view of the frames of ``(L, C)`` samples every ``hop_length``: ``(num_frames, C, n_fft)``."""
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=0)[::hop_length][:count]


def rfft_frames(frames: np.ndarray, n_fft: int) -> np.ndarray:
    """Windowed spectra of frames ``(n, C, n_fft)`` -> complex64 ``(n, C, bins)``, bins last (on the frame pool)."""
    window = hann(n_fft) * np.float32(n_fft)  # the scale of norm="forward" undone in the window (see fast_rfft)
    windowed = np.empty(frames.shape, np.float32)  # allocated here, not on the pool's threads: see stft
    spectra = np.empty(frames.shape[:-1] + (n_fft // 2 + 1,), np.complex64)

    def transform(start: int, stop: int) -> None:
        np.multiply(frames[start:stop], window, out=windowed[start:stop])
        fast_rfft(windowed[start:stop], out=spectra[start:stop])

    in_frame_blocks(transform, frames.shape[0])
    return spectra


def stft(waveform: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """:func:`stemtf.spectral.stft` in numpy: float32 ``(L, C)`` -> complex64 ``(num_frames, n_fft // 2 + 1, C)``.

    The waveform is padded with ``n_fft - hop_length`` zeros in front and up to a whole hop past that
    at the end, so that :func:`istft` gives it back.
    """
    front = n_fft - hop_length
    back = front + (-waveform.shape[0]) % hop_length
    padded = np.pad(np.asarray(waveform, np.float32), ((front, back), (0, 0)))
    frames = frames_of(padded, n_fft, hop_length)  # (T, C, n_fft)
    window = hann(n_fft) * np.float32(n_fft)  # the scale of norm="forward" undone in the window (see fast_rfft)
    spectrogram = np.empty((frames.shape[0], n_fft // 2 + 1, frames.shape[1]), np.complex64)
    # The work arrays are allocated here, not on the pool's threads: glibc keeps what a thread frees in
    # that thread's arena, which grew the process by ~50 MB.
    windowed = np.empty(frames.shape, np.float32)
    spectra = np.empty((frames.shape[0], frames.shape[1], n_fft // 2 + 1), np.complex64)

    def transform(start: int, stop: int) -> None:
        np.multiply(frames[start:stop], window, out=windowed[start:stop])
        fast_rfft(windowed[start:stop], out=spectra[start:stop])
        spectrogram[start:stop] = spectra[start:stop].transpose(0, 2, 1)

    in_frame_blocks(transform, frames.shape[0])
    return spectrogram


def istft(spectrogram: np.ndarray, *, n_fft: int, hop_length: int, num_samples: int, mask: np.ndarray | None = None,
          mask_extension: str = "average", extension_bins: int = 256) -> np.ndarray:
    """Inverse of :func:`stft`: ``(..., num_frames, bins, C)`` -> float32 ``(..., num_samples, C)``.

    Args:
        mask: Optional ``(..., num_frames, max_bins, C)`` mask applied first, extended to every bin as
            :func:`extend_masks` does (``mask_extension``, ``extension_bins``): the inverse of
            ``spectrogram * extend_masks(mask, ...)`` without building either full-band array.
    """
    overlap = n_fft // hop_length
    scaled_window = synthesis_window(n_fft, hop_length)
    num_frames = spectrogram.shape[-3]
    frames = np.empty(spectrogram.shape[:-3] + (num_frames, spectrogram.shape[-1], n_fft), np.float32)
    spectra = np.empty(frames.shape[:-1] + (spectrogram.shape[-2],), np.complex64)  # allocated here: see stft

    def transform(start: int, stop: int) -> None:
        # bins last and contiguous first: numpy's inverse FFT along a strided axis is 2.5x slower (and
        # so is masking with the two channels innermost)
        block = spectra[..., start:stop, :, :]
        block[...] = np.swapaxes(spectrogram[..., start:stop, :, :], -1, -2)
        if mask is not None:
            part = mask[..., start:stop, :, :]
            max_bins = part.shape[-2]
            block[..., :max_bins] *= np.swapaxes(part, -1, -2)
            block[..., max_bins:] *= np.swapaxes(mask_fill(part, how=mask_extension, extension_bins=extension_bins), -1, -2)
        target = frames[..., start:stop, :, :]
        np.fft.irfft(block, n=n_fft, axis=-1, out=target)
        target *= scaled_window

    in_frame_blocks(transform, num_frames)
    num_blocks = num_frames + overlap - 1
    blocks = np.empty(frames.shape[:-3] + (num_blocks, frames.shape[-2], hop_length), np.float32)

    def overlap_add(start: int, stop: int) -> None:  # blocks start..stop-1: block b sums hop r of frame b - r
        blocks[..., start:stop, :, :] = 0.0
        for r in range(overlap):
            first, last = max(start, r), min(stop, r + num_frames)
            if first < last:
                blocks[..., first:last, :, :] += frames[..., first - r : last - r, :, r * hop_length : (r + 1) * hop_length]

    in_frame_blocks(overlap_add, num_blocks)
    signal = np.swapaxes(blocks, -2, -3).reshape(blocks.shape[:-3] + (blocks.shape[-2], -1))  # (..., C, samples)
    front = n_fft - hop_length
    return np.ascontiguousarray(np.swapaxes(signal[..., front : front + num_samples], -1, -2))


def irfft_frames(spectra: np.ndarray, n_fft: int, window: np.ndarray) -> np.ndarray:
    """Masked spectra ``(..., n, bins, C)`` -> windowed float32 frames ``(..., n, n_fft, C)`` to overlap-add."""
    # bins last and contiguous first: numpy's inverse FFT along a strided axis is 2.5x slower
    signal = np.fft.irfft(np.ascontiguousarray(np.swapaxes(spectra, -1, -2)), n=n_fft, axis=-1).astype(np.float32)
    signal *= window  # (..., n, C, n_fft)
    return np.swapaxes(signal, -1, -2)


# ----------------------------------------------------------------------------------------------------------
# Masks


def mask_fill(masks: np.ndarray, *, how: str = "average", extension_bins: int = 256) -> np.ndarray:
    """The value :func:`extend_masks` gives every bin above ``max_bins``: ``(..., T, max_bins, C)`` -> ``(..., T, 1, C)``."""
    max_bins = masks.shape[-2]
    if how == "average":
        return masks[..., max_bins - extension_bins :, :].mean(axis=-2, keepdims=True)
    if how == "edge":
        return masks[..., max_bins - 1 :, :]
    if how == "zeros":
        return np.zeros_like(masks[..., :1, :])
    raise ValueError(f"Argument `how` must be one of {list(MASK_EXTENSIONS)}. Received {how!r}.")


def extend_masks(masks: np.ndarray, *, num_bins: int, how: str = "average", extension_bins: int = 256) -> np.ndarray:
    """:func:`stemtf.spectral.extend_mask` in numpy: ``(..., T, max_bins, C)`` -> ``(..., T, num_bins, C)``."""
    max_bins = masks.shape[-2]
    if num_bins == max_bins:
        return masks
    fill = mask_fill(masks, how=how, extension_bins=extension_bins)
    shape = masks.shape[:-2] + (num_bins - max_bins, masks.shape[-1])
    return np.concatenate([masks, np.broadcast_to(fill, shape)], axis=-2)


def wiener(mixture: np.ndarray, estimates: np.ndarray, *, iterations: int = 1, epsilon: float = 1e-10) -> np.ndarray:
    """:func:`stemtf.wiener.wiener_filter` in numpy (multichannel Wiener EM, Nugraha et al. 2016).

    Args:
        mixture: complex64 ``(T, F, C)``.
        estimates: complex64 ``(J, T, F, C)`` initial stem STFTs.
        iterations: EM iterations; 0 returns ``estimates``.

    Returns:
        complex64 ``(J, T, F, C)``.
    """
    if iterations <= 0:
        return estimates
    scale = max(float(np.max(np.abs(mixture))), 1e-8)  # epsilon means the same for quiet and loud chunks
    x = mixture / scale
    y = estimates / scale
    eye = np.eye(mixture.shape[-1], dtype=np.complex64)
    for _ in range(iterations):
        power = np.mean(np.abs(y) ** 2, axis=-1)  # (J, T, F)
        covariance = np.einsum("jtfc,jtfd->jfcd", y, np.conj(y)) / (epsilon + power.sum(axis=1))[..., None, None]
        weighted = power[..., None, None] * covariance[:, None]  # (J, T, F, C, C)
        inverse = np.linalg.inv(weighted.sum(axis=0) + epsilon * eye)  # (T, F, C, C)
        gains = weighted @ inverse[None]
        y = np.einsum("jtfcd,tfd->jtfc", gains, x)
    return (y * scale).astype(np.complex64)


# ----------------------------------------------------------------------------------------------------------
# One chunk


def separate_chunk(predict: MaskPredictor, spectral, waveform: np.ndarray, *, wiener_iterations: int = 0) -> np.ndarray:
    """One chunk: STFT, the masks of ``predict``, full-band extension, masking, (Wiener), inverse STFT.

    Args:
        predict: Magnitudes float32 ``(1, T, max_bins, C)`` -> masks ``(num_stems, T, max_bins, C)``.
        spectral: The geometry (:class:`Spectral`, or a model config).
        waveform: float32 ``(num_samples, C)`` at the model's rate and channel count.
        wiener_iterations: Multichannel Wiener filter EM iterations after masking (0: off).

    Returns:
        float32 ``(num_stems, num_samples, C)``.
    """
    g = Spectral.of(spectral)
    spectrogram = stft(waveform, n_fft=g.n_fft, hop_length=g.hop_length)
    magnitude = np.abs(spectrogram)[None, :, : g.max_bins, :]
    masks = np.asarray(predict(np.ascontiguousarray(magnitude)), np.float32)

    def synthesize(spec: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return istft(spec, n_fft=g.n_fft, hop_length=g.hop_length, num_samples=waveform.shape[0], mask=mask,
                     mask_extension=g.mask_extension, extension_bins=g.extension_bins)

    if wiener_iterations:
        full = extend_masks(masks, num_bins=g.num_bins, how=g.mask_extension, extension_bins=g.extension_bins)
        return synthesize(wiener(spectrogram, spectrogram[None] * full, iterations=wiener_iterations))
    # One stem at a time: never every stem's full-band spectrogram at once (memory stays flat in stems).
    if g.mask_extension == "zeros" or np.max(np.abs(masks.sum(axis=0) - 1.0)) > 1e-4:
        return np.stack([synthesize(spectrogram, mask) for mask in masks])
    # Ratio masks (every stemtf model's) sum to one in every bin, the extension keeps that (``zeros``
    # does not: nothing above max_bins, so no shortcut there), and the STFT
    # pair gives back its input: the last stem is the chunk minus the others. One inverse STFT fewer
    # (7% of a chunk's time with 4 stems), and the stems add up to the chunk exactly.
    others = [synthesize(spectrogram, mask) for mask in masks[:-1]]
    return np.stack([*others, np.asarray(waveform, np.float32) - np.sum(others, axis=0)])


# ----------------------------------------------------------------------------------------------------------
# The chunk plan's arithmetic


def num_chunks(num_samples: int, *, chunk_samples: int, overlap_samples: int) -> int:
    """How many chunks of ``chunk_samples`` overlapping by ``overlap_samples`` cover ``num_samples``."""
    stride = chunk_samples - overlap_samples
    return 1 + (max(int(num_samples) - chunk_samples, 0) + stride - 1) // stride


def crossfade_ramp(overlap_samples: int) -> np.ndarray:
    """float32 ``(overlap_samples,)`` fade-in of the later of two neighbouring chunks (the earlier fades by ``1 - ramp``).

    Sampled at half-sample offsets so the two gains are symmetric and add up to exactly one.
    """
    return ((np.arange(overlap_samples, dtype=np.float32) + 0.5) / max(overlap_samples, 1)).astype(np.float32)


def check_overlap(overlap_samples: int, chunk_samples: int) -> None:
    """Raise ``ValueError`` unless the overlap is between 0 and half a chunk."""
    if not 0 <= overlap_samples <= chunk_samples // 2:
        raise ValueError(f"The overlap must be between 0 and {chunk_samples // 2} samples. Received {overlap_samples}.")
