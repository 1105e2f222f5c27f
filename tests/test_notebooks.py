"""The notebooks in notebooks/: every one runs from start to end, and none is committed with outputs.

Each notebook is executed with nbclient in a fresh kernel running this interpreter, from the
notebooks/ folder (where they expect to be), with this checkout first on PYTHONPATH so the stemtf
under test is the one imported. A cell that raises fails the test with the cell's traceback.
"""

from __future__ import annotations

import os
import pathlib
import re
import time

import pytest

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds for any one cell; a whole notebook is meant to run in about a minute


def test_the_four_notebooks_are_there():
    assert [path.stem for path in NOTEBOOKS] == ["finetune", "phones", "quickstart", "serving"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebooks_have_no_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(str(path), as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {index} has outputs: strip them"
        assert "attachments" not in cell, f"{path.name} cell {index} has attachments"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_use_only_the_public_api(path):
    nbformat = pytest.importorskip("nbformat")
    source = "\n".join(cell.source for cell in nbformat.read(str(path), as_version=4).cells if cell.cell_type == "code")
    private = re.findall(r"\bstemtf(?:\.\w+)*\._\w+|from stemtf[\w.]* import [^\n]*\b_\w+", source)
    assert not private, f"{path.name} uses private names: {private}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_need_only_the_repository(path):
    """A newcomer has the clone, not the development data next to it: every file a notebook reads is in it."""
    text = path.read_text()
    assert "shared/data" not in text and "REPO.parent" not in text, f"{path.name} reads data outside the repository"


# TensorFlow's C++ logging (absl): "I0000 00:00:... port.cc:153] oneDNN custom operations are on...".
TF_LOG_LINE = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|oneDNN custom operations|rebuild TensorFlow", re.M)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    repo = str(NOTEBOOKS_DIR.parent)
    # The kernel is a child process: it inherits this environment (jupyter_client starts the
    # `python3` kernel with this interpreter), so this checkout's stemtf is the one it imports.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # as in a user's Jupyter: the notebook must quieten TensorFlow
    notebook = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and its traceback) when a cell fails
    elapsed = time.perf_counter() - started
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    texts = [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "stream"]
    noise = [line for text in texts for line in text.splitlines() if TF_LOG_LINE.search(line)]
    assert not noise, f"{path.name} shows TensorFlow's C++ log lines: {noise[:2]}"
    images = [output for cell in notebook.cells for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    assert images, f"{path.name} drew no figure"
    print(f"{path.name}: {elapsed:.0f} s")
