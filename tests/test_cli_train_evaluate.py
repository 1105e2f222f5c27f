"""`stemtf train` and `stemtf evaluate` end to end on tiny data, and their errors."""

import json

import pytest

from stemtf.cli import main

from conftest import tiny_config


@pytest.fixture
def tiny_config_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_config().to_dict()))
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_train_resume_then_evaluate(capsys, stem_folder, tiny_config_file, tmp_path):
    output = tmp_path / "run"
    common = ["train", tiny_config_file, "--data", stem_folder, "-o", output, "--batch-size", "2", "--num-frames", "64",
              "--checkpoint-every", "2", "--stem-group", "other=other,piano", "--validation-track", "three", "--speed-range", "0.9", "1.1",
              "--eq-reverb-probability", "0.5", "-q"]
    code, _, err = run(capsys, *common, "--steps", "2")
    assert code == 0, err
    assert (output / "config.json").is_file() and (output / "model.weights.h5").is_file()
    code, _, err = run(capsys, *common, "--steps", "4")
    assert code == 1 and "already holds a training checkpoint" in err and "Traceback" not in err
    without_batch_size = [arg for i, arg in enumerate(common) if arg != "--batch-size" and common[i - 1] != "--batch-size"]
    code, _, err = run(capsys, *without_batch_size, "--steps", "4", "--resume")  # keeps the checkpoint's 2
    assert code == 0, err
    assert "Warning" not in err
    state = json.loads((output / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4 and state["batch_size"] == 2
    code, _, err = run(capsys, *without_batch_size, "--steps", "6", "--resume", "--batch-size", "4")
    assert code == 0, err
    assert err.strip().splitlines() == ["Warning: the checkpoint was trained with --batch-size 2; resuming with 4 changes "
                                        "the examples per step from here on (omit --batch-size to keep 2)."]
    assert json.loads((output / "checkpoint" / "state.json").read_text())["batch_size"] == 4  # the next resume keeps 4

    code, out, err = run(capsys, "evaluate", output, "--data", stem_folder, "--track", "three",
                         "--stem-group", "other=other,piano", "-o", tmp_path / "eval", "-q")
    assert code == 0, err
    assert "the SDR of each whole track" in out and "track SDR" in out and "museval scored 1 of the 1 windows (1 s), 100%" in out
    assert (tmp_path / "eval" / "three.json").is_file()


@pytest.mark.slow
def test_train_on_a_partly_labelled_csv(capsys, stem_folder, tiny_config_file, tmp_path):
    """Row one: vocals and a backing known only as drums+other; row two: an unknown drums under a mixture file."""
    manifest = tmp_path / "parts.csv"
    manifest.write_text(
        "mixture_path,vocals_path,drums_path,other_path,drums+other_path\n"
        f",{stem_folder}/one/vocals.wav,,,{stem_folder}/one/piano.wav\n"
        f"{stem_folder}/two/piano.wav,{stem_folder}/two/vocals.wav,?,{stem_folder}/two/other.wav,\n"
        f",{stem_folder}/three/vocals.wav,{stem_folder}/three/drums.wav,{stem_folder}/three/other.wav,\n"
    )
    output = tmp_path / "run"
    code, _, err = run(capsys, "train", tiny_config_file, "--data", manifest, "-o", output, "--batch-size", "2",
                       "--num-frames", "64", "--steps", "2", "--checkpoint-every", "2", "--validation-track", "line 2",
                       "--stem-weight", "vocals=2", "--no-remix-silent-stems", "-q")
    assert code == 0, err
    state = json.loads((output / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and state["stem_weights"] == {"vocals": 2.0}
    assert "val_drums.other_loss" in state["history"][0]


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["train", "{config}", "--data", "{missing}"], "does not exist"),
        (["train", "{config}", "--data", "{data}", "--steps", "0"], "--steps must be >= 1"),
        (["train", "{config}", "--data", "{data}", "--freeze-encoder"], "--freeze-encoder needs --from"),
        (["train", "{config}", "--data", "{data}", "-o", "{missing}", "--resume"], "Nothing to resume: .*; drop --resume\\.$"),
        (["train", "{config}", "--data", "{data}", "-o", "{missing}", "--resume", "--overwrite"], "Pass either --resume or --overwrite, not both"),
        (["train", "{config}", "--data", "{data}", "--speed-range", "1.2", "1.1"], "--speed-range must be .*0.5 <= low <= high <= 2"),
        (["train", "{config}", "--data", "{data}", "--eq-reverb-probability", "2"], "--eq-reverb-probability must be in \\[0, 1\\]"),
        (["train", "{config}", "--data", "{data}", "--stem-group", "other"], "must look like STEM=FILE_STEM"),
        (["train", "{config}", "--data", "{data}", "--stem-weight", "vocals"], "--stem-weight 'vocals' must look like STEM=WEIGHT"),
        (["train", "{config}", "--data", "{data}", "--stem-weight", "guitar=2"], "--stem-weight names 'guitar', which is not one of"),
        (["train", "{config}", "--data", "{data}", "--stem-weight", "vocals=-1"], "--stem-weight for 'vocals' must be a finite number >= 0"),
        (["train", "{data}/one/vocals.wav", "--data", "{data}"], "not valid JSON|Cannot read config"),
        (["evaluate", "{model}"], "exactly one of --data"),
        (["evaluate", "{model}", "--data", "{data}", "--baseline", "ideal"], "--baseline must be one of"),
        (["evaluate", "{model}", "--data", "{data}", "--track", "nope", "--stem-group", "other=other,piano"], "--track 'nope' is not in the data"),
        (["evaluate", "{model}", "--data", "{data}"], "'piano' stem that no model stem takes.*--stem-group"),
    ],
)
def test_train_and_evaluate_errors_are_one_line(capsys, stem_folder, tiny_config_file, tiny_model_dir, tmp_path, args, pattern):
    fields = {"config": tiny_config_file, "data": stem_folder, "missing": tmp_path / "nope", "model": tiny_model_dir}
    argv = [a.format(**fields) for a in args]
    code, _, err = run(capsys, *argv)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stemtf: error: "), err
    assert __import__("re").search(pattern, lines[0]), lines[0]


@pytest.mark.slow
def test_train_never_replaces_a_model_by_accident(capsys, stem_folder, tiny_config_file, tiny_model_dir, tmp_path, monkeypatch):
    # A directory holding a model (like saved_models/4stems, which has no checkpoint/) is refused.
    target = tmp_path / "shipped"
    target.mkdir()
    for path in tiny_model_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    common = ["train", tiny_config_file, "--data", stem_folder, "--batch-size", "1", "--num-frames", "64", "--steps", "1",
              "--checkpoint-every", "1", "--stem-group", "other=other,piano", "--validation-track", "three", "-q"]
    code, _, err = run(capsys, *common, "-o", target)
    assert code == 1 and "already holds a model; pass --overwrite to replace it, or choose another --output-dir." in err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    code, _, err = run(capsys, *common, "-o", target, "--overwrite", "--resume")
    assert code == 1 and "not both" in err
    code, _, err = run(capsys, *common, "-o", target, "--overwrite")
    assert code == 0, err
    assert (target / "checkpoint" / "state.json").is_file()
    # Without --output-dir a run goes to runs/NAME under the working directory, never to saved_models/.
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *common)
    assert code == 0, err
    assert (tmp_path / "runs" / "tiny" / "config.json").is_file()
    code, _, err = run(capsys, *common)
    assert code == 1 and "already holds a training checkpoint" in err
