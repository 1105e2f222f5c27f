"""The web export: a static folder that separates songs in the browser, on the listener's device.

``stemtf export MODEL --format web -o DIR`` writes::

    DIR/index.html, app.js, app.css     the page (``stemtf serve``'s page in its device-only mode)
    DIR/device.js, worker.js            decoding, the separation (a port of stemtf.apply) in a Web Worker
    DIR/litert/index.js, wasm-utils.js  LiteRT.js (npm ``@litertjs/core``), its import made relative
    DIR/litert/wasm/*.js, *.wasm        its WebAssembly builds: relaxed SIMD, plain SIMD (compat), threads
    DIR/models/NAME_masks[_Q].tflite    the builtin-ops masks model (the one ``stemtf separate`` runs) + .json
    DIR/stemtf-web.json                 the page's model list and limits
    DIR/NOTICE.md                       the licences of the runtime files

Any static file server serves it (``python -m http.server -d DIR``); nothing is fetched from
elsewhere when the page runs. WebAssembly threads need cross-origin isolation (the headers of
:data:`ISOLATION_HEADERS`); without them the page runs LiteRT.js on one thread.

The runtime comes from ``node_modules/@litertjs/core`` (``npm ci`` in the stemtf folder installs the
pinned version of ``package-lock.json``), or from the folder named by ``$STEMTF_LITERTJS``: the
exporter copies it, so a pip-installed stemtf exports for the web given that folder, and the
Python package does not carry 38 MB of WebAssembly.

:func:`device_folder` builds the same files for ``stemtf serve`` (its page's "separate on this
device"), cached under ``$STEMTF_CACHE/web/``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import pathlib
import re
import shutil
from collections.abc import Callable, Sequence

from stemtf import options
from stemtf.errors import MissingExtraError, OptionError, OutputError
from stemtf.outputs import exists_error, staged

RUNTIME_ENV = "STEMTF_LITERTJS"
RUNTIME_PACKAGE = "@litertjs/core"
INDEX_FILE = "stemtf-web.json"
# The LiteRT.js builds the page can load: relaxed SIMD (recent Chrome/Edge/Firefox), plain SIMD
# ("compat", e.g. Safari) and relaxed SIMD with threads (cross-origin isolated pages only). The
# JSPI build (WebNN, WebGPU partitioning) is left out: the page runs on the CPU.
WASM_BUILDS = ("litert_wasm_internal", "litert_wasm_compat_internal", "litert_wasm_threaded_internal")
# Served with these headers the page is cross-origin isolated and LiteRT.js may use threads.
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
# Songs longer than this are refused before separating (measured in benchmarks/browser_speed.py:
# the tab needs about 1.9 MB per second of stereo audio with 4 stems, 1.1 GB for 10 minutes).
DEFAULT_MAX_DURATION = options.DEFAULT_WEB_MAX_DURATION
_PRECISION = {"none": "float32", "float16": "float16", "int8": "int8"}
# The model's weights in the folder: float16 halves the download (4stems: 24.5 MB instead of 49) at
# the same speed, its stems 55-66 dB from float32's (benchmarks/browser_speed.py, docs/browser.md).
DEFAULT_QUANTIZE = options.DEFAULT_WEB_QUANTIZE
_PAGE_FILES = ("app.js", "app.css")
_DEVICE_FILES = ("device.js", "worker.js")


def find_runtime(runtime_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder of the ``@litertjs/core`` npm package (its ``dist/`` and ``wasm/``).

    Looked for in ``runtime_dir``, then ``$STEMTF_LITERTJS``, then ``node_modules/`` of the current
    folder and of the stemtf folder (a clone).

    Raises:
        MissingExtraError: no complete package in any of them.
    """
    if runtime_dir is not None:  # asked for: that folder or nothing
        core = pathlib.Path(runtime_dir)
        if (core / "node_modules" / RUNTIME_PACKAGE).is_dir():
            core = core / "node_modules" / RUNTIME_PACKAGE
        if _runtime_complete(core):
            return core
        raise MissingExtraError(
            f"No LiteRT.js runtime (npm {RUNTIME_PACKAGE}) in {str(runtime_dir)!r}: run `npm ci` in the stemtf folder "
            "(or sh scripts/install-web-runtime.sh), or name the folder of @litertjs/core."
        )
    here = pathlib.Path(__file__).resolve().parents[2]
    candidates = [pathlib.Path(p) for p in (os.environ.get(RUNTIME_ENV),) if p]
    candidates += [pathlib.Path.cwd() / "node_modules" / RUNTIME_PACKAGE, here / "node_modules" / RUNTIME_PACKAGE]
    for candidate in candidates:
        if candidate.name != "core" and (candidate / "node_modules" / RUNTIME_PACKAGE).is_dir():
            candidate = candidate / "node_modules" / RUNTIME_PACKAGE  # a folder holding node_modules
        if _runtime_complete(candidate):
            return candidate
    raise MissingExtraError(
        "The web export needs the LiteRT.js runtime (npm @litertjs/core), which was not found: run `npm ci` "
        "in the stemtf folder (or sh scripts/install-web-runtime.sh), or set $STEMTF_LITERTJS to its folder."
    )


def _runtime_complete(core: pathlib.Path) -> bool:
    utils = core.parent / "wasm-utils" / "dist" / "index.js"
    files = [core / "dist" / "index.js", utils] + [core / "wasm" / f"{build}.{ext}" for build in WASM_BUILDS for ext in ("js", "wasm")]
    return all(path.is_file() for path in files)


def runtime_version(core: pathlib.Path) -> str:
    """The version of the ``@litertjs/core`` package in ``core``."""
    return json.loads((core / "package.json").read_text())["version"]


def _copy_runtime(core: pathlib.Path, target: pathlib.Path) -> None:
    """LiteRT.js into ``target/litert/``: its ES module with the one bare import made relative, and the builds."""
    (target / "litert" / "wasm").mkdir(parents=True)
    source = (core / "dist" / "index.js").read_text()
    rewritten, count = re.subn(r'from\s+"@litertjs/wasm-utils"', 'from "./wasm-utils.js"', source)
    if count != 1:
        raise MissingExtraError(f"Unexpected LiteRT.js build in {str(core)!r} (its import of @litertjs/wasm-utils changed); install the version of package-lock.json with `npm ci`.")
    (target / "litert" / "index.js").write_text(rewritten)
    shutil.copyfile(core.parent / "wasm-utils" / "dist" / "index.js", target / "litert" / "wasm-utils.js")
    for build in WASM_BUILDS:
        for ext in ("js", "wasm"):
            shutil.copyfile(core / "wasm" / f"{build}.{ext}", target / "litert" / "wasm" / f"{build}.{ext}")


def _static(package: str, name: str) -> bytes:
    return importlib.resources.files(package).joinpath(name).read_bytes()


def page_html() -> str:
    """The exported page: ``stemtf serve``'s ``index.html`` in its device-only mode, with relative links."""
    html = _static("stemtf.serve", "static/index.html").decode()
    replacements = [
        ('<link rel="stylesheet" href="/static/app.css">', '<link rel="stylesheet" href="app.css">'),
        ('<script src="/static/app.js" defer></script>', '<script src="device.js" defer></script>\n<script src="app.js" defer></script>'),
        ('<body data-state="idle">', '<body data-state="idle" data-mode="device">'),
        ("Everything runs on this computer.", "The separation runs in this browser: the song is never uploaded."),
    ]
    for old, new in replacements:
        if old not in html:
            raise AssertionError(f"stemtf/serve/static/index.html changed: {old!r} is gone; update stemtf.export.web.page_html.")
        html = html.replace(old, new)
    # The server page's "separate on this device" switch has no meaning here.
    return re.sub(r'\s*<label id="on-device-row".*?</label>', "", html, flags=re.S)


def _model_entry(model: str | os.PathLike, quantize: str, target: pathlib.Path,
                 on_status: Callable[[str], None] | None) -> dict:
    """The masks model of ``model`` (from the LiteRT cache, converted once) copied into ``target/models/``."""
    from stemtf import runtimes
    from stemtf.config import load_model_config
    from stemtf.export.artifacts import description_path

    config, directory = load_model_config(model)
    path = runtimes.cached_masks_model(directory, config, segment_frames=config.segment_frames,
                                       precision=_PRECISION[quantize], on_status=on_status)
    suffix = "" if quantize == "none" else f"_{quantize}"
    name = f"{config.name}_masks{suffix}.tflite"
    (target / "models").mkdir(exist_ok=True)
    shutil.copyfile(path, target / "models" / name)
    shutil.copyfile(description_path(path), target / "models" / f"{name}.json")
    description = json.loads(description_path(path).read_text())
    if description.get("kind") != "masks":
        raise OutputError(f"{str(path)!r} is not a masks model.")
    return {"name": config.name, "stems": list(config.stems), "file": f"models/{name}", "description": description}


def write_folder(
    models: Sequence[str | os.PathLike],
    target: pathlib.Path,
    *,
    quantize: str = DEFAULT_QUANTIZE,
    max_duration: float = DEFAULT_MAX_DURATION,
    runtime_dir: str | os.PathLike | None = None,
    on_status: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """Write the web folder of ``models`` into the new folder ``target`` (no atomicity: see :func:`export_web`)."""
    core = find_runtime(runtime_dir)
    target.mkdir(parents=True)
    entries = [_model_entry(model, quantize, target, on_status) for model in models]
    (target / "index.html").write_text(page_html())
    for name in _PAGE_FILES:
        (target / name).write_bytes(_static("stemtf.serve", f"static/{name}"))
    for name in _DEVICE_FILES:
        (target / name).write_bytes(_static("stemtf.export", f"web_static/{name}"))
    _copy_runtime(core, target)
    version = runtime_version(core)
    (target / "NOTICE.md").write_text(
        "# Third-party files in this folder\n\n"
        f"- `litert/` is LiteRT.js, npm `{RUNTIME_PACKAGE}` {version} and `@litertjs/wasm-utils` (Copyright Google LLC), "
        "under the Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0); the only change is the path of "
        "one import in `litert/index.js`. Its WebAssembly includes TensorFlow Lite / LiteRT, XNNPACK and their "
        "dependencies (Apache 2.0, BSD-3-Clause), as listed in LiteRT's repository (github.com/google-ai-edge/LiteRT).\n"
        "- The rest (the page, `device.js`, `worker.js`, the models) is stemtf's, under the MIT licence.\n"
    )
    index = {
        "format": "stemtf-web", "version": 1, "models": entries, "max_duration": max_duration,
        "runtime": {"package": RUNTIME_PACKAGE, "version": version},
    }
    (target / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return target


def export_web(
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    quantize: str = DEFAULT_QUANTIZE,
    max_duration: float = DEFAULT_MAX_DURATION,
    runtime_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    on_status: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """Export ``model`` as a static web folder that separates in the browser (see the module's docstring).

    Args:
        model: A model name (``stemtf models``) or directory.
        output_dir: The folder to write; written whole or not at all.
        quantize: The masks model's weights: ``float16`` (the default: half the download of
            ``none``, float32, what ``stemtf separate`` runs, and stems 55-66 dB from its), ``none``
            or ``int8`` (a quarter, but only 23-37 dB from float32).
        max_duration: Longest song the page accepts, in seconds (the device's memory).
        runtime_dir: The ``@litertjs/core`` folder (default: see :func:`find_runtime`).
        overwrite: Replace an existing ``output_dir``.
        on_status: Called with a sentence when the model is converted to LiteRT (once, cached).

    Returns:
        ``output_dir``.

    Raises:
        OptionError: a bad ``quantize`` or ``max_duration``.
        OutputError: ``output_dir`` exists (without ``overwrite``) or cannot be written.
        MissingExtraError: no LiteRT.js runtime (see :func:`find_runtime`).
        ModelError: an unknown model, or one without weights.
    """
    if quantize not in _PRECISION:
        raise OptionError("quantize", f"{{option}} {quantize!r} is not supported ({{option}} must be one of {', '.join(_PRECISION)}).")
    if not max_duration > 0:
        raise OptionError("max_duration", f"{{option}} must be a positive number of seconds. Received {max_duration}.")
    output_dir = pathlib.Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise exists_error(output_dir)  # before the runtime is looked for and the model converted
    find_runtime(runtime_dir)  # before any conversion: a missing runtime fails at once
    try:
        with staged(output_dir, overwrite=overwrite) as temporary:
            write_folder([model], temporary, quantize=quantize, max_duration=max_duration, runtime_dir=runtime_dir, on_status=on_status)
    except OSError as error:
        raise OutputError(f"Cannot write {str(output_dir)!r}: {error.strerror}.") from error
    return output_dir


def device_folder(
    models: Sequence[str | os.PathLike],
    *,
    quantize: str = DEFAULT_QUANTIZE,
    max_duration: float = DEFAULT_MAX_DURATION,
    runtime_dir: str | os.PathLike | None = None,
    on_status: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """The web folder of ``models`` for ``stemtf serve``'s page, built once and cached.

    The server serves its files under ``/device/`` and names that prefix in ``/v1/separators``
    (``"device": "/device/"``); the page then offers "separate on this device". The folder lives
    under ``$STEMTF_CACHE/web/`` in a name that changes with the models' weights, the stemtf version
    and the runtime, so an old folder is never served for a retrained model.

    Raises:
        MissingExtraError: no LiteRT.js runtime (the server then offers separation on the server only).
    """
    from stemtf import __version__, runtimes
    from stemtf.config import load_model_config

    core = find_runtime(runtime_dir)
    digest = hashlib.sha256()
    for part in (__version__, runtime_version(core), str(max_duration), quantize):
        digest.update(part.encode())
    for model in models:
        config, directory = load_model_config(model)
        digest.update(str(runtimes.litert_cache_path(directory, config, segment_frames=config.segment_frames,
                                                     precision=_PRECISION[quantize])).encode())
    for name in _PAGE_FILES:
        digest.update(_static("stemtf.serve", f"static/{name}"))
    for name in _DEVICE_FILES:
        digest.update(_static("stemtf.export", f"web_static/{name}"))
    folder = runtimes.cache_dir() / "web" / digest.hexdigest()[:16]
    if (folder / INDEX_FILE).is_file():
        return folder
    try:
        with staged(folder, overwrite=False) as temporary:
            write_folder(models, temporary, quantize=quantize, max_duration=max_duration, runtime_dir=core, on_status=on_status)
    except OutputError:
        if not (folder / INDEX_FILE).is_file():  # not another process's finished copy
            raise
    return folder


def device_file(folder: pathlib.Path, path: str) -> pathlib.Path | None:
    """The file at URL path ``path`` inside ``folder`` (from :func:`device_folder`), or None.

    Only plain names of files inside the folder are served: no ``..``, no absolute paths, no hidden
    files, no symlinks out of it.
    """
    parts = path.split("/")
    if not path or any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    candidate = (folder / path).resolve()
    root = folder.resolve()
    if root not in candidate.parents or not candidate.is_file():
        return None
    return candidate


MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".wasm": "application/wasm", ".tflite": "application/octet-stream",
    ".md": "text/markdown; charset=utf-8",
}
