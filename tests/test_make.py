"""What the make targets run (``make -n``: printed, nothing executed), for the README's first commands."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target: str, venv: pathlib.Path) -> list[str]:
    # --no-print-directory: under `make test` (CI) the nested make would add "Entering/Leaving directory" lines.
    result = subprocess.run(["make", "--no-print-directory", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_demo_installs_what_its_user_tries_next_and_stays_editable(tmp_path):
    lines = dry_run("demo", tmp_path / "venv")
    installs = [line for line in lines if " install " in line and "/pip " in line and "--upgrade" not in line]
    assert installs == [f'{tmp_path / "venv"}/bin/pip install -q -e ".[plots,serve]"']  # --plot, make serve
    assert lines[-1].endswith("stemtf separate examples/caesium_excerpt.ogg --output-dir separated --overwrite")


def test_serve_preselects_the_default_model(tmp_path):
    (command,) = [line for line in dry_run("serve", tmp_path / "venv") if "stemtf serve" in line]
    assert command.endswith("stemtf serve 4stems --models 4stems,2stems,5stems")  # the page selects the first


def test_wheel_installs_build_first(tmp_path):
    lines = dry_run("wheel", tmp_path / "venv")
    assert lines[-2] == f'{tmp_path / "venv"}/bin/python -c "import build" 2>/dev/null || {tmp_path / "venv"}/bin/pip install -q "build>=1.0"'
    assert lines[-1].split() == [f"{tmp_path / 'venv'}/bin/python", "-m", "build", "--outdir", "dist", "."]


def test_check_is_the_fast_tier(tmp_path):
    lines = dry_run("check", tmp_path / "venv")
    assert lines[-1] == f'{tmp_path / "venv"}/bin/python -m pytest -m "not slow and not system"'
    assert not any("install-browser" in line or "synth/install-deps" in line for line in lines)
