"""The Spleeter distillation recipe end to end at a tiny scale (training/distill_spleeter.py, benchmarks/distill_spleeter_report.py).

A tiny Spleeter-layout checkpoint (four U-Nets, Spleeter's TF1 variable names, written as Spleeter's
Saver writes it) is imported by the recipe, which makes its recordings (full mixes and sub-mixes,
Caesium held out), has the teacher label them once and trains a one-trunk student for a few steps;
the student then loads and separates, a resumed run continues it, and the report scores it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, music_like
from test_spleeter import TINY_PARAMS, spleeter_variables, write_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "training"), str(ROOT / "benchmarks")]

STEMS = ["vocals", "drums", "bass", "other"]
PARAMS = {**TINY_PARAMS, "instrument_list": STEMS}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A tiny Spleeter checkpoint with its JSON config, and songs laid out as the recipe finds them.

    ``eif/``: Hydrogen (no bass, as the real one), Sodium and Caesium as stem files; ``sectoid/``:
    two Frets on Fire song folders (backing + guitar), one of them named as the validation collection's.
    """
    root = tmp_path_factory.mktemp("sources")
    checkpoint = write_checkpoint(root / "4stems", spleeter_variables(num_unets=4))
    params = root / "tiny.json"
    params.write_text(json.dumps(PARAMS))
    songs = {"Hydrogen": ["vocals", "drums", "other"], "Sodium": STEMS, "Caesium": STEMS}
    for index, (song, stems) in enumerate(songs.items()):
        (root / "eif" / song).mkdir(parents=True)
        for offset, stem in enumerate(stems):
            sf.write(root / "eif" / song / f"{stem}.ogg", 0.3 * music_like(SAMPLE_RATE, seed=10 * index + offset), SAMPLE_RATE)
    for index, name in enumerate(["A song", "Metal madness"]):  # the second is in the validation collection
        band = root / "sectoid" / name
        band.mkdir(parents=True)
        for offset, part in enumerate(["song", "guitar"]):
            sf.write(band / f"{part}.ogg", 0.4 * music_like(SAMPLE_RATE, seed=50 + 2 * index + offset), SAMPLE_RATE)
    return root, checkpoint, params


def recipe_args(root: pathlib.Path, checkpoint: pathlib.Path, params: pathlib.Path, out: pathlib.Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--spleeter-config", str(params), "--models-dir", str(out / "models"),
            "--output-dir", str(out / "student"), "--work-dir", str(out / "work"), "--eif", str(root / "eif"),
            "--sectoid", str(root / "sectoid"), "--filters", "2,2,3,3,4,4", "--head-filters", "1", "--kernel-size", "3",
            "--num-frames", "64", "--batch-size", "2", "--checkpoint-every", "2", "--validation-crops", "1",
            "--warmup-steps", "0", *extra]


def test_recipe_imports_distils_resumes_and_the_student_separates(sources, tmp_path, capsys):
    import distill_spleeter

    from stemtf import Separator
    from stemtf.model import load_model

    root, checkpoint, params = sources
    distill_spleeter.main(recipe_args(root, checkpoint, params, tmp_path, "--steps", "2"))

    # The recordings: each training song's mix and sub-mix, never the held-out Caesium or "Metal madness".
    listing = json.loads((tmp_path / "work" / "audio" / "SOURCES.json").read_text())
    names = sorted(r["file"] for r in listing["recordings"])
    assert names == ["eif-Hydrogen-instrumental.flac", "eif-Hydrogen.flac", "eif-Sodium-instrumental.flac", "eif-Sodium.flac",
                     "sectoid-A_song-backing.flac", "sectoid-A_song.flac"]
    assert not any("Caesium" in str(r["from"]) or "Metal madness" in str(r["from"]) for r in listing["recordings"])
    mix = sf.read(tmp_path / "work" / "audio" / "eif-Sodium.flac", dtype="float32")[0]
    stems = [sf.read(root / "eif" / "Sodium" / f"{s}.ogg", dtype="float32")[0] for s in STEMS]
    np.testing.assert_allclose(mix, sum(stems), atol=2e-4)  # the sum of the stems, 16-bit

    # The teacher: Spleeter's four U-Nets, imported; the student: one shared stemtf trunk, 3x3, narrower.
    teacher, teacher_config = load_model(tmp_path / "models" / "spleeter-4stems")
    student, config = load_model(tmp_path / "student")
    assert (teacher_config.trunk, teacher_config.masks) == ("per_stem", "spleeter")
    assert (config.trunk, config.masks, config.unet.variant, config.unet.kernel_size, config.unet.head_filters) == (
        "shared", "ratio", "stemtf", 3, 1)
    assert config.stems == teacher_config.stems == tuple(STEMS) and config.name == "spleeter-4stems-student"
    assert student.count_params() < teacher.count_params() / 4
    # The teacher labelled every recording once (cached stems summing to the recording).
    cached = sorted((tmp_path / "student" / "teacher-stems").iterdir())
    assert len(cached) == len(names)
    out = capsys.readouterr().out
    assert "step 2/2" in out and "val_vocals_sdr" in out  # trained, and validated on the held-out song

    # The student separates like any model, with the teacher's Spleeter-exact chunking and 11 kHz cut-off.
    waveform = music_like(int(0.7 * SAMPLE_RATE), seed=99)
    separated = Separator.from_pretrained(tmp_path / "student", runtime="keras").separate(waveform, SAMPLE_RATE)
    assert sorted(separated) == sorted(STEMS)
    assert all(s.shape == waveform.shape and np.all(np.isfinite(s)) for s in separated.values())

    # --resume continues the run: no new import, no new teacher stems, two more steps.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "student" / "teacher-stems").rglob("*.flac")}
    distill_spleeter.main(recipe_args(root, checkpoint, params, tmp_path, "--steps", "4", "--resume"))
    assert "step 4/4" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "student" / "teacher-stems").rglob("*.flac")} == stamps

    # The report scores the student against its teacher and both against the real stems.
    import distill_spleeter_report as report

    quality = report.quality(tmp_path / "models" / "spleeter-4stems", tmp_path / "student", eif=root / "eif",
                             offset=0.0, seconds=1.0, runtime="keras", shift=1000)
    assert sorted(quality["stems"]) == sorted(STEMS)
    for row in quality["stems"].values():
        assert set(row) == {"student_vs_teacher_sdr", "uniform_vs_teacher_sdr", "shifted_teacher_vs_teacher_sdr", "teacher_csdr",
                            "student_csdr", "mixture_csdr", "uniform_csdr"}
        assert all(np.isfinite(v) for v in row.values())
    assert set(quality["mean"]) == set(report.COLUMNS) == set(row)


def test_recipe_refuses_a_checkpoint_of_another_family(sources, tmp_path, capsys):
    """A 2-U-Net checkpoint named as 4stems: the import's one-line error, and nothing is written."""
    import distill_spleeter

    from stemtf.errors import ModelError

    root, _, params = sources
    wrong = write_checkpoint(tmp_path / "2stems", spleeter_variables(num_unets=2))
    with pytest.raises(ModelError, match="2 Spleeter U-Nets"):
        distill_spleeter.main(recipe_args(root, wrong, params, tmp_path, "--steps", "2"))
    assert not (tmp_path / "student").exists() and not (tmp_path / "models" / "spleeter-4stems").exists()


def test_uniform_masks_follow_the_models_mask_extension():
    """The report's uniform-mask baseline: mixture / num_stems with a full-band extension, nothing above max_bins with zeros."""
    import distill_spleeter_report as report

    from conftest import tiny_config
    from stemtf import dsp

    mixture = music_like(SAMPLE_RATE // 2, seed=7)
    full = tiny_config(mask_extension="average")
    np.testing.assert_allclose(report.uniform_masks(mixture, full), mixture / 3, atol=1e-5)
    cut = report.uniform_masks(mixture, tiny_config(mask_extension="zeros"))
    def energy_above(waveform, bin_):  # a few bins past the cut-off: the new analysis window's own leakage aside
        return float(np.sum(np.abs(dsp.stft(waveform, n_fft=256, hop_length=64)[:, bin_:]) ** 2))

    assert energy_above(cut, 72) < 1e-3 * energy_above(mixture / 3, 72)  # zeros: nothing above the network's bins
    assert report.sdr(mixture / 3, cut) > 1  # ... and a third of the mixture below them


def test_report_times_whole_processes_and_their_memory(tmp_path):
    """The cost part: wall time and peak RSS of a whole process, and a failing command is a one-line error."""
    import distill_spleeter_report as report

    fast = report.run_process([sys.executable, "-c", "pass"], env=None)
    big = report.run_process([sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"], env=None)
    assert 0 < fast["wall_s"] < big["wall_s"] + 5 and big["peak_rss_mb"] > fast["peak_rss_mb"] + 250
    with pytest.raises(SystemExit, match="failed"):
        report.run_process([sys.executable, "-c", "raise SystemExit(3)"], env=None)
    medians = report.medians({"a": [{"wall_s": 1.0, "peak_rss_mb": 10.0}, {"wall_s": 3.0, "peak_rss_mb": 30.0}]})
    assert medians == {"a": {"wall_s": 2.0, "peak_rss_mb": 20.0}}


def test_distill_report_scores_a_student_on_held_out_music_without_stems(tiny_model_dir, tmp_path):
    """distill_report's --held-out part: a folder's files are summed, and the SDR is high only when the student imitates."""
    import distill_report as report
    import keras

    from stemtf import Separator
    from stemtf.model import build_model

    song = tmp_path / "song"
    song.mkdir()
    backing, guitar = music_like(3 * SAMPLE_RATE, seed=3), music_like(2 * SAMPLE_RATE, seed=4)[:, :1]  # mono, shorter
    sf.write(song / "song.flac", backing, SAMPLE_RATE)
    sf.write(song / "guitar.wav", guitar, SAMPLE_RATE)
    (song / "notes.mid").write_bytes(b"MThd")  # not audio: left out
    mixture, rate = report.held_out_mixture(song, offset=5.0, seconds=1.0)  # past the end: the last second
    start = 2 * SAMPLE_RATE - SAMPLE_RATE
    expected = backing[start:2 * SAMPLE_RATE] + np.repeat(guitar[start:], 2, axis=1)
    assert rate == SAMPLE_RATE and mixture.shape == (SAMPLE_RATE, 2)
    np.testing.assert_allclose(mixture, expected, atol=1e-4)  # 16-bit files

    teacher = Separator.from_pretrained(tiny_model_dir, runtime="keras")
    itself = report.held_out_fidelity({"teacher": teacher, "student": teacher}, [song], 0.0, 1.0)
    assert min(itself["pooled_student_vs_teacher_sdr"].values()) > 60
    keras.utils.set_random_seed(7)
    stranger = Separator(build_model(teacher.config), teacher.config)  # same layout, other weights
    other = report.held_out_fidelity({"teacher": teacher, "student": stranger}, [song, song / "song.flac"], 0.0, 1.0)
    assert set(other["recordings"]) == {"song", "song.flac"}
    assert max(other["pooled_student_vs_teacher_sdr"].values()) < 40
    assert all(row["teacher_level_db"] < 0 for rows in other["recordings"].values() for row in rows.values())


def test_distill_report_times_teacher_and_student_in_turn(tiny_model_dir, tmp_path):
    """distill_report's cost part: every model's three forms timed, per second of audio, with its parameter count."""
    import distill_report as report
    import keras

    from stemtf.model import build_model, load_model, save_model

    teacher, config = load_model(tiny_model_dir)
    keras.utils.set_random_seed(3)
    narrow = config.replace(unet=dataclasses.replace(config.unet, filters=tuple(max(1, f // 2) for f in config.unet.filters)))
    student_dir = save_model(build_model(narrow), narrow, tmp_path / "student")
    cost = report.masks_costs({"teacher": str(tiny_model_dir), "student": str(student_dir)}, repeats=3, threads=1)
    assert list(cost) == ["teacher", "student"]
    assert cost["teacher"]["parameters"] == teacher.count_params() > cost["student"]["parameters"] > 0
    for row in cost.values():
        assert set(row) == {"parameters", *report.COST_KEYS}
        assert all(np.isfinite(row[key]) and row[key] > 0 for key in report.COST_KEYS)
