"""Every missing optional dependency is one line naming the extra to install from the clone, for every command."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, music_like

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Run the CLI with some modules made unimportable (sys.modules[name] = None makes `import name` fail).
HIDE_AND_RUN = "import sys; [sys.modules.__setitem__(name, None) for name in sys.argv[1].split(',')]; " \
               "from stemtf.cli import main; sys.exit(main(sys.argv[2:]))"


def run_without(modules: list[str], *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", HIDE_AND_RUN, ",".join(modules), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def stems_folder(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("stems")
    (root / "song").mkdir()
    for index, stem in enumerate(("vocals", "drums", "other")):
        sf.write(root / "song" / f"{stem}.wav", music_like(SAMPLE_RATE, seed=index), SAMPLE_RATE)
    return root


def cases(tiny_model_dir, stems_folder, tmp_path):
    return {
        "evaluate (museval)": (["museval"], ["evaluate", tiny_model_dir, "--data", stems_folder], "eval"),
        "evaluate --musdb (musdb)": (["musdb"], ["evaluate", tiny_model_dir, "--musdb", stems_folder, "--baseline", "mixture"], "eval"),
        "export onnx (tf2onnx)": (["tf2onnx"], ["export", tiny_model_dir, "--format", "onnx", "-o", tmp_path / "x"], "onnx"),
        "serve (fastapi)": (["fastapi"], ["serve", tiny_model_dir, "--port", "0", "--cache-dir", tmp_path / "c"], "serve"),
        "serve (uvicorn)": (["uvicorn"], ["serve", tiny_model_dir, "--port", "0", "--cache-dir", tmp_path / "c"], "serve"),
        "serve (python-multipart)": (["python_multipart", "multipart"], ["serve", tiny_model_dir, "--port", "0", "--cache-dir", tmp_path / "c"], "serve"),
    }


@pytest.mark.parametrize("case", ["evaluate (museval)", "evaluate --musdb (musdb)", "export onnx (tf2onnx)",
                                  "serve (fastapi)", "serve (uvicorn)", "serve (python-multipart)"])
def test_missing_optional_dependency_is_one_line_naming_the_extra(tiny_model_dir, stems_folder, tmp_path, case):
    hidden, args, extra = cases(tiny_model_dir, stems_folder, tmp_path)[case]
    result = run_without(hidden, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # An editable install (make test's) is told to stay editable: pip install -e ".[extra]".
    assert lines[0].startswith("stemtf: error: ") and re.search(rf'pip install (-e )?"\.\[{extra}\]"', lines[0]), lines[0]
    assert "stemtf[" not in lines[0]  # stemtf is on no package index


def test_no_hint_anywhere_installs_from_an_index():
    sources = [*ROOT.joinpath("stemtf").rglob("*.py"), ROOT / "README.md", ROOT / "training" / "README.md", *ROOT.joinpath("docs").glob("*.md")]
    offending = [str(path.relative_to(ROOT)) for path in sources if 'install "stemtf[' in path.read_text(encoding="utf-8")]
    assert offending == []
