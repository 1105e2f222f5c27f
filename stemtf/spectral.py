"""Short-time Fourier transforms and mask helpers, in TensorFlow.

Shapes are channels-last: a waveform is ``(..., num_samples, num_channels)`` and a spectrogram
``(..., num_frames, num_bins, num_channels)``. The waveform is padded by ``n_fft - hop_length`` at
the front and at least as much at the back, so every real sample is covered by the full overlap of
frames and ``istft(stft(x)) == x`` to float precision (tf.signal alone is off by up to 0.6 in the
first 3072 samples).
"""

from __future__ import annotations

import math

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

    Masks that sum to one over stems still do after extension, so stems still sum to the mixture.

    Args:
        mask: float32 ``(..., num_frames, max_bins, num_channels)``.
        num_bins: Bins of the full spectrogram (``n_fft // 2 + 1``).
        how: ``average``: every higher bin gets, per frame and channel, the mean of the top
            ``extension_bins`` predicted bins; ``edge``: it gets the highest predicted bin.
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
    else:
        raise ValueError(f"Argument `how` must be 'average' or 'edge'. Received {how!r}.")
    multiples = [1] * (len(mask.shape) - 2) + [missing, 1]
    return tf.concat([mask, tf.tile(fill, multiples)], axis=-2)


# The STFT as framing + matrix products, for exports (TFLite builtin ops, ONNX).
#
# tf.signal's FFT kernels become Flex ops in TFLite and RFFT nodes that onnxruntime rejects; a DFT
# written as two real matrix products converts to builtin ops everywhere. The cos/sin basis is
# computed from integer ranges when the graph runs, so a converter stores a few ops, not
# ``n_fft x (n_fft // 2 + 1)`` constants (33 MB each at n_fft=4096) that int8 quantization would ruin.
# Real and imaginary parts are separate float32 tensors: no complex dtype anywhere.


def _runtime_zero(like: tf.Tensor) -> tf.Tensor:
    """An int32 zero that converters cannot constant-fold: it depends on the values of ``like``.

    Converters fold every op whose inputs are constants; without this, the basis below would be
    stored in the file (2 x 33 MB at n_fft=4096) and int8 quantization would quantize the STFT.
    """
    first = tf.reshape(like, [-1])[0]
    return tf.minimum(tf.cast(tf.equal(first, first), tf.int32), 0)  # 0 for any value, NaN included


def _dft_pair(size: int, columns: int, period: int, like: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``cos`` and ``sin`` of ``2 pi i k / period`` for ``i < size``, ``k < columns``, float32, computed at run time.

    ``i k`` is reduced modulo ``period`` in integers first, so the angle is exact to float32.
    ``like`` is any non-empty tensor of the graph's input (see :func:`_runtime_zero`).
    """
    i = (tf.range(size, dtype=tf.int32) + _runtime_zero(like))[:, None]
    k = tf.range(columns, dtype=tf.int32)[None, :]
    angle = tf.cast(tf.math.floormod(i * k, period), tf.float32) * (2.0 * 3.141592653589793 / period)
    return tf.cos(angle), tf.sin(angle)


def _factors(n_fft: int) -> tuple[int, int]:
    """``(n1, n2)`` with ``n1 * n2 == n_fft`` as close to square as powers of two allow (64 x 64 for 4096)."""
    n1 = 2 ** (int(math.log2(n_fft)) // 2)
    return n1, n_fft // n1


def _dft(real: tf.Tensor, imag: tf.Tensor | None, n_fft: int, *, real_output: bool = False):
    """The DFT over the last axis in two stages of small matrix products (Cooley-Tukey, ``n_fft = n1 * n2``).

    A dense ``n_fft``-point DFT as one matrix product costs ``n_fft**2`` multiply-adds per frame
    (16.8 M at 4096); two stages of ``n1``- and ``n2``-point DFTs with twiddle factors between them
    cost ``n_fft * (n1 + n2)`` (0.5 M), still with builtin ops only (reshape, transpose, matmul).
    Input index ``n = n2 * i1 + i2``, output index ``k = k1 + n1 * k2``.

    Args:
        real, imag: float32 ``(..., n_fft)``; ``imag`` None for a real input.
        real_output: Return only the real part (what an inverse of a real signal needs).

    Returns:
        ``(real, imag)`` (or ``real`` alone), float32 ``(..., n_fft)``.
    """
    n1, n2 = _factors(n_fft)
    outer = tf.shape(real)[:-1]

    def split(x):  # (..., n_fft) -> (..., i2, i1)
        return tf.linalg.matrix_transpose(tf.reshape(x, tf.concat([outer, [n1, n2]], axis=0)))

    c1, s1 = _dft_pair(n1, n1, n1, real)
    x_re = split(real)
    if imag is None:
        a_re, a_im = _matmul_last(x_re, c1), -_matmul_last(x_re, s1)
    else:
        x_im = split(imag)
        a_re = _matmul_last(x_re, c1) + _matmul_last(x_im, s1)
        a_im = _matmul_last(x_im, c1) - _matmul_last(x_re, s1)
    tc, ts = _dft_pair(n2, n1, n_fft, real)  # twiddle factors exp(-2 pi i i2 k1 / n_fft), (i2, k1)
    b_re = tf.linalg.matrix_transpose(a_re * tc + a_im * ts)  # (..., k1, i2)
    b_im = tf.linalg.matrix_transpose(a_im * tc - a_re * ts)
    c2, s2 = _dft_pair(n2, n2, n2, real)

    def merge(x):  # (..., k1, k2) -> (..., n_fft) with k = k1 + n1 * k2
        return tf.reshape(tf.linalg.matrix_transpose(x), tf.concat([outer, [n_fft]], axis=0))

    out_re = merge(_matmul_last(b_re, c2) + _matmul_last(b_im, s2))
    if real_output:
        return out_re
    return out_re, merge(_matmul_last(b_im, c2) - _matmul_last(b_re, s2))


def _half_spectrum_twiddle(n_fft: int, like: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``cos`` and ``sin`` of ``2 pi k / n_fft`` for ``k = 0 .. n_fft / 2``, float32 ``(n_fft // 2 + 1,)``."""
    cos, sin = _dft_pair(n_fft // 2 + 1, 2, n_fft, like)  # column k = 1: angle 2 pi i / n_fft
    return cos[:, 1], sin[:, 1]


def _rfft(frames: tf.Tensor, n_fft: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The real DFT of ``(..., n_fft)`` frames: ``(real, imag)`` of bins ``0 .. n_fft / 2``.

    The usual trick for real input: the even and odd samples are the real and imaginary parts of
    one complex signal of half the length, whose DFT (:func:`_dft`) is then split into the even and
    odd samples' spectra and recombined with one twiddle per bin. Half the work of a complex DFT.
    """
    half = n_fft // 2
    pairs = tf.reshape(frames, tf.concat([tf.shape(frames)[:-1], [half, 2]], axis=0))
    z_re, z_im = _dft(pairs[..., 0], pairs[..., 1], half)
    # Z[k] and Z[(half - k) mod half] for k = 0 .. half.
    a_re, a_im = tf.concat([z_re, z_re[..., :1]], axis=-1), tf.concat([z_im, z_im[..., :1]], axis=-1)
    b_re = tf.concat([z_re[..., :1], tf.reverse(z_re[..., 1:], axis=[-1]), z_re[..., :1]], axis=-1)
    b_im = tf.concat([z_im[..., :1], tf.reverse(z_im[..., 1:], axis=[-1]), z_im[..., :1]], axis=-1)
    even_re, even_im = (a_re + b_re) / 2, (a_im - b_im) / 2
    odd_re, odd_im = (a_im + b_im) / 2, (b_re - a_re) / 2
    cos, sin = _half_spectrum_twiddle(n_fft, frames)  # exp(-2 pi i k / n_fft) = cos - i sin
    return even_re + cos * odd_re + sin * odd_im, even_im + cos * odd_im - sin * odd_re


def _irfft(real: tf.Tensor, imag: tf.Tensor, n_fft: int) -> tf.Tensor:
    """The inverse of :func:`_rfft`: bins ``(..., n_fft / 2 + 1)`` -> real frames ``(..., n_fft)``.

    The even and odd output samples come out as the real and imaginary parts of one complex inverse
    DFT of half the length (the imaginary parts of the first and last bins are ignored, as irfft does).
    """
    half = n_fft // 2
    # X[k] and conj(X[half - k]) for k = 0 .. half - 1.
    b_re, b_im = tf.reverse(real[..., 1:], axis=[-1]), -tf.reverse(imag[..., 1:], axis=[-1])
    a_re, a_im = real[..., :half], imag[..., :half]
    cos, sin = _half_spectrum_twiddle(n_fft, real)
    cos, sin = cos[:half], sin[:half]  # exp(+2 pi i k / n_fft) = cos + i sin
    even_re, even_im = (a_re + b_re) / 2, (a_im + b_im) / 2
    diff_re, diff_im = (a_re - b_re) / 2, (a_im - b_im) / 2
    odd_re, odd_im = diff_re * cos - diff_im * sin, diff_re * sin + diff_im * cos
    z_re, z_im = even_re - odd_im, even_im + odd_re  # Z = E + i O
    # The inverse DFT of Z is conj(DFT(conj Z)) / half.
    out_re, out_im = _dft(z_re, -z_im, half)
    samples = tf.stack([out_re, -out_im], axis=-1) / half  # (..., half, 2): even and odd samples
    return tf.reshape(samples, tf.concat([tf.shape(real)[:-1], [n_fft]], axis=0))


def _matmul_last(x: tf.Tensor, matrix: tf.Tensor, *, transpose_b: bool = False) -> tf.Tensor:
    """``x @ matrix`` over the last axis, as one 2-D MatMul.

    A rank-4 BatchMatMul with a batch dimension of 1 in the middle (e.g. ``(3, 1, T, N) @ (N, K)``)
    segfaults in TF 2.21's oneDNN kernel; flattening also makes the TFLite op a FULLY_CONNECTED.
    """
    columns = tf.shape(matrix)[0 if transpose_b else 1]
    flat = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), matrix, transpose_b=transpose_b)
    return tf.reshape(flat, tf.concat([tf.shape(x)[:-1], [columns]], axis=0))


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
