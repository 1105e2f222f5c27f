"""Where models live: the files of a model directory, the folders searched for a model by name, and
the user's cache (imported models, converted LiteRT files).

Nothing here reads a config or builds a network: a model is found by path or by name from the
folders alone. :mod:`stemtf.config` re-exports every public name. This module does not import
TensorFlow.
"""

from __future__ import annotations

import os
import pathlib

from stemtf.errors import ModelError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
MODELS_ENV = "STEMTF_MODELS"
CACHE_ENV = "STEMTF_CACHE"
_PACKAGE = pathlib.Path(__file__).resolve().parent


def _data_folder(name: str) -> pathlib.Path:
    """``stemtf/NAME`` in an installed package (wheel), else ``NAME/`` of the source tree (clone, editable)."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


SHIPPED_MODELS = _data_folder("saved_models")
PRESETS = _data_folder("configs")


def cache_root() -> pathlib.Path:
    """stemtf's user cache: ``$STEMTF_CACHE``, else ``$XDG_CACHE_HOME/stemtf``, else ``~/.cache/stemtf``.

    It holds the imported models (:func:`user_model_store`) and the converted LiteRT files.
    """
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV])
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "stemtf"


def user_model_store() -> pathlib.Path:
    """Where ``stemtf import`` puts models: ``models/`` in the user cache (:func:`cache_root`, the
    LiteRT cache's folder)."""
    return cache_root() / "models"


def model_search_path() -> list[pathlib.Path]:
    """Folders searched for a model given by name: ``$STEMTF_MODELS`` (``os.pathsep``-separated), the
    shipped ones, then the user's imported models (:func:`user_model_store`: a shipped name wins)."""
    extra = [pathlib.Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    return extra + [SHIPPED_MODELS, user_model_store()]


def available_models() -> dict[str, pathlib.Path]:
    """Every model directory found by name on :func:`model_search_path`, first one wins."""
    found: dict[str, pathlib.Path] = {}
    for root in model_search_path():
        if root.is_dir():
            for child in sorted(root.iterdir()):
                if (child / CONFIG_FILE).is_file() and not child.name.startswith("."):  # not an import being staged
                    found.setdefault(child.name, child)
    return found


def resolve_model_dir(name_or_path: str | os.PathLike) -> pathlib.Path:
    """Find the directory of a model given as a directory path or as the name of a known model.

    Raises:
        ModelError: nothing by that name or path holds a ``config.json``.
    """
    path = pathlib.Path(name_or_path)
    if (path / CONFIG_FILE).is_file():
        return path
    models = available_models()
    if str(name_or_path) in models:
        return models[str(name_or_path)]
    if path.is_dir():
        raise ModelError(f"Model directory {str(path)!r} has no {CONFIG_FILE}; give a model name or a directory saved by stemtf.")
    known = ", ".join(sorted(models)) or "none"
    raise ModelError(f"Unknown model {str(name_or_path)!r}. Known models: {known}; or give a model directory.")
