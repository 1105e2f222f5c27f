"""The CLI end to end on a tiny saved model and real audio files."""

import pathlib
import subprocess
import sys

import pytest
import soundfile as sf

from stemtf import __version__
from stemtf.cli import main

from conftest import SAMPLE_RATE, music_like


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stemtf: error: "), err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_separate_writes_one_file_per_stem_and_a_summary(capsys, tiny_model_dir, stereo_wav, tmp_path):
    code, out, err = run(capsys, "separate", stereo_wav, "--model", tiny_model_dir, "-o", tmp_path / "out")
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "out" / "song").iterdir())
    assert written == ["drums.wav", "other.wav", "vocals.wav"]
    assert "Separated 1 of 1 file(s)" in out
    info = sf.info(tmp_path / "out" / "song" / "vocals.wav")
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 2, "PCM_16")


def test_separate_warns_once_per_file_whose_stems_clipped(capsys, tiny_model_dir, stereo_wav, tmp_path):
    loud = tmp_path / "loud.wav"
    sf.write(loud, music_like(SAMPLE_RATE) * 8.0, SAMPLE_RATE, subtype="FLOAT")  # a float file beyond full scale
    code, out, err = run(capsys, "separate", loud, stereo_wav, "-m", tiny_model_dir, "-o", tmp_path / "out")
    assert code == 0, err
    lines = [line for line in err.strip().splitlines() if line.startswith("stemtf: ")]  # not the LiteRT status
    assert len(lines) == 1 and lines[0].startswith("stemtf: warning: loud.wav: "), err  # none for song.wav
    assert " samples clipped in " in lines[0] and "dBFS); write float WAV (--format wav --bit-depth 32) to keep them" in lines[0]
    clipped = int(lines[0].split("loud.wav: ")[1].split(" samples")[0])
    stems = [sf.read(p)[0] for p in sorted((tmp_path / "out" / "loud").iterdir())]
    assert 0 < clipped <= sum(int((abs(stem) >= 32767 / 32768).sum()) for stem in stems)
    code, _, err = run(capsys, "separate", loud, "-m", tiny_model_dir, "-o", tmp_path / "float", "--bit-depth", "32", "-q")
    assert code == 0 and "warning" not in err  # float output keeps the peaks: no warning


@pytest.mark.parametrize(("fmt", "extra"), [("flac", ["--bit-depth", "24"]), ("ogg", []), ("mp3", ["--bitrate", "192"]), ("wav", ["--bit-depth", "32"])])
def test_output_formats(capsys, tiny_model_dir, stereo_wav, tmp_path, fmt, extra):
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path, "--format", fmt, *extra, "-q")
    assert code == 0, err
    info = sf.info(tmp_path / "song" / f"drums.{fmt}")
    assert info.samplerate == SAMPLE_RATE and abs(info.duration - 1.5) < 0.1


def test_mono_other_rate_and_m4a_input(capsys, tiny_model_dir, tmp_path):
    mono = tmp_path / "mono.flac"
    sf.write(mono, music_like(32000, num_channels=1, sample_rate=32000), 32000)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(mono), "-ac", "2", "-c:a", "aac", str(m4a)], check=True)
    code, _, err = run(capsys, "separate", mono, m4a, "-m", tiny_model_dir, "-o", tmp_path / "out", "-q")
    assert code == 0, err
    info = sf.info(tmp_path / "out" / "mono" / "vocals.wav")
    assert (info.samplerate, info.channels, info.frames) == (32000, 1, 32000)
    assert sf.info(tmp_path / "out" / "clip" / "other.wav").channels == 2


def test_offset_duration_and_filename_template(capsys, tiny_model_dir, stereo_wav, tmp_path):
    code, _, err = run(
        capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path, "--offset", "0.5", "--duration", "0.5",
        "--filename", "{track}-{stem}.{ext}", "--wiener", "1", "-q",
    )
    assert code == 0, err
    assert sf.info(tmp_path / "song-vocals.wav").frames == SAMPLE_RATE // 2


def test_existing_output_is_kept_without_overwrite(capsys, tiny_model_dir, stereo_wav, tmp_path):
    assert run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path, "-q")[0] == 0
    target = tmp_path / "song" / "vocals.wav"
    target.write_bytes(b"precious")
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path, "-q")
    assert_one_line_error(code, err, r"already exists; pass --overwrite")
    assert target.read_bytes() == b"precious"
    assert run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", tmp_path, "-q", "--overwrite")[0] == 0
    assert sf.info(target).frames == int(1.5 * SAMPLE_RATE)


def test_one_bad_input_does_not_stop_the_others(capsys, tiny_model_dir, stereo_wav, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + b"\x00" * 64)
    code, out, err = run(capsys, "separate", broken, stereo_wav, "-m", tiny_model_dir, "-o", tmp_path / "out")
    assert code == 1
    assert "broken.wav" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == ["drums.wav", "other.wav", "vocals.wav"]
    assert not (tmp_path / "out" / "broken").exists()
    assert "Separated 1 of 2 file(s)" in out and "1 failed" in out


def test_same_track_name_twice_is_refused_for_the_second(capsys, tiny_model_dir, stereo_wav, tmp_path):
    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / "song.flac"
    sf.write(twin, music_like(8000), SAMPLE_RATE)
    code, _, err = run(capsys, "separate", stereo_wav, twin, "-m", tiny_model_dir, "-o", tmp_path / "out", "-q")
    assert_one_line_error(code, err, "would write the same files as")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["separate", "{missing}"], "does not exist"),
        (["separate", "{dir}"], "is a directory"),
        (["separate", "{empty}"], "empty file"),
        (["separate", "{text}"], "corrupt or not an audio file"),
        (["separate", "{wav}", "--model", "no-such-model"], "Unknown model 'no-such-model'"),
        (["separate", "{wav}", "--format", "aiff"], "--format 'aiff' is not supported"),
        (["separate", "{wav}", "--bit-depth", "12"], "--bit-depth must be 16, 24 or 32"),
        (["separate", "{wav}", "--bitrate", "1000"], "--bitrate must be between"),
        (["separate", "{wav}", "--offset", "-1"], "--offset must be >= 0"),
        (["separate", "{wav}", "--offset", "99"], "past the end"),
        (["separate", "{wav}", "--duration", "0"], "--duration must be > 0"),
        (["separate", "{wav}", "--wiener", "-2"], "--wiener-iterations must be >= 0"),
        (["separate", "{wav}", "--overlap", "100"], "--overlap must be between"),
        (["separate", "{wav}", "--filename", "{track}.{ext}"], "must contain"),
        (["separate", "{wav}", "--format", "flac", "--bit-depth", "32"], "FLAC stores at most 24 bits"),
        (["separate", "{wav}", "--offset", "abc"], "Invalid value for '--offset'"),
        (["separate", "{wav}", "--bogus"], "No such option: --bogus"),
        (["separate"], "Missing argument"),
    ],
)
def test_user_errors_are_one_line(capsys, tiny_model_dir, stereo_wav, tmp_path, args, pattern):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("not audio " * 100)
    fields = {"missing": tmp_path / "nope.wav", "dir": tmp_path, "empty": tmp_path / "empty.wav",
              "text": tmp_path / "text.mp3", "wav": stereo_wav}
    argv = [a.format(**fields) if a.startswith("{") and a.strip("{}") in fields else a for a in args]
    if "--model" not in argv and len(argv) > 1:
        argv += ["--model", str(tiny_model_dir)]
    code, _, err = run(capsys, *argv, "-o", tmp_path / "out")
    assert_one_line_error(code, err, pattern)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


def test_unwritable_output_dir(capsys, tiny_model_dir, stereo_wav, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    code, _, err = run(capsys, "separate", stereo_wav, "-m", tiny_model_dir, "-o", blocker)
    assert_one_line_error(code, err, "Cannot create output folder")


def test_models_lists_name_stems_and_weights(capsys, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("STEMTF_MODELS", str(tiny_model_dir.parent))
    code, out, _ = run(capsys, "models")
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("tiny"))
    assert "vocals,drums,other" in line and "MB" in line
    assert {"2stems", "4stems", "5stems"} <= {l.split()[0] for l in out.splitlines()[1:]}


def test_version_and_help_do_not_import_tensorflow():
    code = (
        "import sys; from stemtf.cli import main; rc = main(['--version']); main(['separate', '--help']);"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"stemtf {__version__}" in result.stdout and "--output-dir" in result.stdout


def test_console_script_exit_codes_and_no_traceback(tiny_model_dir, tmp_path):
    stemtf = pathlib.Path(sys.executable).parent / "stemtf"
    result = subprocess.run([str(stemtf), "separate", str(tmp_path / "missing.mp3"), "-m", str(tiny_model_dir)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"stemtf: error: Input {str(tmp_path / 'missing.mp3')!r} does not exist; check the path."]
