"""Contracts of stemtf.train: a toy task learns, checkpoints load and resume, fine-tuning reuses the trunk."""

from __future__ import annotations

import importlib.util
import pathlib

import keras
import numpy as np
import pytest
import soundfile as sf

from stemtf import train
from stemtf.errors import ModelError
from stemtf.model import load_model

from conftest import tiny_config

RATE = 8000
CONFIG = tiny_config(name="toy", stems=("a", "b"), sample_rate=RATE)
FAST = {"num_frames": 16, "batch_size": 4, "learning_rate": 3e-2, "lr_schedule": "constant", "validation_crops": 2}


def write_toy_data(root: pathlib.Path, num_tracks: int = 4, num_samples: int = 8000) -> pathlib.Path:
    """Stem ``a`` plays low notes (150-700 Hz), ``b`` high ones (1100-1900 Hz): learnable from frequency."""
    rng = np.random.default_rng(0)
    note = 400  # samples per note (50 ms)
    t = np.arange(note) / RATE
    for i in range(num_tracks):
        (root / f"song{i}").mkdir(parents=True)
        for stem, band in (("a", (150, 700)), ("b", (1100, 1900))):
            notes = [
                np.sin(2 * np.pi * rng.uniform(*band) * t + rng.uniform(0, 6))[:, None] * rng.uniform(0.05, 0.5, size=2)
                for _ in range(num_samples // note)
            ]
            sf.write(root / f"song{i}" / f"{stem}.wav", np.concatenate(notes).astype(np.float32), RATE, subtype="FLOAT")
    return root


class Snapshot(keras.callbacks.Callback):
    """Record the optimizer step and the mask model's weights when training begins."""

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())
        mask_model = next(layer for layer in self.model.layers if isinstance(layer, keras.Model))
        self.weights = {layer.name: [w.copy() for w in layer.get_weights()] for layer in mask_model.layers if layer.weights}
        self.unet = [w.copy() for w in mask_model.get_layer("unet").get_weights()]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> pathlib.Path:
    return write_toy_data(tmp_path_factory.mktemp("toy") / "data")


@pytest.fixture(scope="module")
def trained(toy_data, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run") / "model"
    seen = []
    result = train.fit(
        CONFIG, toy_data, output_dir=output_dir, steps=80, checkpoint_every=40, seed=0,
        validation_fraction=0.25, progress=lambda step, steps, logs: seen.append((step, steps)), **FAST,
    )
    return result, seen


def test_fit_learns_toy_task_and_writes_loadable_model(trained):
    result, seen = trained
    assert result.step == 80 and [h["step"] for h in result.history] == [40, 80]
    assert seen[0] == (1, 80) and seen[-1] == (80, 80)
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < 0.5 * first["loss"]
    assert last["val_loss"] < 0.5 * first["val_loss"]  # on the held-out track, in inference mode
    assert last["val_a_sdr"] > 10 and last["val_b_sdr"] > 10

    model, config = load_model(result.output_dir)
    assert config == CONFIG
    magnitude = np.random.default_rng(0).uniform(size=(1, 16, 64, 2)).astype(np.float32)
    expected, actual = result.model.predict(magnitude, verbose=0), model.predict(magnitude, verbose=0)
    np.testing.assert_allclose(actual["a"], expected["a"], atol=1e-6)
    assert (result.output_dir / "checkpoint" / "state.json").is_file()
    if importlib.util.find_spec("tensorboard") is not None:
        assert any((result.output_dir / "logs").rglob("*tfevents*"))
    state = train.load_checkpoint_state(result.output_dir)
    assert len(state["train_tracks"]) == 3 and len(state["validation_tracks"]) == 1


def test_resume_continues_from_checkpoint(toy_data, tmp_path):
    output_dir = tmp_path / "model"
    train.fit(CONFIG, toy_data, output_dir=output_dir, steps=6, checkpoint_every=3, tensorboard=False, **FAST)
    saved, _ = load_model(output_dir)
    with pytest.raises(ModelError, match="already holds a training checkpoint"):
        train.fit(CONFIG, toy_data, output_dir=output_dir, steps=9, tensorboard=False, **FAST)
    with pytest.raises(ModelError, match="different config"):
        train.fit(CONFIG.replace(name="other"), toy_data, output_dir=output_dir, steps=9, resume=True, **FAST)
    snapshot = Snapshot()
    result = train.fit(
        CONFIG, toy_data, output_dir=output_dir, steps=9, checkpoint_every=3, resume=True,
        tensorboard=False, callbacks=[snapshot], **FAST,
    )
    assert snapshot.step == 6  # optimizer state (iterations, moments) restored
    for layer in saved.layers:
        for before, after in zip(layer.get_weights(), snapshot.weights.get(layer.name, [])):
            np.testing.assert_array_equal(before, after)
    assert result.step == 9 and [h["step"] for h in result.history] == [3, 6, 9]
    with pytest.raises(ModelError, match="Nothing to resume"):
        train.fit(CONFIG, toy_data, output_dir=tmp_path / "fresh", steps=3, resume=True, **FAST)


def test_fine_tune_to_new_stems_reuses_trunk(trained, toy_data, tmp_path):
    source_dir = trained[0].output_dir
    source, _ = load_model(source_dir)
    new_config = CONFIG.replace(name="toy", stems=["a", "c"])
    data = pathlib.Path(tmp_path / "data")
    for song in sorted(toy_data.iterdir()):  # the same audio, with stem b renamed c
        (data / song.name).mkdir(parents=True)
        (data / song.name / "a.wav").symlink_to(song / "a.wav")
        (data / song.name / "c.wav").symlink_to(song / "b.wav")
    snapshot = Snapshot()
    result = train.fit(
        new_config, data, output_dir=tmp_path / "tuned", steps=3, checkpoint_every=3, from_model=source_dir,
        freeze_encoder=True, tensorboard=False, callbacks=[snapshot], **FAST,
    )
    for expected, actual in zip(source.get_layer("unet").get_weights(), snapshot.unet):
        np.testing.assert_array_equal(expected, actual)
    for expected, actual in zip(source.get_layer("head_a").get_weights(), snapshot.weights["head_a"]):
        np.testing.assert_array_equal(expected, actual)
    trunk = result.model.get_layer("unet")
    for name in ("encoder_conv_0", "encoder_bn_1"):  # frozen: unchanged by training
        for expected, actual in zip(source.get_layer("unet").get_layer(name).get_weights(), trunk.get_layer(name).get_weights()):
            np.testing.assert_array_equal(expected, actual)
    assert not np.array_equal(
        source.get_layer("unet").get_layer("decoder_conv_0").get_weights()[0], trunk.get_layer("decoder_conv_0").get_weights()[0]
    )
    assert load_model(result.output_dir)[1].stems == ("a", "c")


def test_fine_tune_same_stems_continues_and_checks_geometry(trained, toy_data, tmp_path):
    source, _ = load_model(trained[0].output_dir)
    snapshot = Snapshot()
    train.fit(
        CONFIG, toy_data, output_dir=tmp_path / "more", steps=1, from_model=trained[0].output_dir,
        tensorboard=False, callbacks=[snapshot], validation_fraction=0, **FAST,
    )
    for layer in source.layers:
        for expected, actual in zip(layer.get_weights(), snapshot.weights.get(layer.name, [])):
            np.testing.assert_array_equal(expected, actual)
    with pytest.raises(ModelError, match="its max_bins is 64 but the config's is 32"):
        train.fit(CONFIG.replace(max_bins=32, extension_bins=16), toy_data, output_dir=tmp_path / "bad", steps=1,
                  from_model=trained[0].output_dir, **FAST)


def test_bad_arguments(toy_data, tmp_path):
    with pytest.raises(ValueError, match="multiple of 8"):
        train.fit(CONFIG, toy_data, output_dir=tmp_path / "x", steps=1, **{**FAST, "num_frames": 12})


def test_spectrogram_sdr():
    rng = np.random.default_rng(0)
    reference = rng.uniform(size=(2, 8, 4, 2)).astype(np.float32)
    perfect = keras.ops.convert_to_numpy(train.spectrogram_sdr(reference, reference))
    silent = keras.ops.convert_to_numpy(train.spectrogram_sdr(reference, np.zeros_like(reference)))
    scaled = keras.ops.convert_to_numpy(train.spectrogram_sdr(reference, 0.5 * reference, scale_invariant=True))
    assert perfect.shape == (2,) and (perfect > 60).all()
    np.testing.assert_allclose(silent, 0.0, atol=1e-4)
    assert (scaled > 60).all()
    metric = train.SpectrogramSDR()
    metric.update_state(reference, reference + 0.1 * reference)
    np.testing.assert_allclose(float(metric.result()), 20.0, atol=1e-3)
    metric.update_state(np.zeros_like(reference), reference)  # silent references are left out
    np.testing.assert_allclose(float(metric.result()), 20.0, atol=1e-3)
