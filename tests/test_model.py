import numpy as np
import pytest

from stemtf.config import UNetConfig
from stemtf.errors import ModelError
from stemtf.model import build_model, load_model, save_model
from stemtf.unet import build_unet

from conftest import tiny_config


def test_masks_have_input_shape_and_sum_to_one(tiny_model):
    model, config = tiny_model
    magnitude = np.random.default_rng(0).uniform(0, 3, (2, 64, config.max_bins, 2)).astype(np.float32)
    masks = model(magnitude, training=False)
    assert sorted(masks) == sorted(config.stems)
    for mask in masks.values():
        assert mask.shape == magnitude.shape
        assert float(np.min(mask)) >= 0.0 and float(np.max(mask)) <= 1.0
    np.testing.assert_allclose(sum(np.asarray(m) for m in masks.values()), 1.0, atol=1e-5)



def test_mask_exponent_softens_masks_at_inference_only(tiny_model):
    model, config = tiny_model
    softer = build_model(config.replace(mask_exponent=0.5))
    softer.set_weights(model.get_weights())
    magnitude = np.random.default_rng(1).uniform(0, 3, (1, 64, config.max_bins, 2)).astype(np.float32)
    plain = {k: np.asarray(v, np.float64) for k, v in model(magnitude, training=False).items()}
    soft = {k: np.asarray(v, np.float64) for k, v in softer(magnitude, training=False).items()}
    total = sum(np.sqrt(m) for m in plain.values())  # ratios of sigmoids: m^a / sum m^a is the same from either
    for stem in config.stems:
        np.testing.assert_allclose(soft[stem], np.sqrt(plain[stem]) / total, atol=1e-5)
    assert max(float(np.max(np.abs(soft[s] - plain[s]))) for s in config.stems) > 0.01
    # Training sees the masks as trained (without dropout, so that the two calls compare).
    no_dropout = config.replace(unet={**config.to_dict()["unet"], "dropout_rate": 0.0})
    trained, trained_soft = build_model(no_dropout), build_model(no_dropout.replace(mask_exponent=0.5))
    trained_soft.set_weights(trained.get_weights())
    a, b = trained(magnitude, training=True), trained_soft(magnitude, training=True)
    for stem in config.stems:
        np.testing.assert_allclose(np.asarray(a[stem]), np.asarray(b[stem]), atol=1e-6)


def test_mask_exponent_is_checked():
    from stemtf.errors import ConfigError

    with pytest.raises(ConfigError, match="`mask_exponent` must be between 0.05 and 8"):
        tiny_config(mask_exponent=0.0)
    with pytest.raises(ConfigError, match="`mask_exponent`"):
        tiny_config(mask_exponent=float("nan"))
    with pytest.raises(ConfigError, match="`mask_exponent` misses stem 'drums'"):
        tiny_config(mask_exponent={"vocals": 0.5, "other": 0.5})
    with pytest.raises(ConfigError, match="`mask_exponent` names unknown stem 'bass'"):
        tiny_config(mask_exponent={"vocals": 0.5, "drums": 0.5, "other": 0.5, "bass": 0.5})
    with pytest.raises(ConfigError, match="one value per stem"):
        tiny_config(mask_exponent=[0.5, 0.5])
    with pytest.raises(ConfigError, match="between 0.05 and 8. Received 9"):
        tiny_config(mask_exponent={"vocals": 0.5, "drums": 9, "other": 0.5})


def test_mask_exponent_per_stem_round_trips_and_collapses():
    from stemtf.config import from_dict

    config = tiny_config(mask_exponent={"other": 1, "drums": 0.5, "vocals": 0.25})
    assert config.mask_exponent == (0.25, 0.5, 1.0) and config.stem_mask_exponents == (0.25, 0.5, 1.0)
    assert config.to_dict()["mask_exponent"] == {"vocals": 0.25, "drums": 0.5, "other": 1.0}
    assert from_dict(config.to_dict()) == config == tiny_config(mask_exponent=[0.25, 0.5, 1])
    same = tiny_config(mask_exponent={"vocals": 0.5, "drums": 0.5, "other": 0.5})
    assert same.mask_exponent == 0.5 and same == tiny_config(mask_exponent=0.5)
    assert same.to_dict()["mask_exponent"] == 0.5 and tiny_config().stem_mask_exponents == (1.0, 1.0, 1.0)


def test_per_stem_mask_exponents_calibrate_each_stem(tiny_model):
    model, config = tiny_model
    import keras

    exponents = {"vocals": 0.25, "drums": 2.0, "other": 1.0}
    calibrated = build_model(config.replace(mask_exponent=exponents))
    calibrated.set_weights(model.get_weights())
    magnitude = np.random.default_rng(2).uniform(0, 3, (1, 64, config.max_bins, 2)).astype(np.float32)
    # each stem's own exponent applies to its sigmoid head (so it is not a power of the uniform ratio)
    heads = keras.Model(model.input, [model.get_layer(f"head_{stem}").output for stem in config.stems])
    sigmoids = [np.asarray(h, np.float64) + 1e-7 for h in heads(magnitude, training=False)]
    got = {k: np.asarray(v, np.float64) for k, v in calibrated(magnitude, training=False).items()}
    powered = {stem: s ** exponents[stem] for stem, s in zip(config.stems, sigmoids)}
    total = sum(powered.values())
    for stem in config.stems:
        np.testing.assert_allclose(got[stem], powered[stem] / total, atol=1e-5)

def test_unet_geometry_and_stable_names():
    trunk = build_unet(num_bins=64, num_channels=2, filters=(4, 8, 16), num_dropout_layers=2, output_filters=3)
    assert trunk.output_shape == (None, None, 64, 3)
    names = [layer.name for layer in trunk.layers]
    assert [n for n in names if n.startswith("encoder_conv")] == ["encoder_conv_0", "encoder_conv_1", "encoder_conv_2"]
    assert [n for n in names if n.startswith("decoder_dropout")] == ["decoder_dropout_0", "decoder_dropout_1"]
    with pytest.raises(ValueError, match="multiple of 8"):
        build_unet(num_bins=60, num_channels=2, filters=(4, 8, 16))


def test_default_geometry_is_spleeters():
    trunk = build_unet(num_bins=1024, num_channels=2)
    convs = [layer for layer in trunk.layers if layer.name.startswith("encoder_conv")]
    assert [layer.filters for layer in convs] == [16, 32, 64, 128, 256, 512]
    assert all(layer.kernel_size == (5, 5) and layer.strides == (2, 2) for layer in convs)
    assert 9.5e6 < trunk.count_params() < 10.0e6


def test_one_head_per_stem_shares_the_trunk():
    config = tiny_config(stems=("a", "b", "c", "d"))
    model = build_model(config)
    heads = [layer for layer in model.layers if layer.name.startswith("head_")]
    assert [h.name for h in heads] == ["head_a", "head_b", "head_c", "head_d"]
    assert len([layer for layer in model.layers if layer.name == "unet"]) == 1


def test_distinct_layers_start_with_distinct_weights():
    # Keras 3 seeded initialisers repeat themselves; heads of one model must differ.
    model = build_model(tiny_config())
    kernels = [model.get_layer(f"head_{stem}").kernel.numpy() for stem in ("vocals", "drums")]
    assert not np.allclose(kernels[0], kernels[1])


def test_save_load_gives_same_outputs(tmp_path, tiny_model):
    model, config = tiny_model
    save_model(model, config, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.weights.h5"]
    loaded, loaded_config = load_model(tmp_path / "m")
    assert loaded_config == config
    magnitude = np.random.default_rng(2).uniform(0, 2, (1, 64, config.max_bins, 2)).astype(np.float32)
    expected, actual = model(magnitude, training=False), loaded(magnitude, training=False)
    for stem in config.stems:
        np.testing.assert_array_equal(expected[stem], actual[stem])


def test_missing_and_broken_weights_are_clear(tmp_path, tiny_model):
    model, config = tiny_model
    directory = save_model(model, config, tmp_path / "m")
    (directory / "model.weights.h5").unlink()
    with pytest.raises(ModelError, match="has no trained weights"):
        load_model(directory)
    (directory / "model.weights.h5").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="Cannot load weights"):
        load_model(directory)
    other = tiny_config(unet=UNetConfig(filters=(8, 8, 8), head_filters=2))
    save_model(build_model(other), other, tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(ModelError, match="Cannot load weights"):
        load_model(tmp_path / "other")


def test_float16_weights_on_disk_load_as_float32(tmp_path, tiny_model):
    model, config = tiny_model
    full = save_model(model, config, tmp_path / "f32") / "model.weights.h5"
    half = save_model(model, config, tmp_path / "f16", weights_dtype="float16") / "model.weights.h5"
    import h5py

    def float_dtypes(path):
        found = set()
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda name, item: found.add(str(item.dtype)) if isinstance(item, h5py.Dataset) else None)
        return found

    assert float_dtypes(full) == {"float32"} and float_dtypes(half) == {"float16"}
    loaded, _ = load_model(tmp_path / "f16")
    assert all(w.dtype == "float32" for w in loaded.weights)
    magnitude = np.random.default_rng(3).uniform(0, 2, (1, 64, config.max_bins, 2)).astype(np.float32)
    expected, actual = model(magnitude, training=False), loaded(magnitude, training=False)
    for stem in config.stems:
        np.testing.assert_allclose(actual[stem], expected[stem], atol=1e-3)
    with pytest.raises(ValueError, match="weights_dtype"):
        save_model(model, config, tmp_path / "x", weights_dtype="int8")
