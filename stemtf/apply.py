"""Where separation happens: masks -> stems for one chunk, and chunks -> a whole waveform.

Everything that turns a mixture into stems goes through here, once:

- **one chunk**: STFT -> magnitudes -> the network's masks -> masks extended to every bin ->
  masked spectrograms -> (optional Wiener filtering) -> inverse STFT, in TensorFlow ops for graphs
  (:func:`separate_chunk`) and in numpy for the separator (:func:`separate_chunk_numpy`, whose
  masks come from Keras or from LiteRT, so that the LiteRT path never imports TensorFlow).
  The STFT pair is passed in: :class:`ComplexTransform` (``tf.signal``, what the separator and the
  SavedModel use) or :class:`MatmulTransform` (the DFT as matrix products, for TFLite and ONNX).
  The oracle baseline applies ideal masks with the same :func:`masks_to_stems`.
- **many chunks**: the chunk plan (:func:`num_chunks`), the linear cross-fade
  (:func:`crossfade_ramp`) and the streaming overlap-add (:func:`separate_stream`).
- **the model's format**: resampling and channel conversion in and out
  (:func:`to_model_format`, :func:`from_model_format`).

A live stream below a chunk's latency uses :mod:`stemtf.sliding`: the same STFT window, mask
extension and overlap-add, computed frame by frame as the frames complete (a test pins it to
:func:`stft_numpy` / :func:`istft_numpy`).

``stemtf.litert_runner`` keeps a dependency-free copy of the chunk plan and cross-fade on purpose
(it is the code a phone app ports); a test pins it to this one.

TensorFlow is imported inside the functions that need it: the chunk plan and format conversion are
numpy only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from stemtf import audio
from stemtf.config import ModelConfig
from stemtf.errors import AudioError

ProgressCallback = Callable[[int, "int | None"], None]
ChunkFunction = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------------------
# One chunk


class Transform(Protocol):
    """An STFT pair: what :func:`separate_chunk` needs to analyse, mask and resynthesise a chunk."""

    def analyze(self, waveform: Any) -> Any:
        """Waveform ``(L, C)`` -> spectrogram (opaque to callers)."""

    def magnitude(self, spectrogram: Any) -> Any:
        """float32 ``(num_frames, num_bins, C)`` magnitudes of a spectrogram."""

    def apply(self, spectrogram: Any, mask: Any) -> Any:
        """The spectrogram multiplied by a real mask ``(num_frames, num_bins, C)``."""

    def synthesize(self, spectrogram: Any, num_samples: int) -> Any:
        """Spectrogram -> float32 waveform ``(num_samples, C)``."""


class ComplexTransform:
    """:func:`stemtf.spectral.stft` / ``istft`` (``tf.signal``): complex64 spectrograms."""

    supports_wiener = True

    def __init__(self, *, n_fft: int, hop_length: int) -> None:
        self.n_fft, self.hop_length = n_fft, hop_length

    def analyze(self, waveform):
        from stemtf import spectral

        return spectral.stft(waveform, n_fft=self.n_fft, hop_length=self.hop_length)

    def magnitude(self, spectrogram):
        import tensorflow as tf

        return tf.abs(spectrogram)

    def apply(self, spectrogram, mask):
        import tensorflow as tf

        return spectrogram * tf.cast(mask, tf.complex64)

    def synthesize(self, spectrogram, num_samples):
        from stemtf import spectral

        return spectral.istft(spectrogram, n_fft=self.n_fft, hop_length=self.hop_length, num_samples=num_samples)


class MatmulTransform:
    """:func:`stemtf.spectral.stft_matmul` / ``istft_matmul``: ``(real, imag)`` pairs, builtin ops only."""

    supports_wiener = False

    def __init__(self, *, n_fft: int, hop_length: int) -> None:
        self.n_fft, self.hop_length = n_fft, hop_length

    def analyze(self, waveform):
        from stemtf import spectral

        return spectral.stft_matmul(waveform, n_fft=self.n_fft, hop_length=self.hop_length)

    def magnitude(self, spectrogram):
        import tensorflow as tf

        real, imag = spectrogram
        return tf.sqrt(tf.square(real) + tf.square(imag))

    def apply(self, spectrogram, mask):
        real, imag = spectrogram
        return real * mask, imag * mask

    def synthesize(self, spectrogram, num_samples):
        from stemtf import spectral

        real, imag = spectrogram
        return spectral.istft_matmul(real, imag, n_fft=self.n_fft, hop_length=self.hop_length, num_samples=num_samples)


def transform_for(config: ModelConfig, *, portable: bool = False) -> ComplexTransform | MatmulTransform:
    """The STFT pair of ``config``: ``tf.signal`` by default, matrix products when ``portable``."""
    kind = MatmulTransform if portable else ComplexTransform
    return kind(n_fft=config.n_fft, hop_length=config.hop_length)


def predict_masks(model, magnitude, config: ModelConfig) -> list:
    """The network's masks for one chunk, extended to every frequency bin.

    Args:
        model: The spectrogram -> ``{stem: mask}`` network of :func:`stemtf.model.build_model`.
        magnitude: float32 ``(num_frames, num_bins, num_channels)`` mixture magnitudes (all bins).
        config: The model's config.

    Returns:
        float32 ``(num_frames, num_bins, num_channels)`` masks, one per stem in ``config.stems`` order.
    """
    from stemtf import spectral

    masks = model(magnitude[None, :, : config.max_bins, :], training=False)
    return [
        spectral.extend_mask(
            masks[stem][0], num_bins=config.num_bins, how=config.mask_extension, extension_bins=config.extension_bins
        )
        for stem in config.stems
    ]


def masks_to_stems(
    transform: Transform, spectrogram, masks: Sequence, *, num_samples, wiener_iterations: int = 0
) -> list:
    """Apply masks to a mixture spectrogram and return the stems' waveforms.

    Args:
        transform: The STFT pair ``spectrogram`` came from.
        spectrogram: The mixture's, from ``transform.analyze``.
        masks: float32 ``(num_frames, num_bins, num_channels)`` per stem.
        num_samples: Length of the transformed waveform.
        wiener_iterations: Multichannel Wiener filter EM iterations after masking (0: off);
            needs a complex transform.

    Returns:
        float32 ``(num_samples, num_channels)`` per stem, in the order of ``masks``.
    """
    estimates = [transform.apply(spectrogram, mask) for mask in masks]
    if wiener_iterations:
        if not getattr(transform, "supports_wiener", False):
            raise ValueError("Wiener filtering needs complex spectrograms (ComplexTransform).")
        import tensorflow as tf

        from stemtf.wiener import wiener_filter

        filtered = wiener_filter(spectrogram, tf.stack(estimates), iterations=wiener_iterations)
        return tf.unstack(transform.synthesize(filtered, num_samples))
    # One inverse STFT per stem: never every stem's frames at once.
    return [transform.synthesize(estimate, num_samples) for estimate in estimates]


def separate_chunk(
    model, config: ModelConfig, waveform, *, transform: Transform | None = None, wiener_iterations: int = 0
) -> list:
    """Separate one chunk: STFT, the network's masks, masking, (Wiener), inverse STFT.

    Args:
        model: The spectrogram -> masks network.
        config: Its config.
        waveform: float32 ``(num_samples, num_channels)`` at the model's rate and channel count.
        transform: The STFT pair (default: ``tf.signal``).
        wiener_iterations: Wiener filter EM iterations (complex transform only).

    Returns:
        float32 ``(num_samples, num_channels)`` per stem, in ``config.stems`` order.
    """
    import tensorflow as tf

    transform = transform or transform_for(config)
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    # A static length keeps exported graphs static-shaped (TFLite runs those much faster).
    num_samples = waveform.shape[0] if waveform.shape[0] is not None else tf.shape(waveform)[0]
    spectrogram = transform.analyze(waveform)
    masks = predict_masks(model, transform.magnitude(spectrogram), config)
    if not wiener_iterations and len(masks) > 1 and _has_ratio_masks(model):
        # As separate_chunk_numpy: ratio masks sum to one in every bin (the extension keeps that) and the
        # STFT pair gives back its input, so the last stem is the chunk minus the others: one inverse
        # STFT fewer (in the exported waveform graphs, a quarter of their DFT work with 4 stems).
        others = masks_to_stems(transform, spectrogram, masks[:-1], num_samples=num_samples)
        return [*others, waveform - tf.add_n(others)]
    return masks_to_stems(transform, spectrogram, masks, num_samples=num_samples, wiener_iterations=wiener_iterations)


def _has_ratio_masks(model) -> bool:
    """Whether ``model`` ends in :class:`stemtf.model.RatioMasks` (its masks sum to one), as every stemtf model does."""
    try:
        model.get_layer("ratio_masks")
    except (AttributeError, ValueError):
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# One chunk in numpy (what the separator runs, with either runtime's masks)
#
# The same math as above with numpy's FFT (pocketfft) instead of TensorFlow ops, so that a separator
# whose masks come from LiteRT never imports TensorFlow. Tests pin it to the TensorFlow version.

MaskPredictor = Callable[[np.ndarray], np.ndarray]


def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 ``(n_fft,)`` (as ``tf.signal.hann_window``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


_POOL: dict = {}  # {process id: the FFT thread pool}, created on first use (a forked child makes its own)


def _in_frame_blocks(function: Callable[[int, int], None], num_frames: int) -> None:
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


def stft_numpy(waveform: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """:func:`stemtf.spectral.stft` in numpy: float32 ``(L, C)`` -> complex64 ``(num_frames, n_fft // 2 + 1, C)``."""
    front = n_fft - hop_length
    back = front + (-waveform.shape[0]) % hop_length
    padded = np.pad(np.asarray(waveform, np.float32), ((front, back), (0, 0)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=0)[::hop_length]  # (T, C, n_fft)
    window = _hann(n_fft) * np.float32(n_fft)  # the scale of norm="forward" undone in the window (see fast_rfft)
    spectrogram = np.empty((frames.shape[0], n_fft // 2 + 1, frames.shape[1]), np.complex64)
    # The work arrays are allocated here, not on the pool's threads: glibc keeps what a thread frees in
    # that thread's arena, which grew the process by ~50 MB.
    windowed = np.empty(frames.shape, np.float32)
    spectra = np.empty((frames.shape[0], frames.shape[1], n_fft // 2 + 1), np.complex64)

    def transform(start: int, stop: int) -> None:
        np.multiply(frames[start:stop], window, out=windowed[start:stop])
        fast_rfft(windowed[start:stop], out=spectra[start:stop])
        spectrogram[start:stop] = spectra[start:stop].transpose(0, 2, 1)

    _in_frame_blocks(transform, frames.shape[0])
    return spectrogram


def istft_numpy(
    spectrogram: np.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    num_samples: int,
    mask: np.ndarray | None = None,
    mask_extension: str = "average",
    extension_bins: int = 256,
) -> np.ndarray:
    """Inverse of :func:`stft_numpy`: ``(..., num_frames, bins, C)`` -> float32 ``(..., num_samples, C)``.

    Args:
        mask: Optional ``(..., num_frames, max_bins, C)`` mask applied first, extended to every bin as
            :func:`extend_masks_numpy` does (``mask_extension``, ``extension_bins``): the inverse of
            ``spectrogram * extend_masks_numpy(mask, ...)`` without building either full-band array.
    """
    overlap = n_fft // hop_length
    window = _hann(n_fft)
    denominator = np.sum(np.square(window).reshape(overlap, hop_length), axis=0)
    scaled_window = window / np.tile(denominator, overlap)
    num_frames = spectrogram.shape[-3]
    frames = np.empty(spectrogram.shape[:-3] + (num_frames, spectrogram.shape[-1], n_fft), np.float32)
    spectra = np.empty(frames.shape[:-1] + (spectrogram.shape[-2],), np.complex64)  # allocated here: see stft_numpy

    def transform(start: int, stop: int) -> None:
        # bins last and contiguous first: numpy's inverse FFT along a strided axis is 2.5x slower (and
        # so is masking with the two channels innermost)
        block = spectra[..., start:stop, :, :]
        block[...] = np.swapaxes(spectrogram[..., start:stop, :, :], -1, -2)
        if mask is not None:
            part = mask[..., start:stop, :, :]
            max_bins = part.shape[-2]
            block[..., :max_bins] *= np.swapaxes(part, -1, -2)
            block[..., max_bins:] *= np.swapaxes(mask_fill_numpy(part, how=mask_extension, extension_bins=extension_bins), -1, -2)
        target = frames[..., start:stop, :, :]
        np.fft.irfft(block, n=n_fft, axis=-1, out=target)
        target *= scaled_window

    _in_frame_blocks(transform, num_frames)
    num_blocks = num_frames + overlap - 1
    blocks = np.empty(frames.shape[:-3] + (num_blocks, frames.shape[-2], hop_length), np.float32)

    def overlap_add(start: int, stop: int) -> None:  # blocks start..stop-1: block b sums hop r of frame b - r
        blocks[..., start:stop, :, :] = 0.0
        for r in range(overlap):
            first, last = max(start, r), min(stop, r + num_frames)
            if first < last:
                blocks[..., first:last, :, :] += frames[..., first - r : last - r, :, r * hop_length : (r + 1) * hop_length]

    _in_frame_blocks(overlap_add, num_blocks)
    signal = np.swapaxes(blocks, -2, -3).reshape(blocks.shape[:-3] + (blocks.shape[-2], -1))  # (..., C, samples)
    front = n_fft - hop_length
    return np.ascontiguousarray(np.swapaxes(signal[..., front : front + num_samples], -1, -2))


def mask_fill_numpy(masks: np.ndarray, *, how: str = "average", extension_bins: int = 256) -> np.ndarray:
    """The value :func:`extend_masks_numpy` gives every bin above ``max_bins``: ``(..., T, max_bins, C)`` -> ``(..., T, 1, C)``."""
    max_bins = masks.shape[-2]
    if how == "average":
        return masks[..., max_bins - extension_bins :, :].mean(axis=-2, keepdims=True)
    if how == "edge":
        return masks[..., max_bins - 1 :, :]
    raise ValueError(f"Argument `how` must be 'average' or 'edge'. Received {how!r}.")


def extend_masks_numpy(masks: np.ndarray, *, num_bins: int, how: str = "average", extension_bins: int = 256) -> np.ndarray:
    """:func:`stemtf.spectral.extend_mask` in numpy: ``(..., T, max_bins, C)`` -> ``(..., T, num_bins, C)``."""
    max_bins = masks.shape[-2]
    if num_bins == max_bins:
        return masks
    fill = mask_fill_numpy(masks, how=how, extension_bins=extension_bins)
    shape = masks.shape[:-2] + (num_bins - max_bins, masks.shape[-1])
    return np.concatenate([masks, np.broadcast_to(fill, shape)], axis=-2)


def wiener_numpy(mixture: np.ndarray, estimates: np.ndarray, *, iterations: int = 1, epsilon: float = 1e-10) -> np.ndarray:
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


def separate_chunk_numpy(
    predict: MaskPredictor, config: ModelConfig, waveform: np.ndarray, *, wiener_iterations: int = 0
) -> np.ndarray:
    """:func:`separate_chunk` in numpy with masks from ``predict`` (Keras or LiteRT).

    Args:
        predict: Magnitudes float32 ``(1, T, max_bins, C)`` -> masks ``(num_stems, T, max_bins, C)``
            in ``config.stems`` order.
        config: The model's config.
        waveform: float32 ``(num_samples, C)`` at the model's rate and channel count.
        wiener_iterations: Multichannel Wiener filter EM iterations after masking (0: off).

    Returns:
        float32 ``(num_stems, num_samples, C)``.
    """
    spectrogram = stft_numpy(waveform, n_fft=config.n_fft, hop_length=config.hop_length)
    magnitude = np.abs(spectrogram)[None, :, : config.max_bins, :]
    masks = np.asarray(predict(np.ascontiguousarray(magnitude)), np.float32)

    def extended(mask: np.ndarray) -> np.ndarray:
        return extend_masks_numpy(mask, num_bins=config.num_bins, how=config.mask_extension, extension_bins=config.extension_bins)

    def synthesize(spec: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return istft_numpy(spec, n_fft=config.n_fft, hop_length=config.hop_length, num_samples=waveform.shape[0],
                           mask=mask, mask_extension=config.mask_extension, extension_bins=config.extension_bins)

    if wiener_iterations:
        estimates = wiener_numpy(spectrogram, spectrogram[None] * extended(masks), iterations=wiener_iterations)
        return synthesize(estimates)
    # One stem at a time: never every stem's full-band spectrogram at once (memory stays flat in stems).
    if np.max(np.abs(masks.sum(axis=0) - 1.0)) > 1e-4:
        return np.stack([synthesize(spectrogram, mask) for mask in masks])
    # Ratio masks (every stemtf model's) sum to one in every bin, the extension keeps that, and the STFT
    # pair gives back its input: the last stem is the chunk minus the others. One inverse STFT fewer
    # (7% of a chunk's time with 4 stems), and the stems add up to the chunk exactly.
    others = [synthesize(spectrogram, mask) for mask in masks[:-1]]
    return np.stack([*others, np.asarray(waveform, np.float32) - np.sum(others, axis=0)])


# ----------------------------------------------------------------------------------------------------------
# Many chunks


def num_chunks(num_samples, *, chunk_samples: int, overlap_samples: int):
    """How many chunks of ``chunk_samples`` overlapping by ``overlap_samples`` cover ``num_samples``.

    Works on Python ints and on TensorFlow scalars (for graphs of a whole waveform).
    """
    stride = chunk_samples - overlap_samples
    excess = num_samples - chunk_samples
    if isinstance(excess, (int, np.integer)):
        excess = max(int(excess), 0)
    else:
        import tensorflow as tf

        excess = tf.maximum(excess, 0)
    return 1 + (excess + stride - 1) // stride


def crossfade_ramp(overlap_samples: int) -> np.ndarray:
    """float32 ``(overlap_samples,)`` fade-in of the later of two neighbouring chunks (the earlier fades by ``1 - ramp``).

    Sampled at half-sample offsets so the two gains are symmetric and add up to exactly one.
    """
    return ((np.arange(overlap_samples, dtype=np.float32) + 0.5) / max(overlap_samples, 1)).astype(np.float32)


def check_overlap(overlap_samples: int, chunk_samples: int) -> None:
    """Raise ``ValueError`` unless the overlap is between 0 and half a chunk."""
    if not 0 <= overlap_samples <= chunk_samples // 2:
        raise ValueError(f"The overlap must be between 0 and {chunk_samples // 2} samples. Received {overlap_samples}.")


def separate_stream(
    reader: audio.AudioReader,
    separate: ChunkFunction,
    *,
    chunk_samples: int,
    overlap_samples: int,
    progress: ProgressCallback | None = None,
) -> Iterator[np.ndarray]:
    """Separate a reader chunk by chunk, cross-fading neighbours, and yield the stems block by block.

    Memory stays flat in the input's length: at most two chunks are held at once.

    Args:
        reader: Audio at the model's rate and channel count.
        separate: One chunk float32 ``(chunk_samples, C)`` -> ``(num_stems, chunk_samples, C)``;
            the last chunk is zero-padded to full length.
        chunk_samples: Samples per chunk.
        overlap_samples: Samples shared by neighbouring chunks (at most half a chunk).
        progress: Called with ``(chunks_done, chunks_total)``; the total is None when the
            reader's length is unknown.

    Yields:
        float32 ``(num_stems, n, C)`` consecutive blocks; together exactly as long as the input.

    Raises:
        AudioError: the reader holds no samples.
    """
    length, overlap = chunk_samples, overlap_samples
    check_overlap(overlap, length)
    stride = length - overlap
    total = None if reader.num_samples is None else num_chunks(
        reader.num_samples, chunk_samples=length, overlap_samples=overlap
    )
    ramp = crossfade_ramp(overlap)[:, None]
    buffer = reader.read(length)
    if buffer.shape[0] == 0:
        raise AudioError("The input holds no audio samples.")
    following = reader.read(stride) if buffer.shape[0] == length else buffer[:0]
    carry = None
    done = 0
    if progress is not None:
        progress(0, total)
    while True:
        last = following.shape[0] == 0
        valid = buffer.shape[0]
        chunk = buffer if valid == length else np.pad(buffer, ((0, length - valid), (0, 0)))
        stems = separate(chunk)
        if carry is not None:
            stems[:, :overlap] *= ramp
            stems[:, :overlap] += carry
        done += 1
        if progress is not None:
            progress(done, None if total is None else max(total, done))
        if last:
            yield stems[:, :valid]
            return
        stems[:, stride:] *= 1.0 - ramp
        carry = stems[:, stride:]
        yield stems[:, :stride]
        buffer = np.concatenate([buffer[stride:], following])
        following = reader.read(stride) if buffer.shape[0] == length else buffer[:0]


# ----------------------------------------------------------------------------------------------------------
# The model's format (rate and channels) in and out


def check_num_channels(num_channels: int) -> None:
    """Raise :class:`AudioError` for audio that is neither mono nor stereo."""
    if num_channels not in (1, 2):
        raise AudioError(
            f"The input has {num_channels} channels; stemtf separates mono or stereo audio "
            "(downmix first, e.g. ffmpeg -i in.wav -ac 2 out.wav)."
        )


def model_reader(reader: audio.AudioReader, *, sample_rate: int, num_channels: int) -> audio.AudioReader:
    """``reader`` resampled (streaming) to ``sample_rate`` and converted to ``num_channels``."""
    check_num_channels(reader.num_channels)
    if reader.sample_rate != sample_rate:
        reader = audio.ResamplingReader(reader, sample_rate)
    return _ChannelReader(reader, num_channels)


def to_model_format(waveform: np.ndarray, sample_rate: int, *, model_rate: int, model_channels: int) -> np.ndarray:
    """A whole waveform ``(num_samples, 1 or 2)`` resampled and channel-converted for the model; float32."""
    check_num_channels(waveform.shape[1])
    if sample_rate != model_rate:
        import soxr

        waveform = soxr.resample(waveform, sample_rate, model_rate).reshape(-1, waveform.shape[1])
    return audio.convert_channels(np.ascontiguousarray(waveform, dtype=np.float32), model_channels)


def from_model_format(
    stem: np.ndarray, *, model_rate: int, sample_rate: int, num_channels: int, num_samples: int
) -> np.ndarray:
    """A stem from the model back to the input's rate, channels and exact length (trimmed or zero-padded)."""
    if sample_rate != model_rate:
        import soxr

        stem = soxr.resample(stem, model_rate, sample_rate).reshape(-1, stem.shape[1])
    stem = audio.convert_channels(stem, num_channels)
    return np.pad(stem[:num_samples], ((0, max(0, num_samples - stem.shape[0])), (0, 0))).astype(np.float32, copy=False)


class _ChannelReader:
    """A reader's blocks converted to another channel count."""

    def __init__(self, reader: audio.AudioReader, num_channels: int) -> None:
        self._reader = reader
        self.sample_rate = reader.sample_rate
        self.num_channels = num_channels
        self.num_samples = reader.num_samples

    def read(self, num_samples: int) -> np.ndarray:
        return audio.convert_channels(self._reader.read(num_samples), self.num_channels)

    def close(self) -> None:
        self._reader.close()
