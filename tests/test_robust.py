"""What happens when things go wrong: races on outputs, bad samples, path tricks, full disks, signals."""

from __future__ import annotations

import os
import pathlib
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from stemtf.cli import main
from stemtf.errors import AudioError, OutputError

from conftest import SAMPLE_RATE, music_like

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, pattern):
    import re

    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("stemtf: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def cli_process(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "stemtf.cli", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def separator(tiny_model):
    from stemtf.separator import Separator

    model, config = tiny_model
    return Separator(model, config)


# (2) The final move never replaces a file that appeared during the run.


def test_file_created_at_the_target_during_the_run_is_kept(separator, stereo_wav, tmp_path):
    out = tmp_path / "out"
    intruder = out / "song" / "drums.wav"

    def create_target(done, total):
        if done == 1 and not intruder.exists():
            intruder.write_bytes(b"someone else's file")

    with pytest.raises(OutputError, match="drums.wav' already exists; pass `overwrite`"):
        separator.separate_file(stereo_wav, output_dir=out, progress=create_target)
    assert intruder.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in (out / "song").iterdir()) == ["drums.wav"]  # no half track, no temp files
    # With overwrite the run replaces it, as asked.
    paths = separator.separate_file(stereo_wav, output_dir=out, overwrite=True, progress=create_target)
    assert sf.info(paths["drums"]).frames == sf.info(stereo_wav).frames


def test_second_writer_of_the_same_outputs_fails_and_the_first_survives(separator, stereo_wav, tmp_path):
    out = tmp_path / "out"
    first = {}

    def finish_the_other_run_first(done, total):
        if done == 1 and not first:
            first.update(separator.separate_file(stereo_wav, output_dir=out, filename="{track}/{stem}.{ext}"))

    with pytest.raises(OutputError, match="already exists"):
        separator.separate_file(stereo_wav, output_dir=out, progress=finish_the_other_run_first)
    assert set(first) == set(separator.stems) and all(path.is_file() for path in first.values())
    assert sorted(p.name for p in (out / "song").iterdir()) == sorted(f"{stem}.wav" for stem in separator.stems)


def test_place_refuses_to_replace_files_and_folders(tmp_path):
    from stemtf.outputs import place

    (tmp_path / "a.tmp").write_text("new")
    (tmp_path / "a").write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        place(tmp_path / "a.tmp", tmp_path / "a", overwrite=False)
    assert (tmp_path / "a").read_text() == "old" and (tmp_path / "a.tmp").exists()
    place(tmp_path / "a.tmp", tmp_path / "a", overwrite=True)
    assert (tmp_path / "a").read_text() == "new"
    (tmp_path / "d.tmp").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("x")
    with pytest.raises(OutputError, match="already exists"):
        place(tmp_path / "d.tmp", tmp_path / "d", overwrite=False)
    assert (tmp_path / "d" / "keep").exists()


def test_export_does_not_replace_a_file_that_appeared_during_it(tmp_path):
    from stemtf.export.writers import _atomic_output

    target = tmp_path / "m.onnx"
    with pytest.raises(OutputError, match="already exists"):
        with _atomic_output(target, overwrite=False) as temporary:
            temporary.write_text("export")
            (tmp_path / "m.onnx.json").parent.mkdir(exist_ok=True)
            temporary.with_name("m.onnx.json").write_text("{}")
            target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert not (tmp_path / "m.onnx.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_staged_output_never_stands_without_its_companion_nor_half_written(tmp_path):
    from stemtf.outputs import staged

    target, meta = tmp_path / "m.tflite", tmp_path / "m.tflite.json"
    with pytest.raises(OutputError, match="m.tflite.json' already exists"):
        with staged(target, overwrite=False, companions=[meta]) as temporary:
            temporary.write_text("model")
            temporary.with_name(meta.name).write_text("{}")
            meta.write_text("someone else's")  # appears at the companion's place meanwhile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite.json"] and meta.read_text() == "someone else's"
    meta.unlink()
    with pytest.raises(RuntimeError):
        with staged(tmp_path / "folder", overwrite=False) as temporary:
            temporary.mkdir()
            (temporary / "half").write_text("x")
            raise RuntimeError("the body failed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError, match="already exists; pass `overwrite`"):
        with staged(tmp_path / "folder", overwrite=False):
            raise AssertionError("the body runs only when the output can be written")


# (5) NaN or infinite samples are refused, never turned into full-scale stems.


def test_nan_in_the_input_is_a_one_line_error(capsys, tiny_model_dir, tmp_path, separator):
    waveform = music_like(SAMPLE_RATE)
    waveform[22050:23064] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, waveform, SAMPLE_RATE, subtype="FLOAT")
    code, _, err = run(capsys, "separate", path, "-m", tiny_model_dir, "-o", tmp_path / "out", "-q")
    one_line_error(code, err, r"nan.wav' contains NaN or infinite samples \(from 0.500 s\)")
    assert not (tmp_path / "out").exists()
    waveform[22050:23064] = np.inf
    sf.write(path, waveform, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        separator.separate_file(path, output_dir=tmp_path / "lib")
    with pytest.raises(AudioError, match="NaN or infinite"):
        separator.separate(waveform, SAMPLE_RATE)


# (6) Outputs never leave the output folder.


def test_track_named_dots_stays_inside_the_output_folder(capsys, tiny_model_dir, stereo_wav, tmp_path):
    dots = tmp_path / "in" / "...wav"
    dots.parent.mkdir()
    dots.write_bytes(stereo_wav.read_bytes())
    out = tmp_path / "in" / "out"
    code, _, err = run(capsys, "separate", dots, "-m", tiny_model_dir, "-o", out, "-q")
    assert code == 0, err
    assert sorted(p.name for p in (out / "__").iterdir()) == ["drums.wav", "other.wav", "vocals.wav"]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["...wav", "out"]


@pytest.mark.parametrize("template", ["../{stem}.{ext}", "{track}/../../{stem}.wav", "/tmp/{stem}.{ext}"])
def test_filename_that_leaves_the_output_folder_is_refused(capsys, tiny_model_dir, stereo_wav, tmp_path, template):
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path / "out", "--filename", template)
    one_line_error(code, err, r"--filename .* must be a relative path inside the output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


# (7) A full disk fails that file with one line; the batch goes on; no empty folder stays.


def test_full_disk_fails_one_file_and_the_batch_continues(tiny_model_dir, tmp_path):
    long, short = tmp_path / "long.wav", tmp_path / "short.wav"
    sf.write(long, music_like(10 * SAMPLE_RATE), SAMPLE_RATE)
    sf.write(short, music_like(SAMPLE_RATE // 2), SAMPLE_RATE)

    def small_disk():  # files may not grow past 1 MB: writes fail with EFBIG, like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    process = cli_process("separate", long, short, "-m", tiny_model_dir, "-o", tmp_path / "out", preexec_fn=small_disk)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("stemtf: error: Cannot write ") and "long/" in lines[0], lines[0]
    assert lines[0].endswith("; free some space or choose another --output-dir."), lines[0]
    assert "Separated 1 of 2 file(s)" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["short"]  # no empty long/ folder


def test_disk_error_names_the_keyword_in_the_library_and_the_flag_on_the_cli(tmp_path):
    from stemtf import outputs

    error = outputs.disk_error(tmp_path / "a.wav", OSError(28, "No space left on device"))
    assert str(error).endswith("No space left on device; free some space or choose another `output_dir`.")
    assert error.for_cli().endswith("No space left on device; free some space or choose another --output-dir.")
    assert str(outputs.exists_error(tmp_path / "a.wav")).endswith("already exists; pass `overwrite` to replace it.")


# (8) Ctrl-C, SIGTERM and SIGHUP: no temporary files, no empty folders, one line saying so.


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_leave_no_temporary_files(tiny_model_dir, tmp_path, signum):
    song = tmp_path / "long.wav"
    sf.write(song, music_like(120 * SAMPLE_RATE), SAMPLE_RATE)
    out = tmp_path / "out"
    process = cli_process("separate", song, "-m", tiny_model_dir, "-o", out)
    deadline = time.time() + 120
    while not list(out.glob("long/.*.tmp")):
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert err.strip().splitlines() == [
        f"stemtf: error: interrupted ({signal.Signals(signum).name}); no partial output was kept."
    ]
    assert not out.exists() or not any(out.rglob("*"))
    assert not out.exists()


# (9) A streamed FLAC (no length in its header) decodes; (11) random bytes named .flac say "cannot decode".


def streamed_flac(path: pathlib.Path, seconds: float) -> pathlib.Path:
    """A FLAC written to a pipe by ffmpeg: its header says nothing about its length."""
    wav = path.with_suffix(".src.wav")
    sf.write(wav, music_like(int(seconds * SAMPLE_RATE)), SAMPLE_RATE)
    data = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-f", "flac", "pipe:1"], capture_output=True, check=True).stdout
    path.write_bytes(data)
    wav.unlink()
    assert sf.info(path).frames > 1 << 62  # what libsndfile makes of it
    return path


def test_streamed_flac_with_unknown_length_is_separated(capsys, tiny_model_dir, tmp_path):
    from stemtf import audio

    song = streamed_flac(tmp_path / "streamed.flac", 2.0)
    assert audio.probe_audio(song).num_samples == 2 * SAMPLE_RATE
    assert audio.read_segment(song, SAMPLE_RATE, 100, sample_rate=SAMPLE_RATE).shape == (100, 2)
    code, _, err = run(capsys, "separate", song, "-m", tiny_model_dir, "-o", tmp_path / "out", "--offset", "0.5", "-q")
    assert code == 0, err
    assert sf.info(tmp_path / "out" / "streamed" / "vocals.wav").frames == int(1.5 * SAMPLE_RATE)


def test_random_bytes_named_flac_cannot_be_decoded(capsys, tiny_model_dir, tmp_path):
    noise = tmp_path / "noise.flac"
    noise.write_bytes(np.random.default_rng(0).bytes(50_000))
    code, _, err = run(capsys, "separate", noise, "-m", tiny_model_dir, "-o", tmp_path / "out")
    one_line_error(code, err, r"Cannot decode .*noise.flac': the file is corrupt or not audio")


# (11) A config whose stems do not match the weights' heads.


def test_config_with_fewer_stems_than_the_weights_fails_clearly(tiny_model_dir, tmp_path):
    import json
    import shutil

    from stemtf.errors import ModelError
    from stemtf.model import load_model

    model_dir = tmp_path / "mismatch"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["stems"] = config["stems"][:2]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"have 3 stem heads but config.json lists 2 stems \(vocals, drums\)"):
        load_model(model_dir)
    config["stems"] = ["vocals", "drums", "bass", "other"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="have 3 stem heads but config.json lists 4 stems"):
        load_model(model_dir)


# First hour (4): surprising choices.


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_bitrate_with_a_lossless_format_is_an_error(capsys, tiny_model_dir, stereo_wav, tmp_path, fmt):
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path / "out", "--format", fmt, "--bitrate", "192")
    one_line_error(code, err, rf"--bitrate applies to mp3 and ogg only; {fmt} is lossless")
    assert not (tmp_path / "out").exists()


def test_export_of_a_model_named_like_a_shipped_one_goes_to_its_own_folder(capsys, tiny_model_dir, tmp_path, monkeypatch):
    import json
    import shutil

    fine_tuned = tmp_path / "runs" / "2stems"
    shutil.copytree(tiny_model_dir, fine_tuned)
    config = json.loads((fine_tuned / "config.json").read_text())
    (fine_tuned / "config.json").write_text(json.dumps({**config, "name": "2stems"}))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "export", fine_tuned, "--format", "savedmodel")
    assert code == 0, err
    assert (tmp_path / "exported" / "runs-2stems" / "1" / "saved_model.pb").is_file()
    assert not (tmp_path / "exported" / "2stems").exists()


def test_messages_of_serve_name_no_missing_option(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "serve", tmp_path / "empty", "--port", "0")
    one_line_error(code, err, "has no config.json")
    assert "--model " not in err and "--model." not in err


# Stems people ask for: groups of the model's stems.


def test_groups_sum_stems_and_keep_the_others(separator, stereo_wav, tmp_path):
    waveform, rate = sf.read(stereo_wav, dtype="float32")
    plain = separator.separate(waveform, rate)
    grouped = separator.separate(waveform, rate, groups={"accompaniment": ["drums", "other"]})
    assert list(grouped) == ["vocals", "accompaniment"]
    np.testing.assert_allclose(grouped["vocals"], plain["vocals"], atol=1e-6)
    np.testing.assert_allclose(grouped["accompaniment"], plain["drums"] + plain["other"], atol=1e-5)
    paths = separator.separate_file(stereo_wav, output_dir=tmp_path, groups={"rest": ["vocals", "other"]})
    assert list(paths) == ["rest", "drums"]
    assert sorted(p.name for p in (tmp_path / "song").iterdir()) == ["drums.wav", "rest.wav"]


@pytest.mark.parametrize(("groups", "pattern"), [
    ({"x": ["vocals", "bass"]}, r"`groups` x: 'bass' is not a stem of this model; it has vocals, drums, other"),
    ({"a": ["vocals"], "b": ["vocals", "drums"]}, r"`groups` puts 'vocals' in two groups \(a and b\)"),
    ({"vocals": ["drums", "other"]}, r"group name 'vocals' is also a stem"),
    ({"../up": ["drums"]}, "cannot be a file name"),
])
def test_bad_groups_are_one_line_option_errors(separator, groups, pattern):
    from stemtf.errors import OptionError

    with pytest.raises(OptionError, match=pattern):
        separator.separate(music_like(1000), SAMPLE_RATE, groups=groups)


def test_cli_group_and_two_stems(capsys, tiny_model_dir, stereo_wav, tmp_path):
    code, out, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path / "a", "--two-stems", "vocals")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "a" / "song").iterdir()) == ["no_vocals.wav", "vocals.wav"]
    vocals, no_vocals = (sf.read(tmp_path / "a" / "song" / f"{name}.wav")[0] for name in ("vocals", "no_vocals"))
    mixture = sf.read(stereo_wav)[0]
    assert np.abs(vocals + no_vocals - mixture).max() < 3e-3  # two 16-bit roundings; the stems sum to the mixture
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path / "b",
                       "--group", "accompaniment=drums,other", "--group", "lead=vocals")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "b" / "song").iterdir()) == ["accompaniment.wav", "lead.wav"]
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "--group", "x=drums,bass")
    one_line_error(code, err, r"--group x: 'bass' is not a stem of this model")
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "--two-stems", "piano")
    one_line_error(code, err, r"--two-stems 'piano' is not a stem of this model")
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "--group", "oops")
    one_line_error(code, err, r"--group 'oops' must look like NAME=STEM,STEM")
