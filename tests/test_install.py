"""The package as users get it: an sdist and a wheel that install, with the shipped models and presets.

The repository keeps ``saved_models/`` and ``configs/`` at its top level; setup.cfg maps them into the
package as ``stemtf/saved_models/`` and ``stemtf/configs/``. These tests build the distributions from
a copy of the source (so nothing is written into the repository), install the wheel into a fresh
virtual environment and run the ``stemtf`` command from another directory, where only the wheel can
provide stemtf and its models. Nothing is downloaded: builds run without isolation, the wheel is
installed with ``--no-index --no-deps``, and the fresh environment borrows this environment's
installed dependencies through a plain path line in a ``.pth`` file.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import numpy as np
import pytest
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]
CLIP_STEMS = REPO / "tests" / "data" / "caesium_10s"
SHIPPED = ("2stems", "4stems", "5stems")
# The source folders a distribution is built from; top-level files (setup.cfg, README.md, ...) come too.
SOURCE_FOLDERS = ("stemtf", "saved_models", "configs")

pytestmark = pytest.mark.slow


def run(command: list, *, cwd: pathlib.Path, timeout: float = 300) -> str:
    """Run ``command`` in ``cwd``; fail with its output if it exits non-zero. Returns stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "STEMTF_MODELS")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def copy_source(target: pathlib.Path) -> pathlib.Path:
    """Copy what a distribution is built from into ``target``, without build leftovers."""
    target.mkdir()
    for path in REPO.iterdir():
        if path.is_file() and not path.name.startswith("."):
            shutil.copy2(path, target / path.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    for name in SOURCE_FOLDERS:
        shutil.copytree(REPO / name, target / name, ignore=ignore)
    return target


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, pathlib.Path]:
    """``{"sdist": ..., "wheel": ...}`` built like ``python -m build``: the sdist, then the wheel from it."""
    work = tmp_path_factory.mktemp("dist")
    source = copy_source(work / "source")
    out = work / "out"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], cwd=work)
    (sdist,) = out.glob("stemtf-*.tar.gz")
    (wheel,) = out.glob("stemtf-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_sdist_holds_models_and_presets(dists):
    with tarfile.open(dists["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for model in SHIPPED:
        assert {f"saved_models/{model}/config.json", f"saved_models/{model}/model.weights.h5"} <= names
    assert {"configs/2stems.json", "configs/4stems.json", "configs/5stems.json", "setup.cfg", "README.md"} <= names


def test_wheel_holds_every_package_model_and_preset(dists):
    """Every package under stemtf/ is listed in setup.cfg (mapped packages rule out ``find:``)."""
    with zipfile.ZipFile(dists["wheel"]) as archive:
        names = set(archive.namelist())
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "stemtf").rglob("__init__.py")}
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert not missing, f"packages missing from the wheel (add them to [options] packages in setup.cfg): {missing}"
    for model in SHIPPED:
        for file in ("config.json", "model.weights.h5", "MODEL_CARD.md"):
            assert f"stemtf/saved_models/{model}/{file}" in names
    assert {f"stemtf/configs/{p.name}" for p in (REPO / "configs").glob("*.json")} <= names
    assert not any(name.startswith(("saved_models/", "configs/", "tests/")) for name in names)


def test_distributions_pass_twine_check(dists):
    pytest.importorskip("twine", reason='twine comes with the dev extra: pip install -e ".[dev]"')
    output = run([sys.executable, "-m", "twine", "check", "--strict", dists["sdist"], dists["wheel"]], cwd=dists["wheel"].parent)
    assert output.count("PASSED") == 2


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory, dists) -> pathlib.Path:
    """A new virtual environment with only the wheel installed; dependencies borrowed from this one."""
    env = tmp_path_factory.mktemp("venv") / "fresh"
    run([sys.executable, "-m", "venv", "--without-pip", env], cwd=env.parent)
    python = env / "bin" / "python"
    site_packages = pathlib.Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=env).strip())
    # A plain path line: this environment's packages become importable, but its own .pth files (the
    # editable install's finder among them) are not processed, so stemtf can only come from the wheel.
    borrowed = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "zz_borrowed_dependencies.pth").write_text("".join(f"{path}\n" for path in borrowed))
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", dists["wheel"]], cwd=env.parent)
    return env


def test_wheel_installs_and_separates_from_any_directory(fresh_env, tmp_path):
    bin_dir = fresh_env / "bin"
    where = run([bin_dir / "python", "-c", "import stemtf, stemtf.config as c; print(stemtf.__file__, c.SHIPPED_MODELS, c.PRESETS)"], cwd=tmp_path)
    package, models, presets = (pathlib.Path(p) for p in where.split())
    assert fresh_env in package.parents and REPO not in package.parents, where
    assert models == package.parent / "saved_models" and presets == package.parent / "configs"

    listing = run([bin_dir / "stemtf", "models"], cwd=tmp_path)
    for model in SHIPPED:
        assert model in listing, listing

    # 3 s of real music (the held-out Caesium stems, summed), as the MP3 a user would give.
    waveform = sum(sf.read(path, dtype="float32", frames=3 * 44100)[0] for path in sorted(CLIP_STEMS.glob("*.flac")))
    sf.write(tmp_path / "clip.mp3", np.clip(waveform, -1, 1), 44100)
    mixture, rate = sf.read(tmp_path / "clip.mp3", dtype="float32")
    run([bin_dir / "stemtf", "separate", "clip.mp3", "--model", "2stems", "-o", "out", "--quiet"], cwd=tmp_path)
    stems = {stem: sf.read(tmp_path / "out" / "clip" / f"{stem}.wav", dtype="float32") for stem in ("vocals", "accompaniment")}
    assert all(r == rate and w.shape == mixture.shape for w, r in stems.values())
    vocals, accompaniment = (w for w, _ in stems.values())
    # The trained model ran: the stems differ, and sum back to the mixture (up to 16-bit rounding).
    assert np.abs(vocals - accompaniment).max() > 0.05
    np.testing.assert_allclose(vocals + accompaniment, mixture, atol=5e-4)


def test_make_wheel_builds_next_to_pips_build_folder(tmp_path):
    """`make wheel` in a clone where pip left build/: that folder must not stand in for the `build` package."""
    if shutil.which("make") is None:
        pytest.skip("needs make")
    source = copy_source(tmp_path / "clone")
    (source / "build" / "lib").mkdir(parents=True)  # what a plain `pip install .` leaves behind
    run(["make", "-s", "wheel", f"VENV={sys.prefix}", "BUILD_FLAGS=--no-isolation"], cwd=source, timeout=600)
    assert len(list((source / "dist").glob("stemtf-*.whl"))) == 1 and len(list((source / "dist").glob("stemtf-*.tar.gz"))) == 1
