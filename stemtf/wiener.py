"""Multichannel Wiener filtering of separated stems, in TensorFlow ops (exportable).

The expectation-maximisation of Nugraha, Liutkus & Vincent (2016), as in norbert: every stem is a
local Gaussian model with a power spectral density per bin and a spatial covariance per frequency,
re-estimated from the current stem estimates ``iterations`` times; the final estimates are the
multichannel Wiener filters applied to the mixture.
"""

from __future__ import annotations

import tensorflow as tf


def wiener_filter(
    mixture: tf.Tensor, estimates: tf.Tensor, *, iterations: int = 1, epsilon: float = 1e-10
) -> tf.Tensor:
    """Refine complex stem estimates with a multichannel Wiener filter.

    Args:
        mixture: complex64 ``(num_frames, num_bins, num_channels)`` mixture STFT.
        estimates: complex64 ``(num_stems, num_frames, num_bins, num_channels)`` initial stem STFTs
            (e.g. the mixture times the masks).
        iterations: EM iterations; 0 returns ``estimates`` unchanged.
        epsilon: Regulariser of the mixture covariance.

    Returns:
        complex64 ``(num_stems, num_frames, num_bins, num_channels)``.
    """
    if iterations <= 0:
        return estimates
    num_channels = mixture.shape[-1]
    # Work on a normalised scale so that epsilon means the same thing for quiet and loud chunks.
    scale = tf.maximum(tf.reduce_max(tf.abs(mixture)), 1e-8)
    x = mixture / tf.cast(scale, tf.complex64)
    y = estimates / tf.cast(scale, tf.complex64)
    eye = tf.eye(num_channels, dtype=tf.complex64)
    for _ in range(iterations):
        power = tf.reduce_mean(tf.abs(y) ** 2, axis=-1)  # (J, T, F)
        outer = y[..., :, None] * tf.math.conj(y[..., None, :])  # (J, T, F, C, C)
        covariance = tf.reduce_sum(outer, axis=1) / tf.cast(
            epsilon + tf.reduce_sum(power, axis=1)[..., None, None], tf.complex64
        )  # (J, F, C, C)
        weighted = tf.cast(power[..., None, None], tf.complex64) * covariance[:, None]  # (J, T, F, C, C)
        mixture_covariance = tf.reduce_sum(weighted, axis=0) + tf.cast(epsilon, tf.complex64) * eye
        inverse = tf.linalg.inv(mixture_covariance)  # (T, F, C, C)
        gains = tf.matmul(weighted, inverse[None])  # (J, T, F, C, C)
        y = tf.squeeze(tf.matmul(gains, x[None, ..., None]), axis=-1)
    return y * tf.cast(scale, tf.complex64)
