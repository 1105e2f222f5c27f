"""Short-time Fourier transforms and mask helpers, in TensorFlow.

Shapes are channels-last: a waveform is ``(..., num_samples, num_channels)`` and a spectrogram
``(..., num_frames, num_bins, num_channels)``. The waveform is padded by ``n_fft - hop_length`` at
the front and at least as much at the back, so every real sample is covered by the full overlap of
frames and ``istft(stft(x)) == x`` to float precision (tf.signal alone is off by up to 0.6 in the
first 3072 samples).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from stemtf import config


def front_padding(*, n_fft: int, hop_length: int) -> int:
    """Zeros added before the first sample so the first samples are fully overlapped."""
    return n_fft - hop_length


def num_frames(num_samples: int, *, n_fft: int, hop_length: int) -> int:
    """Frames :func:`stft` returns for ``num_samples`` samples."""
    front = front_padding(n_fft=n_fft, hop_length=hop_length)
    back = front + (-num_samples) % hop_length
    return 1 + (front + num_samples + back - n_fft) // hop_length


# The number of samples whose :func:`stft` has exactly ``num_frames`` frames (in config: TensorFlow-free).
segment_samples = config.segment_samples


def _channels_last(x: tf.Tensor) -> tf.Tensor:
    """``(..., C, frames, bins)`` -> ``(..., frames, bins, C)``."""
    rank = len(x.shape)
    return tf.transpose(x, list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3])


def _channels_first(x: tf.Tensor) -> tf.Tensor:
    """``(..., frames, bins, C)`` -> ``(..., C, frames, bins)``."""
    rank = len(x.shape)
    return tf.transpose(x, list(range(rank - 3)) + [rank - 1, rank - 3, rank - 2])


def stft(waveform: tf.Tensor, *, n_fft: int, hop_length: int) -> tf.Tensor:
    """Complex STFT with a periodic Hann window.

    Args:
        waveform: float32 ``(..., num_samples, num_channels)``.
        n_fft: Window and FFT size in samples.
        hop_length: Hop between frames in samples.

    Returns:
        complex64 ``(..., num_frames, n_fft // 2 + 1, num_channels)`` with
        ``num_frames = num_frames(num_samples)``.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    num_samples = tf.shape(waveform)[-2]
    front = front_padding(n_fft=n_fft, hop_length=hop_length)
    back = front + tf.math.floormod(-num_samples, hop_length)
    signal = tf.linalg.matrix_transpose(waveform)  # (..., C, num_samples)
    rank = len(signal.shape)
    paddings = tf.concat([tf.zeros([rank - 1, 2], tf.int32), [[front, back]]], axis=0)
    signal = tf.pad(signal, paddings)
    spectrogram = tf.signal.stft(
        signal, frame_length=n_fft, frame_step=hop_length, fft_length=n_fft, window_fn=tf.signal.hann_window
    )
    return _channels_last(spectrogram)


def istft(spectrogram: tf.Tensor, *, n_fft: int, hop_length: int, num_samples: int | tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`stft`.

    Args:
        spectrogram: complex64 ``(..., num_frames, n_fft // 2 + 1, num_channels)``.
        n_fft: Window and FFT size in samples.
        hop_length: Hop between frames in samples.
        num_samples: Length of the waveform that was transformed.

    Returns:
        float32 ``(..., num_samples, num_channels)``.
    """
    signal = tf.signal.inverse_stft(
        _channels_first(spectrogram),
        frame_length=n_fft,
        frame_step=hop_length,
        fft_length=n_fft,
        window_fn=tf.signal.inverse_stft_window_fn(hop_length, forward_window_fn=tf.signal.hann_window),
    )
    front = front_padding(n_fft=n_fft, hop_length=hop_length)
    return tf.linalg.matrix_transpose(signal[..., front : front + num_samples])


def extend_mask(mask: tf.Tensor, *, num_bins: int, how: str = "average", extension_bins: int = 256) -> tf.Tensor:
    """Extend masks predicted for the lowest bins to all ``num_bins`` bins.

    Masks that sum to one over stems still do after ``average`` or ``edge`` extension, so stems
    still sum to the mixture; ``zeros`` (Spleeter's) leaves nothing above ``max_bins``.

    Args:
        mask: float32 ``(..., num_frames, max_bins, num_channels)``.
        num_bins: Bins of the full spectrogram (``n_fft // 2 + 1``).
        how: ``average``: every higher bin gets, per frame and channel, the mean of the top
            ``extension_bins`` predicted bins; ``edge``: it gets the highest predicted bin;
            ``zeros``: it gets 0. As :func:`stemtf.dsp.extend_masks`.
        extension_bins: Bins averaged by ``average``.

    Returns:
        float32 ``(..., num_frames, num_bins, num_channels)``.
    """
    max_bins = mask.shape[-2]
    missing = num_bins - max_bins
    if missing == 0:
        return mask
    if how == "average":
        fill = tf.reduce_mean(mask[..., max_bins - extension_bins :, :], axis=-2, keepdims=True)
    elif how == "edge":
        fill = mask[..., max_bins - 1 :, :]
    elif how == "zeros":
        fill = tf.zeros_like(mask[..., :1, :])
    else:
        raise ValueError(f"Argument `how` must be 'average', 'edge' or 'zeros'. Received {how!r}.")
    multiples = [1] * (len(mask.shape) - 2) + [missing, 1]
    return tf.concat([mask, tf.tile(fill, multiples)], axis=-2)


# The STFT as framing + matrix products, for exports (TFLite builtin ops, ONNX).
#
# tf.signal's FFT kernels become Flex ops in TFLite and RFFT nodes that onnxruntime rejects; a DFT
# written as matrix products converts to builtin ops everywhere. It is factored (Cooley-Tukey,
# ``n_fft = n1 * n2``, 64 x 64 at 4096) into two stages of small matrix products with twiddle
# factors between them, and it uses the symmetry of real signals' spectra directly (half the
# second stage of the forward DFT and of the first stage of the inverse), so no reversals or
# interleavings of bins are needed: on LiteRT those element shuffles cost more than the products.
# The bases are small constants (64 x 64), which LiteRT's XNNPACK packs once; an int8 export, whose
# quantizer would round every constant matrix to 8 bits, computes them when the graph runs instead
# (:func:`basis_computed_at_run_time`). Real and imaginary parts are separate float32 tensors: no
# complex dtype anywhere.

_BASIS_AT_RUN_TIME = contextvars.ContextVar("stemtf_basis_at_run_time", default=False)


@contextlib.contextmanager
def basis_computed_at_run_time() -> Iterator[None]:
    """Graphs traced inside compute their DFT bases from integer ranges when they run.

    For int8 (dynamic-range) TFLite exports: the quantizer turns constant matrices into int8,
    which would cut the STFT's precision to ~30 dB; values computed at run time stay float32.
    """
    token = _BASIS_AT_RUN_TIME.set(True)
    try:
        yield
    finally:
        _BASIS_AT_RUN_TIME.reset(token)


def _runtime_zero(like: tf.Tensor) -> tf.Tensor:
    """An int32 zero that converters cannot constant-fold: it depends on the values of ``like``."""
    first = tf.reshape(like, [-1])[0]
    return tf.minimum(tf.cast(tf.equal(first, first), tf.int32), 0)  # 0 for any value, NaN included


def _dft_pair(size: int, columns: int, period: int, like: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``cos`` and ``sin`` of ``2 pi i k / period`` for ``i < size``, ``k < columns``, float32 ``(size, columns)``.

    ``i k`` is reduced modulo ``period`` in integers first, so the angle is exact to float32.
    Constants, or computed when the graph runs inside :func:`basis_computed_at_run_time` (``like``
    is any non-empty tensor of the graph's input; see :func:`_runtime_zero`).
    """
    if not _BASIS_AT_RUN_TIME.get():
        angle = np.outer(np.arange(size), np.arange(columns)) % period * (2 * np.pi / period)
        return tf.constant(np.cos(angle), tf.float32), tf.constant(np.sin(angle), tf.float32)
    i = (tf.range(size, dtype=tf.int32) + _runtime_zero(like))[:, None]
    k = tf.range(columns, dtype=tf.int32)[None, :]
    angle = tf.cast(tf.math.floormod(i * k, period), tf.float32) * (2.0 * 3.141592653589793 / period)
    return tf.cos(angle), tf.sin(angle)


def _factors(n_fft: int) -> tuple[int, int]:
    """``(n1, n2)`` with ``n1 * n2 == n_fft``, ``n1 <= n2``, as close to square as powers of two allow (64 x 64 for 4096)."""
    n1 = 2 ** (int(math.log2(n_fft)) // 2)
    return n1, n_fft // n1


def _swap_last(x: tf.Tensor) -> tf.Tensor:
    """Transpose the last two axes."""
    return tf.linalg.matrix_transpose(x)


def _rfft(frames: tf.Tensor, n_fft: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The real DFT of ``(..., n_fft)`` frames: ``(real, imag)`` of bins ``0 .. n_fft / 2``.

    Input index ``n = n2 * i1 + i2``, output index ``k = k1 + n1 * k2``: an ``n1``-point DFT over
    ``i1`` (real input: two real products), twiddle factors ``exp(-2 pi i i2 k1 / n_fft)``, then an
    ``n2``-point DFT over ``i2`` computed only for ``k2 <= n2 / 2`` (the bins up to ``n_fft / 2``).
    ``n_fft * (n1 + n2)`` multiply-adds per frame instead of the dense DFT's ``n_fft**2 / 2``.
    """
    n1, n2 = _factors(n_fft)
    columns = n2 // 2 + 1  # k2 values that reach bin n_fft / 2
    outer = tf.shape(frames)[:-1]
    x = _swap_last(tf.reshape(frames, tf.concat([outer, [n1, n2]], axis=0)))  # (..., i2, i1)
    cos1, sin1 = _dft_pair(n1, n1, n1, frames)
    a_re, a_im = _matmul_last(x, cos1), -_matmul_last(x, sin1)  # (..., i2, k1)
    cos_t, sin_t = _dft_pair(n2, n1, n_fft, frames)  # exp(-2 pi i i2 k1 / n_fft) = cos - i sin
    b_re = _swap_last(a_re * cos_t + a_im * sin_t)  # (..., k1, i2)
    b_im = _swap_last(a_im * cos_t - a_re * sin_t)
    cos2, sin2 = _dft_pair(n2, columns, n2, frames)

    def bins(x):  # (..., k1, k2) -> (..., n_fft / 2 + 1) with k = k1 + n1 * k2
        return tf.reshape(_swap_last(x), tf.concat([outer, [n1 * columns]], axis=0))[..., : n_fft // 2 + 1]

    return (bins(_matmul_last(b_re, cos2) + _matmul_last(b_im, sin2)),
            bins(_matmul_last(b_im, cos2) - _matmul_last(b_re, sin2)))


def _irfft(real: tf.Tensor, imag: tf.Tensor, n_fft: int) -> tf.Tensor:
    """The inverse of :func:`_rfft`: bins ``(..., n_fft / 2 + 1)`` -> real frames ``(..., n_fft)``.

    ``x[n] = Re(sum over k <= n_fft / 2 of w_k X[k] exp(2 pi i k n / n_fft)) / n_fft`` with ``w_k``
    2 but 1 at the first and last bins (whose imaginary parts are ignored, as irfft does). Bin index
    ``k = k1 + n1 * k2``, output index ``n = a + n2 * b``: an ``n2``-point inverse DFT over the
    ``n2 / 2 + 1`` values of ``k2``, twiddle factors ``exp(2 pi i k1 a / n_fft)``, then the real part
    of an ``n1``-point inverse DFT over ``k1``.
    """
    n1, n2 = _factors(n_fft)
    half = n_fft // 2
    rows = n2 // 2 + 1  # k2 values up to bin half
    outer = tf.shape(real)[:-1]
    weights = np.full(half + 1, 2.0 / n_fft, np.float32)
    weights[0] = weights[-1] = 1.0 / n_fft
    padding = tf.concat([tf.zeros([len(real.shape) - 1, 2], tf.int32), [[0, n1 * rows - (half + 1)]]], axis=0)

    def blocks(x):  # (..., half + 1) -> (..., k1, k2), zero bins after half
        x = tf.pad(x * weights, padding)
        return _swap_last(tf.reshape(x, tf.concat([outer, [rows, n1]], axis=0)))

    y_re, y_im = blocks(real), blocks(imag)
    cos1, sin1 = _dft_pair(rows, n2, n2, real)  # exp(+2 pi i k2 a / n2) = cos + i sin
    b_re = _matmul_last(y_re, cos1) - _matmul_last(y_im, sin1)  # (..., k1, a)
    b_im = _matmul_last(y_re, sin1) + _matmul_last(y_im, cos1)
    cos_t, sin_t = _dft_pair(n1, n2, n_fft, real)  # exp(+2 pi i k1 a / n_fft)
    t_re = _swap_last(b_re * cos_t - b_im * sin_t)  # (..., a, k1)
    t_im = _swap_last(b_re * sin_t + b_im * cos_t)
    cos2, sin2 = _dft_pair(n1, n1, n1, real)
    samples = _matmul_last(t_re, cos2) - _matmul_last(t_im, sin2)  # (..., a, b)
    return tf.reshape(_swap_last(samples), tf.concat([outer, [n_fft]], axis=0))


def _matmul_last(x: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """``x @ matrix`` over the last axis, as one 2-D MatMul.

    A rank-4 BatchMatMul with a batch dimension of 1 in the middle (e.g. ``(3, 1, T, N) @ (N, K)``)
    segfaults in TF 2.21's oneDNN kernel; flattening also makes the TFLite op a FULLY_CONNECTED
    (with a constant matrix, one that XNNPACK packs once).
    """
    flat = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), matrix)
    return tf.reshape(flat, tf.concat([tf.shape(x)[:-1], [matrix.shape[1]]], axis=0))


def _hann_window(n_fft: int) -> tf.Tensor:
    """Periodic Hann window, float32 ``(n_fft,)``, like ``tf.signal.hann_window``."""
    n = tf.cast(tf.range(n_fft, dtype=tf.int32), tf.float32)
    return 0.5 - 0.5 * tf.cos(n * (2.0 * 3.141592653589793 / n_fft))


def stft_matmul(waveform: tf.Tensor, *, n_fft: int, hop_length: int) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`stft` with framing by reshapes and the DFT as matrix products (no FFT, no complex).

    Args:
        waveform: float32 ``(..., num_samples, num_channels)``; ``n_fft`` must be a multiple of
            ``hop_length``.
        n_fft: Window and DFT size in samples.
        hop_length: Hop between frames in samples.

    Returns:
        ``(real, imag)``, float32 ``(..., num_frames, n_fft // 2 + 1, num_channels)`` each, equal
        to the real and imaginary parts of :func:`stft` to float32 precision.
    """
    if n_fft % hop_length:
        raise ValueError(f"Argument `n_fft` must be a multiple of `hop_length`. Received n_fft={n_fft}, hop_length={hop_length}.")
    overlap = n_fft // hop_length
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    rank = len(waveform.shape)
    num_samples = tf.shape(waveform)[-2]
    front = front_padding(n_fft=n_fft, hop_length=hop_length)
    back = front + tf.math.floormod(-num_samples, hop_length)
    signal = tf.linalg.matrix_transpose(waveform)  # (..., C, num_samples)
    paddings = tf.concat([tf.zeros([rank - 1, 2], tf.int32), [[front, back]]], axis=0)
    signal = tf.pad(signal, paddings)
    # Blocks of one hop; frame t is blocks t .. t + overlap - 1 side by side.
    blocks = tf.reshape(signal, tf.concat([tf.shape(signal)[:-1], [-1, hop_length]], axis=0))
    frame_count = tf.shape(blocks)[-2] - overlap + 1
    frames = tf.concat([blocks[..., r : r + frame_count, :] for r in range(overlap)], axis=-1)
    frames = frames * _hann_window(n_fft)  # (..., C, num_frames, n_fft)
    real, imag = _rfft(frames, n_fft)
    return _channels_last(real), _channels_last(imag)


def istft_matmul(
    real: tf.Tensor, imag: tf.Tensor, *, n_fft: int, hop_length: int, num_samples: int | tf.Tensor
) -> tf.Tensor:
    """Inverse of :func:`stft_matmul` (and of :func:`stft`), as matrix products and overlap-add by padding.

    Args:
        real: float32 ``(..., num_frames, n_fft // 2 + 1, num_channels)``, the real part.
        imag: float32, same shape, the imaginary part.
        n_fft: Window and DFT size in samples; a multiple of ``hop_length``.
        hop_length: Hop between frames in samples.
        num_samples: Length of the waveform that was transformed.

    Returns:
        float32 ``(..., num_samples, num_channels)``, equal to :func:`istft` to float32 precision.
    """
    if n_fft % hop_length:
        raise ValueError(f"Argument `n_fft` must be a multiple of `hop_length`. Received n_fft={n_fft}, hop_length={hop_length}.")
    overlap = n_fft // hop_length
    frames = _irfft(_channels_first(real), _channels_first(imag), n_fft)  # (..., C, num_frames, n_fft)
    # Synthesis window of tf.signal.inverse_stft_window_fn: window / sum of overlapping squared windows.
    window = _hann_window(n_fft)
    denominator = tf.reduce_sum(tf.reshape(tf.square(window), [overlap, hop_length]), axis=0)
    frames = frames * (window / tf.tile(denominator, [overlap]))  # (..., C, num_frames, n_fft)
    # Overlap-add: frame t's r-th hop lands on block t + r.
    rank = len(frames.shape)
    pieces = []
    for r in range(overlap):
        piece = frames[..., r * hop_length : (r + 1) * hop_length]
        paddings = [[0, 0]] * (rank - 2) + [[r, overlap - 1 - r], [0, 0]]
        pieces.append(tf.pad(piece, paddings))
    blocks = tf.add_n(pieces)  # (..., C, num_frames + overlap - 1, hop)
    signal = tf.reshape(blocks, tf.concat([tf.shape(blocks)[:-2], [-1]], axis=0))
    front = front_padding(n_fft=n_fft, hop_length=hop_length)
    return tf.linalg.matrix_transpose(signal[..., front : front + num_samples])
