"""Distillation: the student's config, unlabelled audio as tracks, the teacher's targets, and `stemtf distill`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, music_like, tiny_config
from stemtf.errors import DataError, OptionError


@pytest.fixture
def music_folder(tmp_path):
    """Two unlabelled 1.5 s songs, one in a sub-folder, and a text file that is not audio."""
    root = tmp_path / "music"
    (root / "album").mkdir(parents=True)
    sf.write(root / "a.wav", music_like(int(1.5 * SAMPLE_RATE), seed=1), SAMPLE_RATE)
    sf.write(root / "album" / "b.flac", music_like(int(1.5 * SAMPLE_RATE), seed=2), SAMPLE_RATE)
    (root / "notes.txt").write_text("not audio")
    return root


def test_student_config_narrows_the_trunk_and_keeps_the_geometry():
    from stemtf.train.distill import student_config

    teacher = tiny_config(mask_exponent={"vocals": 0.35, "drums": 0.5, "other": 0.25}, mask_extension="edge")
    student = student_config(teacher, trunk_width=0.5)
    assert student.unet.filters == (2, 4, 8) and student.name == "tiny-lite"
    assert (student.stems, student.n_fft, student.hop_length, student.max_bins, student.segment_frames) == (
        teacher.stems, teacher.n_fft, teacher.hop_length, teacher.max_bins, teacher.segment_frames)
    # The targets are the teacher's calibrated stems: the student ships uncalibrated, with the teacher's extension.
    assert student.mask_exponent == 1.0 and student.mask_extension == "edge"
    assert student.trunk == "shared" and student.masks == "ratio"
    assert student_config(teacher, filters=[3, 5, 7], name="mine").unet.filters == (3, 5, 7)
    assert student.unet.head_filters == teacher.unet.head_filters and student_config(teacher, head_filters=1).unet.head_filters == 1
    assert student.unet.dropout_rate == teacher.unet.dropout_rate and student_config(teacher, dropout_rate=0).unet.dropout_rate == 0.0


@pytest.mark.parametrize("kwargs, match", [({"trunk_width": 0}, "trunk_width"), ({"trunk_width": float("nan")}, "trunk_width"),
                                            ({"filters": [4, 0, 8]}, "filters"), ({"filters": []}, "filters"),
                                            ({"head_filters": 0}, "head_filters"), ({"head_filters": 2.5}, "head_filters"),
                                            ({"kernel_size": 0}, "kernel_size"), ({"dropout_rate": 1.0}, "dropout_rate"),
                                            ({"dropout_rate": float("nan")}, "dropout_rate")])
def test_student_config_rejects_bad_sizes(kwargs, match):
    from stemtf.train.distill import student_config

    with pytest.raises(OptionError, match=match):
        student_config(tiny_config(), **kwargs)


def test_audio_tracks_finds_files_folders_and_globs(music_folder):
    from stemtf.train.distill import audio_tracks

    tracks = audio_tracks([music_folder], stems=("vocals", "drums", "other"))
    assert sorted(t.name.rsplit("/", 1)[-1] for t in tracks) == ["a.wav", "b.flac"]
    track = tracks[0]
    assert [len(files) for files in track.stems.values()] == [1, 0, 0] and track.num_samples == int(1.5 * SAMPLE_RATE)
    assert len(audio_tracks([str(music_folder / "**" / "*.flac"), music_folder / "a.wav"], stems=("a", "b"))) == 2
    with pytest.raises(DataError, match="does not exist"):
        audio_tracks([music_folder / "missing.wav"], stems=("a", "b"))
    with pytest.raises(DataError, match="No audio files"):
        audio_tracks([music_folder / "notes.txt"], stems=("a", "b"))


def test_training_targets_are_the_teachers_stems(tiny_model_dir, music_folder):
    """The batches the student trains on hold the teacher's mask * mixture, not the pipeline's stems."""
    from stemtf.model import load_model
    from stemtf.train.distill import audio_tracks, student_config, teacher_targets
    from stemtf.train.datasets import training_datasets

    teacher, teacher_config = load_model(tiny_model_dir)
    config = student_config(teacher_config)
    tracks = audio_tracks([music_folder], stems=config.stems)
    targets = teacher_targets(teacher, config.stems, max_bins=config.max_bins)
    train, _ = training_datasets(config, tracks, [], num_frames=config.segment_frames, batch_size=2, augmentation=None,
                                 seed=0, first_example=0, validation_crops=1, targets=targets)
    plain, _ = training_datasets(config, tracks, [], num_frames=config.segment_frames, batch_size=2, augmentation=None,
                                 seed=0, first_example=0, validation_crops=1)
    mixture, stems = next(iter(train))
    plain_mixture, plain_stems = next(iter(plain))
    np.testing.assert_array_equal(mixture.numpy(), plain_mixture.numpy())
    masks = teacher(mixture, training=False)
    for stem in config.stems:
        np.testing.assert_allclose(stems[stem].numpy(), (masks[stem] * mixture).numpy(), rtol=1e-5, atol=1e-6)
    # Without the teacher the first stem is the whole recording: the targets really were replaced.
    np.testing.assert_allclose(plain_stems["vocals"].numpy(), plain_mixture.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(stems["vocals"].numpy() - plain_mixture.numpy()).max() > 1e-3
    total = sum(stems[stem].numpy() for stem in config.stems)
    np.testing.assert_allclose(total, mixture.numpy(), rtol=1e-4, atol=1e-5)  # ratio masks: stems sum to the mixture


def test_distill_writes_a_student_that_resumes_and_validates(tiny_model_dir, music_folder, stem_folder, tmp_path):
    from stemtf.model import load_model
    from stemtf.train.distill import distill

    out = tmp_path / "lite"
    result = distill(tiny_model_dir, [music_folder], output_dir=out, steps=2, batch_size=2, checkpoint_every=2,
                     validation_data=stem_folder, stem_groups={"other": ["other", "piano"]}, tensorboard=False)
    assert result.step == 2 and any("val_vocals_sdr" in entry for entry in result.history)
    student, config = load_model(out)
    assert config.unet.filters == (2, 4, 8) and student.count_params() < load_model(tiny_model_dir)[0].count_params() / 2
    again = distill(tiny_model_dir, [music_folder], output_dir=out, steps=4, batch_size=2, checkpoint_every=2,
                    resume=True, tensorboard=False)
    assert again.step == 4
    with pytest.raises(Exception, match="already holds"):
        distill(tiny_model_dir, [music_folder], output_dir=out, steps=4, batch_size=2, tensorboard=False)


def test_cli_distill(tiny_model_dir, music_folder, tmp_path, capsys):
    from stemtf.cli import main

    out = tmp_path / "student"
    assert main(["distill", str(tiny_model_dir), "--audio", str(music_folder), "-o", str(out), "--steps", "2",
                 "--batch-size", "2", "--checkpoint-every", "2", "--filters", "2,2,4", "--head-filters", "1",
                 "--dropout-rate", "0", "--log-every", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["unet"]["filters"] == [2, 2, 4] and config["unet"]["head_filters"] == 1 and config["unet"]["dropout_rate"] == 0
    captured = capsys.readouterr()  # stderr is no terminal here: a line per --log-every steps instead of the bar
    assert re.search(r"^step 1/2  loss \d+\.\d{4}  \d+ s$", captured.err, re.M) and re.search(r"^step 2/2 ", captured.err, re.M)
    assert "Distilled " in captured.out and str(out) in captured.out


@pytest.mark.parametrize("args, message", [
    (["--audio", "{missing}"], "does not exist"),
    (["--audio", "{music}", "--filters", "8,x"], "--filters must be integers"),
    (["--audio", "{music}", "--trunk-width", "0"], "--trunk-width must be in (0, 4]"),
    (["--audio", "{music}", "--steps", "0"], "--steps must be >= 1"),
    (["--audio", "{music}", "--head-filters", "0"], "--head-filters must be a positive integer"),
    (["--audio", "{music}", "--dropout-rate", "1"], "--dropout-rate must be in [0, 1)"),
    (["--audio", "{music}", "--teacher-targets", "later"], "--teacher-targets must be one of online, cached"),
])
def test_cli_distill_bad_input_is_one_line(tiny_model_dir, music_folder, tmp_path, capsys, args, message):
    from stemtf.cli import main

    args = [a.format(missing=tmp_path / "nothing", music=music_folder) for a in args]
    assert main(["distill", str(tiny_model_dir), "-o", str(tmp_path / "out"), *args]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stemtf: error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def _silenced_teacher(teacher, teacher_config, config):
    """A copy of the teacher whose channels the student drops output zero (batch norm scale and shift 0), and
    whose kernels keep only the student's central taps."""
    from stemtf.model import build_model
    from stemtf.train.distill import _keep

    silenced = build_model(teacher_config)
    silenced.set_weights(teacher.get_weights())
    unet = silenced.get_layer("unet")
    decoder = list(config.unet.filters[:-1])[::-1] + [config.unet.head_filters]
    crop = (teacher_config.unet.kernel_size - config.unet.kernel_size) // 2
    for part, counts, axis in (("encoder", config.unet.filters, 3), ("decoder", decoder, 2)):
        for level, count in enumerate(counts):
            kernel, bias = unet.get_layer(f"{part}_conv_{level}").get_weights()
            dropped = np.setdiff1d(np.arange(kernel.shape[axis]), _keep(kernel, count, axis))
            if crop:
                outer = np.ones(kernel.shape[:2], bool)
                outer[crop:-crop, crop:-crop] = False
                kernel[outer] = 0.0
                unet.get_layer(f"{part}_conv_{level}").set_weights([kernel, bias])
            gamma, beta, mean, variance = unet.get_layer(f"{part}_bn_{level}").get_weights()
            gamma[dropped], beta[dropped] = 0.0, 0.0
            unet.get_layer(f"{part}_bn_{level}").set_weights([gamma, beta, mean, variance])
    return silenced


@pytest.mark.parametrize("trunk_width, head_filters, kernel_size", [(1.0, None, None), (0.5, None, None), (0.5, 1, 3), (1.0, None, 3)])
def test_pruned_student_is_the_teacher_with_the_other_channels_silenced(trunk_width, head_filters, kernel_size):
    """Pruning keeps exactly the chosen channels across every level and skip connection, and into the heads;
    a smaller kernel keeps the central taps (they line up: the student is the teacher with its outer taps zeroed)."""
    import keras

    from stemtf.model import build_model
    from stemtf.train.distill import pruned_student, student_config

    keras.utils.set_random_seed(3)
    teacher_config = tiny_config(unet=tiny_config().unet.__class__(filters=(4, 8, 16), head_filters=2))
    teacher = build_model(teacher_config)
    rng = np.random.default_rng(0)
    for layer in teacher.get_layer("unet").layers:  # batch norms with real statistics, not the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n), rng.uniform(0.5, 2, n)])
    config = student_config(teacher_config, trunk_width=trunk_width, head_filters=head_filters, kernel_size=kernel_size)
    student = pruned_student(teacher, teacher_config, config)
    assert student.get_layer("unet").output.shape[-1] == (head_filters or 2)
    mixture = np.abs(rng.normal(size=(2, 64, 64, 2))).astype(np.float32)
    expected = _silenced_teacher(teacher, teacher_config, config)(mixture, training=False)
    got = student(mixture, training=False)
    for stem in config.stems:
        np.testing.assert_allclose(got[stem].numpy(), expected[stem].numpy(), rtol=1e-4, atol=1e-5)
    if (trunk_width, kernel_size) != (1.0, None):  # and the silenced channels or taps mattered: not the whole teacher
        whole = teacher(mixture, training=False)
        assert max(np.abs(got[s].numpy() - whole[s].numpy()).max() for s in config.stems) > 1e-3


def test_pruning_needs_a_shared_stemtf_trunk():
    from stemtf.model import build_model
    from stemtf.train.distill import pruned_student, student_config

    teacher_config = tiny_config(trunk="per_stem")
    with pytest.raises(OptionError, match="scratch"):
        pruned_student(build_model(teacher_config), teacher_config, student_config(teacher_config))


def test_a_spleeter_layout_teacher_gets_one_shared_trunk_student(music_folder, tmp_path):
    """An imported Spleeter model (one U-Net per stem, Spleeter's masks) distils into stemtf's layout."""
    import keras

    from stemtf.config import UNetConfig
    from stemtf.model import build_model, load_model, save_model
    from stemtf.train.distill import distill

    keras.utils.set_random_seed(5)
    teacher_config = tiny_config(
        trunk="per_stem", masks="spleeter", mask_extension="zeros",
        unet=UNetConfig(filters=(4, 8, 16), head_filters=1, variant="spleeter", encoder_activation="elu", decoder_activation="elu"),
    )
    teacher_dir = save_model(build_model(teacher_config), teacher_config, tmp_path / "spleeter-tiny")
    result = distill(teacher_dir, [music_folder], output_dir=tmp_path / "lite", steps=2, batch_size=2, checkpoint_every=2,
                     tensorboard=False)
    student, config = load_model(result.output_dir)
    assert (config.trunk, config.masks, config.unet.variant, config.mask_extension) == ("shared", "ratio", "stemtf", "zeros")
    assert config.unet.filters == (2, 4, 8) and config.unet.head_filters == UNetConfig.head_filters
    assert student.count_params() < build_model(teacher_config).count_params() / 3


def test_cli_distill_bad_input_prints_one_line_from_a_fresh_process(tiny_model_dir, tmp_path):
    """TensorFlow's start-up lines never come before the error (stemtf.train imports it)."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "stemtf.cli", "distill", str(tiny_model_dir), "--audio",
                             str(tmp_path / "nothing"), "-o", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"stemtf: error: Audio source {str(tmp_path / 'nothing')!r} does not exist; give audio files, folders or a glob such as 'music/**/*.mp3'."
    ], result.stderr


def test_distill_prunes_from_an_earlier_student(tiny_model_dir, music_folder, tmp_path):
    """--prune-from: a narrower student with fewer head maps and 3x3 kernels starts from a wider student, not the teacher."""
    from stemtf.model import load_model
    from stemtf.train.distill import _keep, distill

    wide = distill(tiny_model_dir, [music_folder], output_dir=tmp_path / "wide", steps=1, batch_size=2, checkpoint_every=1,
                   tensorboard=False).output_dir
    source = load_model(wide)[0].get_layer("unet").get_layer("encoder_conv_0").get_weights()[0]  # (5, 5, 2, 2)
    result = distill(tiny_model_dir, [music_folder], output_dir=tmp_path / "narrow", filters=[1, 2, 4], head_filters=1,
                     kernel_size=3, prune_from=wide, steps=1, batch_size=2, checkpoint_every=1, learning_rate=1e-12,
                     tensorboard=False)
    student, config = load_model(result.output_dir)
    assert (config.unet.filters, config.unet.head_filters, config.unet.kernel_size) == ((1, 2, 4), 1, 3)
    kernel = student.get_layer("unet").get_layer("encoder_conv_0").get_weights()[0]
    np.testing.assert_allclose(kernel, source[1:4, 1:4, :, _keep(source, 1, axis=3)], atol=1e-6)
    with pytest.raises(OptionError, match="prune_from"):
        distill(tiny_model_dir, [music_folder], output_dir=tmp_path / "x", filters=[4, 8, 16, 32], prune_from=wide, steps=1)
    with pytest.raises(OptionError, match="prune_from"):
        distill(tiny_model_dir, [music_folder], output_dir=tmp_path / "x", prune_from=wide, init="scratch", steps=1)
    assert not (tmp_path / "x").exists()


def test_cached_teacher_stems_train_without_the_teacher_in_the_loop(tiny_model_dir, music_folder, tmp_path, monkeypatch):
    """--teacher-targets cached: the teacher separates each recording once; its stems sum to it; a resume separates nothing."""
    import stemtf.train.distill as distill_module
    from stemtf.model import load_model

    def no_teacher_in_the_loop(*args, **kwargs):
        raise AssertionError("the cached mode must not compute targets on the fly")

    monkeypatch.setattr(distill_module, "teacher_targets", no_teacher_in_the_loop)
    out = tmp_path / "lite"
    result = distill_module.distill(tiny_model_dir, [music_folder], output_dir=out, targets="cached", steps=2, batch_size=2,
                                    checkpoint_every=2, tensorboard=False)
    assert result.step == 2 and load_model(out)[1].unet.filters == (2, 4, 8)
    folders = sorted((out / distill_module.TEACHER_STEMS_DIR).iterdir())
    assert [f.name.rsplit("-", 1)[0] for f in folders] == ["a", "b"]
    recording, rate = sf.read(music_folder / "a.wav", dtype="float32")
    stems = {p.stem: sf.read(p, dtype="float32")[0] for p in folders[0].glob("*.flac")}
    assert sorted(stems) == ["drums", "other", "vocals"]
    assert all(np.abs(stem).max() > 1e-3 for stem in stems.values())  # the teacher's stems, not the recording and silence
    np.testing.assert_allclose(sum(stems.values()), recording, atol=1e-3)  # the masks sum to one: the stems to the recording
    written = {p: p.stat().st_mtime_ns for p in folders[0].glob("*.flac")}
    again = distill_module.distill(tiny_model_dir, [music_folder], output_dir=out, targets="cached", steps=4, batch_size=2,
                                   checkpoint_every=2, resume=True, tensorboard=False)
    assert again.step == 4 and {p: p.stat().st_mtime_ns for p in folders[0].glob("*.flac")} == written
    with pytest.raises(OptionError, match="targets"):
        distill_module.distill(tiny_model_dir, [music_folder], output_dir=tmp_path / "x", targets="later", steps=1)


def _recipe():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "training" / "distill_lite.py"
    spec = importlib.util.spec_from_file_location("distill_lite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(vs_teacher, teacher_csdr=(1.0, 2.0), student_csdr=(0.9, 1.9)):
    fidelity = {stem: {"student_vs_teacher_sdr": v, "teacher_csdr": t, "student_csdr": s, "mixture_csdr": -5.0, "uniform_csdr": 0.0}
                for stem, v, t, s in zip(("vocals", "drums"), vs_teacher, teacher_csdr, student_csdr)}
    cost = {role: {"parameters": p, "keras_ms_per_s": k, "litert_ms_per_s": k / 2} for role, p, k in
            (("teacher", 9.8e6, 14.0), ("student", 0.9e6, 4.0))}
    return {"cost": cost, "fidelity": fidelity}


def test_the_recipe_ships_only_a_student_that_meets_the_targets(tiny_model_dir, music_folder, tmp_path, monkeypatch):
    """training/distill_lite.py --ship: >= 15 dB against the teacher on every stem and mean cSDR within 0.5 dB, or nothing."""
    import json

    from stemtf.model import load_model
    from stemtf.train.distill import distill

    recipe = _recipe()
    assert recipe.ship_failures(_report((15.2, 19.9))) == []
    assert [f.split()[0] for f in recipe.ship_failures(_report((15.2, 10.3)))] == ["drums"]
    assert "mean cSDR" in recipe.ship_failures(_report((16, 16), student_csdr=(0.4, 1.5)))[0]
    held = {**_report((15.2, 19.9)), "held_out": {"seconds": 60.0, "recordings": {"armygeddon": {}},
                                                  "pooled_student_vs_teacher_sdr": {"vocals": 9.0, "drums": 16.0}}}
    assert recipe.ship_failures(held) == ["vocals 9.0 dB against the teacher on the other held-out music (< 15)"]
    assert recipe.ship_failures({**_report((15.2, 19.9)), "cost": {}}) == ["the report has no network cost (it was made with --no-cost)"]

    run = distill(tiny_model_dir, [music_folder], output_dir=tmp_path / "run", steps=1, batch_size=2, checkpoint_every=1,
                  tensorboard=False).output_dir
    monkeypatch.setattr(recipe, "SHIP_TO", tmp_path / "saved_models")
    (tmp_path / "saved_models").mkdir()
    songs = sorted(music_folder.rglob("*.wav"))
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text(json.dumps(_report((15.2, 10.3))))
    good.write_text(json.dumps(_report((15.2, 19.9))))
    with pytest.raises(SystemExit, match="Not shipped: drums 10.3 dB"):
        recipe.ship("tiny", run, bad, songs, overwrite=False)
    assert list((tmp_path / "saved_models").iterdir()) == []
    shipped = recipe.ship("tiny", run, good, songs, overwrite=False)
    assert shipped == tmp_path / "saved_models" / "tiny-lite"
    assert sorted(p.name for p in shipped.iterdir()) == ["MODEL_CARD.md", "config.json", "model.weights.h5"]
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "CC0" in card and "MIT" in card and "| drums | 19.9 |" in card and "steps" in card and "  - a.wav" in card
    model, config = load_model(shipped)
    assert config.name == "tiny-lite"
    with pytest.raises(SystemExit, match="exists"):
        recipe.ship("tiny", run, good, songs, overwrite=False)
    assert "Below the issue" not in card
    # Below the targets: shipped only when asked, and the card says what it misses.
    held_path, no_cost = tmp_path / "held.json", tmp_path / "no-cost.json"
    held_path.write_text(json.dumps(held))
    no_cost.write_text(json.dumps({**_report((15.2, 10.3)), "cost": {}}))
    with pytest.raises(SystemExit, match="no network cost"):
        recipe.ship("tiny", run, no_cost, songs, overwrite=True, below_targets=True)
    assert recipe.ship("tiny", run, held_path, songs, overwrite=True, below_targets=True) == shipped
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "## Below the issue's quality targets" in card and "- vocals 9.0 dB against the teacher on the other held-out music" in card
    assert "| 9.0 | 16.0 |" in card and "armygeddon" in card and "CC BY-SA 3.0" in card


def test_the_recipe_never_distils_on_the_validation_collections_song(tmp_path, monkeypatch):
    """training/distill_lite.py: the sectoid song in training/heldout.json is left out, even if an older run left its file."""
    recipe = _recipe()
    assert recipe.held_out_sectoid() == {"Metal madness"}
    sectoid = tmp_path / "sectoid"
    for name in ("Feelings", "Metal madness", "War of freedom"):
        (sectoid / name).mkdir(parents=True)
        sf.write(sectoid / name / "song.ogg", music_like(SAMPLE_RATE // 2, seed=len(name)), SAMPLE_RATE)
    (sectoid / "library.ini").write_text("[library]")
    monkeypatch.setattr(recipe, "SECTOID", sectoid)
    monkeypatch.setattr(recipe, "TRAIN_SONGS", ())  # the CC0 songs' sums are minutes of audio: not here
    (tmp_path / "eif" / "Caesium").mkdir(parents=True)  # the validation song's stems (not the clone's ../shared)
    monkeypatch.setattr(recipe, "EIF", tmp_path / "eif")
    work = tmp_path / "work"
    (work / "audio").mkdir(parents=True)
    (work / "audio" / "sectoid-Metal_madness.flac").write_bytes(b"left by an older run")
    files, validation = recipe.prepare_audio(work)
    assert [f.name for f in files] == ["sectoid-Feelings.flac", "sectoid-War_of_freedom.flac"] == [f.name for f in recipe.recipe_files(work)]
    assert all(f.is_file() for f in files) and (validation / "Caesium").resolve() == (tmp_path / "eif" / "Caesium").resolve()
    np.testing.assert_allclose(sf.read(files[0])[0], sf.read(sectoid / "Feelings" / "song.ogg")[0], atol=1e-4)
