"""Contracts of stemtf.train: a toy task learns, checkpoints load and resume, fine-tuning reuses the trunk."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest
import soundfile as sf

from stemtf import train
from stemtf.errors import ModelError
from stemtf.model import load_model, save_model

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


@pytest.mark.slow
def test_resume_continues_from_checkpoint(toy_data, tmp_path):
    output_dir = tmp_path / "model"
    train.fit(CONFIG, toy_data, output_dir=output_dir, steps=6, checkpoint_every=3, tensorboard=False, **FAST)
    saved, _ = load_model(output_dir)
    with pytest.raises(ModelError, match="already holds a training checkpoint"):
        train.fit(CONFIG, toy_data, output_dir=output_dir, steps=9, tensorboard=False, **FAST)
    with pytest.raises(ModelError, match="different config"):
        train.fit(CONFIG.replace(name="other"), toy_data, output_dir=output_dir, steps=9, resume=True, **FAST)
    # A checkpoint written before a config key existed (here mask_exponent) resumes: the key takes its default.
    state_path = output_dir / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    del state["config"]["mask_exponent"]
    state_path.write_text(json.dumps(state))
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_fine_tune_keeps_the_source_mask_calibration(trained, toy_data, tmp_path):
    source_dir = tmp_path / "calibrated"
    model, config = load_model(trained[0].output_dir)
    save_model(model, config.replace(mask_exponent=0.4), source_dir)
    kept = train.fit(CONFIG, toy_data, output_dir=tmp_path / "kept", steps=1, from_model=source_dir,
                     tensorboard=False, validation_fraction=0, **FAST)
    assert kept.config.mask_exponent == 0.4 and load_model(kept.output_dir)[1].mask_exponent == 0.4
    own = train.fit(CONFIG.replace(mask_exponent=0.7), toy_data, output_dir=tmp_path / "own", steps=1,
                    from_model=source_dir, tensorboard=False, validation_fraction=0, **FAST)
    assert own.config.mask_exponent == 0.7
    # Resuming with another calibration is allowed: training never uses it.
    again = train.fit(CONFIG.replace(mask_exponent=0.5), toy_data, output_dir=tmp_path / "own", steps=2, resume=True,
                      tensorboard=False, validation_fraction=0, **FAST)
    assert again.step == 2 and again.config.mask_exponent == 0.5


def test_per_stem_calibration_carries_to_a_fine_tune_with_other_stems():
    from stemtf.config import from_dict
    from stemtf.train.models import inherited_mask_exponent

    source = from_dict({"stems": ["vocals", "drums", "bass", "other"],
                        "mask_exponent": {"vocals": 0.35, "drums": 0.5, "bass": 0.25, "other": 0.4}})
    target = from_dict({"stems": ["vocals", "drums", "bass", "piano", "other"]})
    inherited = inherited_mask_exponent(source, target.stems)
    assert inherited == {"vocals": 0.35, "drums": 0.5, "bass": 0.25, "piano": 0.375, "other": 0.4}
    assert target.replace(mask_exponent=inherited).stem_mask_exponents == (0.35, 0.5, 0.25, 0.375, 0.4)
    assert inherited_mask_exponent(source.replace(mask_exponent=0.5), target.stems) == 0.5


def test_bad_arguments(toy_data, tmp_path):
    with pytest.raises(ValueError, match="multiple of 8"):
        train.fit(CONFIG, toy_data, output_dir=tmp_path / "x", steps=1, **{**FAST, "num_frames": 12})
    with pytest.raises(ValueError, match="^`lr_schedule` must be one of constant, cosine. Received 'steps'.$"):
        train.fit(CONFIG, toy_data, output_dir=tmp_path / "x", steps=1, **{**FAST, "lr_schedule": "steps"})
    with pytest.raises(ValueError, match="^`warmup_steps` must be >= 0. Received -1.$"):
        train.fit(CONFIG, toy_data, output_dir=tmp_path / "x", steps=1, **{**FAST, "lr_schedule": "cosine"}, warmup_steps=-1)
    with pytest.raises(ValueError, match="^`schedule` must be one of"):
        train.learning_rate_schedule(1e-3, steps=10, schedule="linear")
    assert not (tmp_path / "x").exists()  # nothing written


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


# Partly labelled data: per-output sample weights, sums of stems, per-stem loss weights.

THREE = tiny_config(name="three", stems=("a", "b", "c"), sample_rate=RATE)


def _compiled(stems=("a", "b", "c"), sums=(("b", "c"),), stem_weights=None):
    from stemtf.model import build_model

    keras.utils.set_random_seed(0)
    train_model = train.training_model(build_model(THREE), stems, sums)
    train_model.compile(loss=train.stem_losses(stems, sums), loss_weights=train.objective.loss_weights(stems, stem_weights, sums),
                        weighted_metrics=train.stem_metrics(stems))
    return train_model


def _batch(seed=0, batch=3):
    rng = np.random.default_rng(seed)
    shape = (batch, 16, 64, 2)
    x = rng.uniform(size=shape).astype(np.float32)
    y = {name: rng.uniform(size=shape).astype(np.float32) for name in ("a", "b", "c", "b.c")}
    w = {name: np.ones((batch, 1, 1), np.float32) for name in y}
    return x, y, w


def _loss_and_gradients(train_model, x, y, w):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y_pred = train_model(x, training=False)
        loss = train_model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=w, training=False)
    return float(loss), [g.numpy() for g in tape.gradient(loss, train_model.trainable_variables)]


def test_unknown_stem_adds_no_loss_and_no_gradient():
    train_model = _compiled()
    x, y, w = _batch()
    w["b"][1] = 0  # example 1 does not label b: whatever its target holds must not matter
    garbage = {**y, "b": y["b"].copy()}
    garbage["b"][1] = 1000 * np.random.default_rng(5).standard_normal(garbage["b"][1].shape)
    loss, gradients = _loss_and_gradients(train_model, x, y, w)
    loss_garbage, gradients_garbage = _loss_and_gradients(train_model, x, garbage, w)
    assert loss == pytest.approx(loss_garbage, rel=1e-6)
    for expected, actual in zip(gradients, gradients_garbage):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)
    w["b"][1] = 1  # labelled, the garbage would dominate
    assert _loss_and_gradients(train_model, x, garbage, w)[0] > 10 * loss


def test_sum_loss_is_the_l1_of_the_summed_estimates():
    train_model = _compiled()
    x, y, w = _batch(1)
    for name in ("a", "b", "c"):
        w[name][:] = 0  # only the sum counts
    w["b.c"][2] = 0  # example 2 has no b+c
    y_pred = {name: np.asarray(value) for name, value in train_model(x, training=False).items()}
    np.testing.assert_allclose(y_pred["b.c"], y_pred["b"] + y_pred["c"], rtol=1e-6)  # the sum of mask * mixture
    per_example = np.abs(y_pred["b"] + y_pred["c"] - y["b.c"]).mean(axis=(1, 2, 3))
    expected = (per_example * w["b.c"].ravel()).sum() / 3  # Keras divides by the whole batch
    loss, _ = _loss_and_gradients(train_model, x, y, w)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_stem_weights_scale_each_stem_loss():
    x, y, w = _batch(2)
    y, w = ({name: d[name] for name in ("a", "b", "c")} for d in (y, w))
    plain, _ = _loss_and_gradients(_compiled(sums=()), x, y, w)
    weighted, _ = _loss_and_gradients(_compiled(sums=(), stem_weights={"a": 3.0, "c": 0.0}), x, y, w)
    y_pred = {name: np.asarray(v) for name, v in _compiled(sums=())(x, training=False).items()}
    l1 = {name: np.abs(y_pred[name] - y[name]).mean() for name in ("a", "b", "c")}
    assert plain == pytest.approx(sum(l1.values()), rel=1e-5)
    assert weighted == pytest.approx(3 * l1["a"] + l1["b"], rel=1e-5)


def test_sdr_metric_leaves_out_zero_weighted_examples():
    rng = np.random.default_rng(0)
    reference = rng.uniform(size=(2, 8, 4, 2)).astype(np.float32)
    estimate = reference + 0.1 * reference
    estimate[1] = 0  # a bad estimate of an example whose track does not label the stem
    metric = train.SpectrogramSDR()
    metric.update_state(reference, estimate, sample_weight=np.array([1, 0], np.float32).reshape(2, 1, 1))
    np.testing.assert_allclose(float(metric.result()), 20.0, atol=1e-3)


def write_partial_data(root: pathlib.Path) -> pathlib.Path:
    """The toy songs as a CSV: song0's b unknown (its mixture given), song1's b known only in the sum b+c, the rest labelled."""
    songs = write_toy_data(root / "audio", num_tracks=4)
    rows = ["mixture_path,a_path,b_path,c_path,b+c_path"]
    rows.append("audio/song0/mix.wav,audio/song0/a.wav,?,,")  # b unknown
    rows.append(",audio/song1/a.wav,,,audio/song1/b.wav")  # b and c known only together (c is silent here)
    rows.append(",audio/song2/a.wav,audio/song2/b.wav,,")
    rows.append(",audio/song3/a.wav,audio/song3/b.wav,,")
    a, rate = sf.read(songs / "song0" / "a.wav", dtype="float32")
    b, _ = sf.read(songs / "song0" / "b.wav", dtype="float32")
    sf.write(songs / "song0" / "mix.wav", a + b, rate, subtype="FLOAT")
    (root / "parts.csv").write_text("\n".join(rows) + "\n")
    return root / "parts.csv"


@pytest.mark.slow
def test_fit_on_partly_labelled_tracks_logs_the_sum_and_skips_unknown_stems(tmp_path):
    manifest = write_partial_data(tmp_path)
    result = train.fit(
        THREE, manifest, output_dir=tmp_path / "model", steps=2, checkpoint_every=2, tensorboard=False,
        validation_tracks=["line 3"], stem_weights={"a": 2}, **FAST,
    )
    (logs,) = result.history
    assert {"b.c_loss", "val_b.c_loss", "val_a_sdr", "loss"} <= set(logs)
    assert all(np.isfinite(value) for value in logs.values())
    assert train.load_checkpoint_state(result.output_dir)["stem_weights"] == {"a": 2.0}
    with pytest.raises(ValueError, match="`stem_weights` names 'z'"):
        train.fit(THREE, manifest, output_dir=tmp_path / "x", steps=1, stem_weights={"z": 1}, **FAST)
    with pytest.raises(ValueError, match="`stem_weights` are all 0"):
        train.fit(THREE, manifest, output_dir=tmp_path / "x", steps=1, stem_weights={"a": 0, "b": 0, "c": 0}, **FAST)


def test_run_directory_errors_name_keywords_in_the_library_and_flags_on_the_cli(tmp_path):
    """check_output_dir's errors say `resume`/`overwrite`/`output_dir`; for_cli() (what the CLI prints) says the flags."""
    from stemtf.train.checkpoints import check_output_dir

    def error(output_dir, **keywords) -> ModelError:
        with pytest.raises(ModelError) as raised:
            check_output_dir(output_dir, CONFIG, **{"resume": False, "overwrite": False, **keywords})
        assert "--" not in str(raised.value), str(raised.value)
        return raised.value

    both = error(tmp_path, resume=True, overwrite=True)
    assert str(both) == "Pass either `resume` or `overwrite`, not both." and both.for_cli() == "Pass either --resume or --overwrite, not both."
    nothing = error(tmp_path / "fresh", resume=True)
    assert str(nothing).endswith("; drop `resume`.") and nothing.for_cli().endswith("; drop --resume.")
    shipped = tmp_path / "shipped"
    from stemtf.model import build_model

    save_model(build_model(CONFIG), CONFIG, shipped)
    holds = error(shipped)
    assert str(holds).endswith("pass `overwrite` to replace it, or choose another `output_dir`.")
    assert holds.for_cli().endswith("pass --overwrite to replace it, or choose another --output-dir.")
    (shipped / "checkpoint").mkdir()
    (shipped / "checkpoint" / "state.json").write_text(json.dumps({"step": 3, "config": CONFIG.to_dict()}))
    checkpoint = error(shipped)
    assert "(step 3); pass `resume` to continue it, `overwrite` to start again, or choose another `output_dir`." in str(checkpoint)
    assert "pass --resume to continue it, --overwrite to start again, or choose another --output-dir." in checkpoint.for_cli()
