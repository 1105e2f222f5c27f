"""The U-Net trunk: a magnitude spectrogram in, full-resolution feature maps out."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def build_unet(
    *,
    num_bins: int,
    num_channels: int,
    filters: Sequence[int] = (16, 32, 64, 128, 256, 512),
    kernel_size: int = 5,
    dropout_rate: float = 0.5,
    num_dropout_layers: int = 3,
    leaky_relu_slope: float = 0.2,
    output_filters: int = 8,
    variant: str = "stemtf",
    encoder_activation: str = "leaky_relu",
    decoder_activation: str = "relu",
    name: str = "unet",
) -> keras.Model:
    """Build the functional U-Net trunk (Spleeter geometry by default).

    Every encoder level is a strided 5x5 convolution, batch norm and leaky ReLU; every decoder level a
    strided transposed convolution, ReLU and batch norm, with dropout on the deepest
    ``num_dropout_layers`` levels, concatenated with the encoder level of the same resolution.

    Args:
        num_bins: Frequency bins of the input; a multiple of ``2 ** len(filters)``.
        num_channels: Audio channels of the input.
        filters: Filters of each encoder level; its length is the depth.
        kernel_size: Kernel size of every (transposed) convolution.
        dropout_rate: Dropout rate of the deepest decoder levels.
        num_dropout_layers: How many decoder levels get dropout.
        leaky_relu_slope: Negative slope of the encoder activations.
        output_filters: Feature maps of the output.
        variant: ``stemtf`` (as above) or ``spleeter``: Spleeter 2.4.2's ``apply_unet`` order, where
            the skips and the decoder's input are the encoder convolutions *before* batch norm (so
            the deepest level has no batch norm or activation here: Spleeter computes them and
            discards them), and every skip is concatenated before the upsampled features.
        encoder_activation: ``leaky_relu``, ``relu`` or ``elu`` after every encoder batch norm.
        decoder_activation: ``relu``, ``leaky_relu`` or ``elu`` after every transposed convolution.
        name: The model's name.

    Returns:
        A model from float32 ``(batch, num_frames, num_bins, num_channels)`` magnitudes to
        ``(batch, num_frames, num_bins, output_filters)`` features; ``num_frames`` must be a
        multiple of ``2 ** len(filters)``.
    """
    stride = 2 ** len(filters)
    if num_bins % stride:
        raise ValueError(f"Argument `num_bins` must be a multiple of {stride}. Received num_bins={num_bins}.")
    if not filters:
        raise ValueError(f"Argument `filters` must not be empty. Received filters={filters}.")
    if variant not in ("stemtf", "spleeter"):
        raise ValueError(f"Argument `variant` must be 'stemtf' or 'spleeter'. Received variant={variant!r}.")
    spleeter = variant == "spleeter"
    inputs = keras.Input(shape=(None, num_bins, num_channels), name="magnitude")
    x = inputs
    skips = []
    for level, num_filters in enumerate(filters):
        x = keras.layers.Conv2D(num_filters, kernel_size, strides=2, padding="same", name=f"encoder_conv_{level}")(x)
        if spleeter:
            skips.append(x)
            if level == len(filters) - 1:
                break  # Spleeter feeds the deepest convolution to the decoder as it is
        x = keras.layers.BatchNormalization(name=f"encoder_bn_{level}")(x)
        x = _activation(encoder_activation, leaky_relu_slope, name=f"encoder_act_{level}")(x)
        if not spleeter:
            skips.append(x)
    skips.pop()  # the deepest level feeds the decoder directly
    decoder_filters = list(filters[:-1])[::-1] + [output_filters]
    for level, num_filters in enumerate(decoder_filters):
        x = keras.layers.Conv2DTranspose(
            num_filters, kernel_size, strides=2, padding="same", name=f"decoder_conv_{level}"
        )(x)
        x = _activation(decoder_activation, leaky_relu_slope, name=f"decoder_act_{level}")(x)
        x = keras.layers.BatchNormalization(name=f"decoder_bn_{level}")(x)
        if level < num_dropout_layers:
            x = keras.layers.Dropout(dropout_rate, name=f"decoder_dropout_{level}")(x)
        if skips:
            pair = [skips.pop(), x] if spleeter else [x, skips.pop()]
            x = keras.layers.Concatenate(axis=-1, name=f"decoder_skip_{level}")(pair)
    return keras.Model(inputs, x, name=name)


def _activation(kind: str, leaky_relu_slope: float, *, name: str) -> keras.layers.Layer:
    """The activation layer called ``kind`` (``leaky_relu``, ``relu``, ``elu``: Keras' defaults, as Spleeter's)."""
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=leaky_relu_slope, name=name)
    if kind == "relu":
        return keras.layers.ReLU(name=name)
    if kind == "elu":
        return keras.layers.ELU(name=name)
    raise ValueError(f"Argument `activation` must be 'leaky_relu', 'relu' or 'elu'. Received {kind!r}.")
