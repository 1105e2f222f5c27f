"""Batch separation on Apache Beam: real pipelines on the DirectRunner over real audio files."""

import os
import pathlib

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("apache_beam")

from stemtf import beam  # noqa: E402
from stemtf.cli import main  # noqa: E402
from stemtf.separator import Separator  # noqa: E402

from conftest import EXAMPLE, SAMPLE_RATE, music_like  # noqa: E402

DIRECT = ["--runner=DirectRunner", "--direct_num_workers=1"]


@pytest.fixture
def catalogue(tmp_path):
    """Three real files (two WAVs and the bundled OGG excerpt, cut to 3 s) and one corrupt FLAC."""
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "one.wav", music_like(2 * SAMPLE_RATE, seed=1), SAMPLE_RATE)
    sf.write(root / "two.wav", music_like(SAMPLE_RATE, num_channels=1, seed=2), SAMPLE_RATE)  # mono stays mono
    excerpt, rate = sf.read(EXAMPLE, dtype="float32")
    sf.write(root / "excerpt.ogg", excerpt[: 3 * rate], rate)
    (root / "broken.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    return root


def test_pipeline_separates_sets_failures_aside_and_resumes(catalogue, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    summary = beam.run(str(catalogue / "*"), output_dir=str(out), model=str(tiny_model_dir), pipeline_args=DIRECT)
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 1)
    assert [path for path, _ in summary.failures] == [str(catalogue / "broken.flac")]
    reason = summary.failures[0][1]
    assert reason and "\n" not in reason  # one line (its wording is stemtf.audio's)
    assert (out / "failed.tsv").read_text().startswith(str(catalogue / "broken.flac") + "\t")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == [
        f"{track}/{stem}.wav" for track in ("excerpt", "one", "two") for stem in ("drums", "other", "vocals")
    ]
    assert sf.info(out / "two" / "vocals.wav").channels == 1
    assert 5.5 < summary.audio_seconds < 6.5 and summary.separate_seconds > 0
    # The same naming and numbers as `Separator.separate_file` (what `stemtf separate` writes).
    expected = Separator.from_pretrained(tiny_model_dir).separate_file(catalogue / "one.wav", output_dir=tmp_path / "cli")
    for stem, path in expected.items():
        assert (out / "one" / f"{stem}.wav").read_bytes() == path.read_bytes()
    # A rerun skips what is done and leaves the outputs untouched.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    again = beam.run(str(catalogue / "*"), output_dir=str(out), model=str(tiny_model_dir), pipeline_args=DIRECT)
    assert (again.done, again.skipped, again.failed) == (0, 3, 1)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == before


def test_list_file_input_and_clashing_names(catalogue, tiny_model_dir, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    sf.write(other / "one.wav", music_like(SAMPLE_RATE, seed=9), SAMPLE_RATE)  # same track name as in/one.wav
    listing = tmp_path / "songs.txt"
    listing.write_text(f"# the catalogue\n{catalogue / 'one.wav'}\n\n{other / 'one.wav'}\n{catalogue / 'two.wav'}\n")
    summary = beam.run(str(listing), output_dir=str(tmp_path / "out"), model=str(tiny_model_dir), pipeline_args=DIRECT)
    assert (summary.done, summary.failed) == (2, 1)
    (path, reason), = summary.failures
    # Of inputs that would write the same files, the first by path is separated (deterministically).
    assert path == str(catalogue / "one.wav") and f"would write the same files as {other / 'one.wav'}" in reason
    assert "use a `filename` pattern that tells them apart" in reason  # the library's keyword (the CLI: --filename)


def test_failure_reasons_name_keywords_or_flags():
    from stemtf.outputs import exists_error

    library, cli = beam.SeparationSettings(output_dir="out"), beam.SeparationSettings(output_dir="out", flags=True)
    assert library.reason(exists_error("out/a.wav")) == "Output 'out/a.wav' already exists; pass `overwrite` to replace it."
    assert cli.reason(exists_error("out/a.wav")) == "Output 'out/a.wav' already exists; pass --overwrite to replace it."
    assert (library.option("filename"), cli.option("filename"), cli.option("fmt")) == ("`filename`", "--filename", "--format")


def test_cli_prints_failures_and_exits_1(catalogue, tiny_model_dir, tmp_path, capsys):
    code = main(["separate-batch", str(catalogue / "*.*"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir),
                 "--format", "flac", "--", "--direct_num_workers=1"])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stemtf: error: {catalogue / 'broken.flac'}: ")
    assert "Separated 3 file(s), skipped 0 already done, 1 failed" in out
    assert len(list((tmp_path / "out").rglob("*.flac"))) == 9
    code = main(["separate-batch", str(catalogue / "*"), "-o", str(tmp_path / "o2"), "--format", "aiff"])
    assert code == 1 and capsys.readouterr().err.strip() == "stemtf: error: --format 'aiff' is not supported; use one of wav, flac, ogg, mp3."


def test_a_stem_file_in_the_way_fails_that_file_only(catalogue, tiny_model_dir, tmp_path, capsys):
    """Another model's run into the same folder left vocals.wav: refused, per file, unless overwrite."""
    (catalogue / "broken.flac").unlink()
    (catalogue / "excerpt.ogg").unlink()
    out = tmp_path / "out"
    (out / "one").mkdir(parents=True)
    theirs = out / "one" / "vocals.wav"
    sf.write(theirs, music_like(SAMPLE_RATE, seed=5), SAMPLE_RATE)
    before = theirs.read_bytes()
    summary = beam.run(str(catalogue / "*"), output_dir=str(out), model=str(tiny_model_dir), pipeline_args=DIRECT)
    assert (summary.done, summary.skipped, summary.failed) == (1, 0, 1)
    (path, reason), = summary.failures
    assert path == str(catalogue / "one.wav") and reason == f"Output {str(theirs)!r} already exists; pass `overwrite` to replace it."
    assert theirs.read_bytes() == before and sorted(p.name for p in (out / "one").iterdir()) == ["vocals.wav"]
    # The CLI names the flag, on stderr and in failed.tsv.
    assert main(["separate-batch", str(catalogue / "*"), "-o", str(out), "--model", str(tiny_model_dir), "-q",
                 "--", "--direct_num_workers=1"]) == 1
    line = f"{catalogue / 'one.wav'}: Output {str(theirs)!r} already exists; pass --overwrite to replace it."
    assert capsys.readouterr().err.strip() == f"stemtf: error: {line}"
    assert (out / "failed.tsv").read_text().strip() == line.replace(": ", "\t", 1)
    assert theirs.read_bytes() == before
    assert len(list((out / "two").glob("*.wav"))) == 3
    again = beam.run(str(catalogue / "*"), output_dir=str(out), model=str(tiny_model_dir), overwrite=True, pipeline_args=DIRECT)
    assert (again.done, again.skipped, again.failed) == (2, 0, 0)
    assert theirs.read_bytes() != before and len(list((out / "one").glob("*.wav"))) == 3


@pytest.mark.slow
def test_cli_prints_only_its_own_lines(catalogue, tiny_model_dir, tmp_path):
    """No Beam, TensorFlow or libmpg123 chatter on a real stderr: the failure line, nothing else."""
    import subprocess
    import sys

    mp3 = catalogue / "junk.mp3"
    sf.write(mp3, music_like(SAMPLE_RATE, seed=4), SAMPLE_RATE)
    mp3.write_bytes(b"ID3" + bytes(2000) + mp3.read_bytes())  # a broken ID3 tag: libmpg123 warns, then decodes
    command = [sys.executable, "-c", "import sys; from stemtf.cli import main; sys.exit(main(sys.argv[1:]))", "separate-batch", str(catalogue / "*"), "-o", str(tmp_path / "out"),
               "--model", str(tiny_model_dir)]
    for _ in range(2):  # the second run also replaces the first run's failed.tsv
        result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"stemtf: error: {catalogue / 'broken.flac'}: "), result.stderr
        assert "Separated 4 file(s)" in result.stdout or "skipped 4 already done" in result.stdout


@pytest.mark.slow
def test_multi_process_direct_runner(catalogue, tiny_model_dir, tmp_path):
    # Workers in their own processes, each loading the model once (what a distributed runner does).
    (catalogue / "broken.flac").unlink()
    summary = beam.run(
        str(catalogue / "*"), output_dir=str(tmp_path / "out"), model=str(tiny_model_dir),
        pipeline_args=["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    assert (summary.done, summary.failed) == (3, 0)
    assert len(list(pathlib.Path(tmp_path / "out").rglob("*.wav"))) == 9
