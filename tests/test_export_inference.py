"""The inference form of the masks network (stemtf.export.inference): the same masks, cheaper LiteRT ops."""

import keras
import numpy as np
import pytest

from stemtf import export
from stemtf.config import UNetConfig
from stemtf.export.inference import DepthToSpace, inference_model, subpixel_weights
from stemtf.model import build_model

from conftest import tiny_config


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("use_bias", [True, False])
def test_subpixel_convolution_equals_the_transposed_convolution(kernel_size, use_bias):
    rng = np.random.default_rng(kernel_size)
    inputs = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)  # odd, unequal sizes: the borders count
    transposed = keras.layers.Conv2DTranspose(4, kernel_size, strides=2, padding="same", use_bias=use_bias)
    transposed.build(inputs.shape)
    if use_bias:  # a non-zero bias (it starts at zero)
        transposed.set_weights([transposed.get_weights()[0], rng.standard_normal(4).astype(np.float32)])
    expected = np.asarray(transposed(inputs))
    weights = transposed.get_weights()
    kernel, bias, before, after = subpixel_weights(weights[0], weights[1] if use_bias else None)
    padded = np.pad(inputs, ((0, 0), (before, after), (before, after), (0, 0)))
    convolution = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], padding="valid", use_bias=use_bias)
    convolution.build(padded.shape)
    convolution.set_weights([kernel] + ([bias] if use_bias else []))
    actual = np.asarray(DepthToSpace()(convolution(padded)))
    assert actual.shape == expected.shape == (2, 10, 14, 4)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"stems": ("vocals", "accompaniment"), "num_channels": 1, "mask_exponent": 0.5},
        {"unet": UNetConfig(filters=(4, 8, 16, 32), kernel_size=4, head_filters=3),
         "mask_exponent": {"vocals": 0.35, "drums": 0.5, "other": 1.0}},
        {"unet": UNetConfig(filters=(4, 8), kernel_size=3, head_filters=2, num_dropout_layers=1), "max_bins": 32},
    ],
    ids=["tiny", "mono-2stems", "kernel-4", "kernel-3"],
)
def test_inference_model_computes_the_same_masks(changes):
    keras.utils.set_random_seed(3)
    config = tiny_config(**changes)
    model = build_model(config)
    for layer in model.layers[1].layers:  # non-trivial batch statistics, as in a trained model
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    fast = inference_model(model, config)
    magnitude = np.abs(np.random.default_rng(0).standard_normal((2, 32, config.max_bins, config.num_channels))).astype(np.float32)
    expected, actual = model(magnitude, training=False), fast(magnitude, training=False)
    assert sorted(actual) == sorted(config.stems)
    for stem in config.stems:
        np.testing.assert_allclose(np.asarray(actual[stem]), np.asarray(expected[stem]), atol=2e-6, err_msg=stem)
    kinds = {type(layer).__name__ for layer in fast.layers}
    assert "Conv2DTranspose" not in kinds and "Dropout" not in kinds


def test_exported_tflite_runs_no_transposed_convolution_and_no_pow(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    config = tiny_config(mask_exponent=0.35)
    model = build_model(config)
    path = export.export_tflite(model, config, tmp_path / "masks.tflite", kind="masks")
    interpreter = Interpreter(model_path=str(path))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "DEPTH_TO_SPACE" in ops and "CONV_2D" in ops
    assert not ops & {"TRANSPOSE_CONV", "POW"}, ops
