"""An inference-only form of the masks network that computes the same masks with cheaper ops on LiteRT.

Training keeps :func:`stemtf.model.build_model`'s graph (and its weights file); exports to TFLite use
:func:`inference_model`, which rewrites two parts of it exactly (same weights, same masks to float32
round-off):

- every strided **transposed convolution** of the decoder becomes a regular convolution with four
  times the filters on the coarse grid followed by ``DEPTH_TO_SPACE`` (the "sub-pixel" form: output
  phase ``(p, q)`` of a stride-2 transposed convolution is a small ordinary convolution of its input).
  LiteRT's XNNPACK runs ``TRANSPOSE_CONV`` several times slower than ``CONV_2D`` of the same work;
- the **mask heads** (one 2-channel convolution per stem) become one convolution with all the heads'
  filters, sliced per stem afterwards.

Measured on the shipped 4stems, one 512-frame chunk, LiteRT float32 with 2 threads on a quiet 2-core
machine: 0.358 s as trained, 0.178 s in this form (``benchmarks/model_cost.py --litert`` converts and
times both). The sub-pixel kernels hold zeros (25 of their 36 taps are the transposed kernel's), so
the ``.tflite`` is ~25% larger; four exact per-phase convolutions keep the size but ran 10% slower.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from stemtf.config import ModelConfig
from stemtf.model import RatioMasks, SpleeterMasks

STRIDE = 2


class DepthToSpace(keras.layers.Layer):
    """``(B, H, W, 4C) -> (B, 2H, 2W, C)``: channel block ``(p, q)`` lands on output pixel ``(2i + p, 2j + q)``."""

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, STRIDE)


def _phase_taps(kernel_size: int) -> tuple[int, dict[int, dict[int, int]]]:
    """The input offsets of a stride-2 ``same`` transposed convolution's output phases.

    Keras's ``same`` transposed convolution is the transpose of a ``same`` stride-2 convolution, which
    pads ``kernel_size - 2`` samples, ``(kernel_size - 2) // 2`` of them before. Output sample
    ``2m + p`` is ``sum_k x[i] w[k]`` over ``2i + k - pad_before == 2m + p``, so phase ``p`` reads input
    ``m + d`` with kernel tap ``k = p + pad_before - 2d``.

    Returns:
        ``(lowest offset, {phase: {offset: tap}})``.
    """
    pad_before = max(kernel_size - STRIDE, 0) // 2
    taps = {phase: {} for phase in range(STRIDE)}
    for phase in range(STRIDE):
        for tap in range(kernel_size):
            offset, remainder = divmod(phase + pad_before - tap, STRIDE)
            if not remainder:
                taps[phase][offset] = tap
    low = min(offset for phase in taps.values() for offset in phase)
    return low, taps


def subpixel_weights(kernel: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """A transposed convolution's ``(k, k, out, in)`` kernel as an ordinary one on the coarse grid.

    Returns:
        ``(kernel (n, n, in, 4 * out), bias (4 * out,) or None, pad_before, pad_after)``: convolve the
        input padded by ``pad_before``/``pad_after`` on both spatial axes ("valid"), then
        :class:`DepthToSpace`.
    """
    kernel_size, _, filters, channels = kernel.shape
    low, taps = _phase_taps(kernel_size)
    high = max(offset for phase in taps.values() for offset in phase)
    size = high - low + 1
    weights = np.zeros((size, size, channels, STRIDE, STRIDE, filters), np.float32)
    for row_phase, row_taps in taps.items():
        for column_phase, column_taps in taps.items():
            for row_offset, row_tap in row_taps.items():
                for column_offset, column_tap in column_taps.items():
                    weights[row_offset - low, column_offset - low, :, row_phase, column_phase, :] = kernel[row_tap, column_tap].T
    weights = weights.reshape(size, size, channels, STRIDE * STRIDE * filters)
    tiled = None if bias is None else np.tile(bias, STRIDE * STRIDE).astype(np.float32)
    return weights, tiled, -low, high


def _subpixel(layer: keras.layers.Conv2DTranspose, x):
    if (tuple(layer.strides) != (STRIDE, STRIDE) or layer.padding != "same" or tuple(layer.dilation_rate) != (1, 1)
            or layer.output_padding is not None or layer.data_format != "channels_last"):
        return layer(x)  # not the U-Net's geometry: keep the transposed convolution
    weights = layer.get_weights()
    kernel, bias, before, after = subpixel_weights(weights[0], weights[1] if layer.use_bias else None)
    if before == after:
        padding = "same" if before else "valid"
    else:
        x = keras.layers.ZeroPadding2D(((before, after), (before, after)), name=f"{layer.name}_pad")(x)
        padding = "valid"
    convolution = keras.layers.Conv2D(
        kernel.shape[-1], kernel.shape[:2], padding=padding, use_bias=layer.use_bias,
        activation=None, name=f"{layer.name}_subpixel",
    )
    x = convolution(x)
    convolution.set_weights([kernel] + ([bias] if layer.use_bias else []))
    x = DepthToSpace(name=f"{layer.name}_depth_to_space")(x)
    return layer.activation(x)


def inference_model(model: keras.Model, config: ModelConfig) -> keras.Model:
    """The masks network of ``model`` rewritten for inference (see the module docstring); same inputs and outputs.

    Layers other than the decoder's transposed convolutions and the heads are the model's own
    (shared, not copied); dropout is dropped (inference only). A ``per_stem`` model (Spleeter's
    layout) gets every trunk rewritten; its heads read different features, so they stay apart.
    """
    inputs = keras.Input(shape=(None, config.max_bins, config.num_channels), name="magnitude")
    if config.trunk == "shared":
        shared = _rewritten_trunk(model.get_layer("unet"), inputs)
        features = [shared] * len(config.stems)
    else:  # each trunk its own nested model: the trunks' layers share names
        features = []
        for stem in config.stems:
            trunk = model.get_layer(f"unet_{stem}")
            trunk_inputs = keras.Input(shape=(None, config.max_bins, config.num_channels), name=f"{trunk.name}_magnitude")
            rewritten = keras.Model(trunk_inputs, _rewritten_trunk(trunk, trunk_inputs), name=f"{trunk.name}_inference")
            features.append(rewritten(inputs))
    heads = [model.get_layer(f"head_{stem}") for stem in config.stems]
    first = heads[0]
    shared_keys = ("kernel_size", "strides", "dilation_rate", "padding", "activation", "use_bias")
    same_input = config.trunk == "shared"
    if same_input and all(getattr(head, key) == getattr(first, key) for head in heads for key in shared_keys) and first.use_bias:
        merged = keras.layers.Conv2D(
            sum(head.filters for head in heads), first.kernel_size, strides=first.strides,
            dilation_rate=first.dilation_rate, padding=first.padding, activation=first.activation, name="heads",
        )
        stacked = merged(features[0])
        merged.set_weights([
            np.concatenate([head.get_weights()[0] for head in heads], axis=-1),
            np.concatenate([head.get_weights()[1] for head in heads]),
        ])
        bounds = np.cumsum([0] + [head.filters for head in heads])
        masks = [stacked[..., start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
    else:  # heads of different shapes or inputs: each keeps its own convolution
        masks = [head(stem_features) for head, stem_features in zip(heads, features)]
    ratio = model.get_layer("ratio_masks")
    if isinstance(ratio, SpleeterMasks):
        masks = SpleeterMasks(
            separation_exponent=ratio.separation_exponent, epsilon=ratio.epsilon, exponent=ratio.exponent,
            softmax=ratio.softmax, name="ratio_masks",
        )([inputs, *masks])
    else:
        masks = RatioMasks(epsilon=ratio.epsilon, exponent=ratio.exponent, name="ratio_masks")(masks)
    outputs = {stem: keras.layers.Identity(name=stem)(mask) for stem, mask in zip(config.stems, masks)}
    return keras.Model(inputs, outputs, name=f"{config.name}_inference")


def _rewritten_trunk(trunk: keras.Model, inputs):
    """``trunk``'s graph re-run layer by layer on ``inputs``: no dropout, transposed convolutions in sub-pixel form."""
    tensors = {id(trunk.input): inputs}
    for layer in trunk.layers[1:]:
        arguments = [tensors[id(tensor)] for tensor in _inputs_of(layer)]
        if isinstance(layer, keras.layers.Dropout):
            output = arguments[0]
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            output = _subpixel(layer, arguments[0])
        else:
            output = layer(arguments if len(arguments) > 1 else arguments[0])
        tensors[id(layer.output)] = output
    return tensors[id(trunk.output)]


def _inputs_of(layer: keras.layers.Layer) -> list:
    tensors = layer.input
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
