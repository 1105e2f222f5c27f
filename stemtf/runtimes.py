"""Where a separator's masks come from: Keras (TensorFlow) or LiteRT (no TensorFlow), and the LiteRT cache.

A mask predictor maps mixture magnitudes float32 ``(1, segment_frames, max_bins, C)`` to masks
``(num_stems, segment_frames, max_bins, C)`` in stem order. Everything else a separator does (STFT,
full-band extension, masking, Wiener filtering, chunking, writing) is the same numpy code for both
(:func:`stemtf.dsp.separate_chunk`, :mod:`stemtf.plans`).

- :class:`KerasMasks` runs the Keras model in a ``tf.function``.
- :class:`LiteRTMasks` runs the exported masks model (``stemtf export --format tflite``'s
  ``NAME_masks.tflite``) with ``ai-edge-litert``: the process never imports TensorFlow, which saves
  its ~3 s import and most of its memory.

The ``.tflite`` file is not shipped next to the weights (it would double the size of every model in
the repository and the wheel); it is converted once, on first use, and cached in the user's cache
folder under a key of the weights, the config, the chunk length, the precision and the stemtf
version, so that new weights never meet an old conversion. Conversion takes a lock, so two processes
converting the same model at once do the work once, and writes atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pathlib
from collections.abc import Callable
from typing import Any


from stemtf import __version__, interpreters
from stemtf.config import CACHE_ENV, CONFIG_FILE, WEIGHTS_FILE, ModelConfig, cache_root
from stemtf.errors import ModelError, ModelOptionError, OptionError

RUNTIMES = ("auto", "keras", "litert")
PRECISIONS = ("float32", "float16", "int8")
# Measured with the shipped weights on 30 s of real music (benchmarks/runtime_parity.py): float32
# matches Keras to 124-134 dB SNR per stem, float16 to 65-74 dB (XNNPACK computes part of it in half
# precision) at the same speed and half the cache size, int8 to only 22-37 dB (about 1.5x faster).
# float32 keeps the LiteRT path indistinguishable from Keras; int8 is there for those who choose it.
DEFAULT_PRECISION = "float32"
LITERT_GRAPH = "subpixel-decoder-1"
quiet_native_stderr = interpreters.quiet_native_stderr
_QUANTIZE = {"float32": "none", "float16": "float16", "int8": "int8"}


def check_runtime(runtime: str, precision: str) -> None:
    """The runtime and LiteRT precision are known values."""
    if runtime not in RUNTIMES:
        raise OptionError("runtime", f"{{option}} must be one of {', '.join(RUNTIMES)}. Received {runtime!r}.")
    if precision not in PRECISIONS:
        raise OptionError("precision", f"{{option}} must be one of {', '.join(PRECISIONS)}. Received {precision!r}.")


def litert_available() -> bool:
    """Whether the LiteRT interpreter (``ai-edge-litert``: installed with stemtf, except on Windows) is importable."""
    try:
        return importlib.util.find_spec("ai_edge_litert") is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules, or a broken install
        return False


def resolve_runtime(runtime: str) -> str:
    """``auto`` -> ``litert`` where the interpreter is installed, else ``keras``."""
    if runtime == "auto":
        return "litert" if litert_available() else "keras"
    if runtime == "litert" and not litert_available():
        raise ModelOptionError(
            "runtime", 'The litert runtime needs ai-edge-litert: pip install ".[tflite]" from the stemtf folder, or set {option} to keras.'
        )
    return runtime


def cache_dir() -> pathlib.Path:
    """The user cache folder (:func:`stemtf.config.cache_root`: ``$STEMTF_CACHE``, else ``$XDG_CACHE_HOME/stemtf``,
    else ``~/.cache/stemtf``); the LiteRT conversions go to ``litert/`` in it."""
    return cache_root()


class KerasMasks:
    """Masks from a Keras model (TensorFlow), one fixed-size chunk at a time."""

    runtime = "keras"

    def __init__(self, model, config: ModelConfig, *, segment_frames: int) -> None:
        import tensorflow as tf

        self.model = model
        stems = config.stems
        spec = tf.TensorSpec([1, segment_frames, config.max_bins, config.num_channels], tf.float32)

        @tf.function(input_signature=[spec], autograph=False)
        def masks(magnitude):
            outputs = model(magnitude, training=False)
            return tf.stack([outputs[stem][0] for stem in stems])

        self._masks = masks

    def __call__(self, magnitude):
        return self._masks(magnitude).numpy()


class LiteRTMasks:
    """Masks from an exported ``.tflite`` masks model, with ``ai-edge-litert`` (no TensorFlow).

    Args:
        path: The ``NAME_masks*.tflite`` file (its ``.json`` next to it).
        stems: The stems, in the order the masks are returned.
        num_threads: Interpreter threads (default: every core).
    """

    runtime = "litert"

    def __init__(self, path: str | os.PathLike, stems, *, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from stemtf.export.artifacts import read_description

        self.path = pathlib.Path(path)
        self.description = read_description(self.path)
        if self.description.kind != "masks":
            raise ModelError(f"{str(self.path)!r} is a {self.description.kind!r} model; a separator needs the masks model.")
        self.stems = tuple(stems)
        missing = [stem for stem in self.stems if stem not in self.description.stems]
        if missing:
            raise ModelError(f"{str(self.path)!r} has no {missing[0]!r} stem; export it again.")
        with quiet_native_stderr():  # the XNNPACK delegate is created (and announced) when tensors are allocated
            interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads or os.cpu_count())
            self._run = interpreters.signature_function(
                interpreter, self.description.signature or "serving_default", self.description.inputs[0]["name"]
            )
        interpreters.release_file_pages(self.path)  # XNNPACK holds its own copy of the weights now

    def __call__(self, magnitude):
        import numpy as np

        outputs = self._run(np.ascontiguousarray(magnitude, dtype=np.float32))
        return np.stack([outputs[stem][0] for stem in self.stems])


class DeferredMasks:
    """A mask predictor made by ``load`` on its first use (call or attribute), e.g. a LiteRT model
    converted only if it is needed: a stream's sliding plan runs :meth:`Separator.masks_for` models only."""

    def __init__(self, load: Callable[[], Any], runtime: str) -> None:
        self._load, self._masks = load, None
        self.runtime = runtime

    def _loaded(self) -> Any:
        if self._masks is None:
            self._masks = self._load()
        return self._masks

    def __call__(self, magnitude):
        return self._loaded()(magnitude)

    def __getattr__(self, name: str) -> Any:  # only for names this object does not have itself
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._loaded(), name)


def litert_cache_path(directory: pathlib.Path, config: ModelConfig, *, segment_frames: int, precision: str) -> pathlib.Path:
    """Where the masks model of the model in ``directory`` is cached; the name changes when anything it depends on does."""
    digest = hashlib.sha256()
    # LITERT_GRAPH names the form of the exported graph (stemtf.export.inference): a new form, a new file
    for part in (__version__, LITERT_GRAPH, precision, str(segment_frames), (directory / CONFIG_FILE).read_bytes()):
        digest.update(part.encode() if isinstance(part, str) else part)
    with open(directory / WEIGHTS_FILE, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return cache_dir() / "litert" / f"{config.name}-{precision}-{digest.hexdigest()[:16]}.tflite"


@contextlib.contextmanager
def _locked(handle):
    """An exclusive lock on an open file for the block (two processes converting one model do it once)."""
    import fcntl

    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


class _UnwritableCache(ModelError):
    """The cache folder cannot be created or written (the separator then converts without it)."""


def _check_weights(directory: pathlib.Path, config: ModelConfig) -> None:
    if not (directory / WEIGHTS_FILE).is_file():
        raise ModelError(
            f"Model {config.name!r} in {str(directory)!r} has no trained weights ({WEIGHTS_FILE} is missing); "
            "train it with `stemtf train` or choose another model."
        )


def _complete(path: pathlib.Path) -> bool:
    """Whether a cached conversion has both its files, neither empty (a damaged one is caught when loaded)."""
    meta = path.with_name(path.name + ".json")
    return path.is_file() and meta.is_file() and path.stat().st_size > 0 and meta.stat().st_size > 0


def _remove_conversion(path: pathlib.Path) -> None:
    """Delete a cached conversion and what a killed conversion of it left (its staging folders)."""
    import shutil

    for leftover in (path, path.with_name(path.name + ".json")):
        leftover.unlink(missing_ok=True)
    for staging in path.parent.glob(f".{path.name}.*"):  # export's staging folders: ours, under the lock
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _work_folder(parent: pathlib.Path):
    """The converter's temporary files (``stemtf-export-*``, TensorFlow's own) in a folder removed on every
    exit path; one that a killed process left (its id no longer runs) goes at the next conversion."""
    import shutil
    import tempfile

    for stale in parent.glob(".work-*"):
        pid = stale.name.removeprefix(".work-")
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    work = parent / f".work-{os.getpid()}"
    work.mkdir(exist_ok=True)
    saved, tempfile.tempdir = tempfile.tempdir, str(work)
    try:
        yield work
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(work, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _convert(directory: pathlib.Path, config: ModelConfig, path: pathlib.Path, *, segment_frames: int, precision: str) -> None:
    from stemtf.export.writers import export_tflite
    from stemtf.model import load_model

    model, _ = load_model(directory)
    with _work_folder(path.parent), quiet_native_stderr():
        export_tflite(model, config, path, kind="masks", quantize=_QUANTIZE[precision], segment_frames=segment_frames,
                      overwrite=True)


def _conversion_line(config: ModelConfig, precision: str, segment_frames: int, folder: pathlib.Path) -> str:
    """What a conversion says; a window other than the model's chunk is a conversion of its own, and says so."""
    window = "" if segment_frames == config.segment_frames else (
        f" for windows of {segment_frames} frames (each window length is converted once, apart from the "
        f"{config.segment_frames}-frame chunks `separate` uses)")
    return f"converting {config.name!r} to LiteRT ({precision}) once{window}; cached in {folder}"


def cached_masks_model(
    directory: pathlib.Path,
    config: ModelConfig,
    *,
    segment_frames: int,
    precision: str = DEFAULT_PRECISION,
    on_status: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """The LiteRT masks model of a model directory: from the cache, or converted once (needs TensorFlow) and cached.

    A conversion that a killed process left half done (no ``.json``, an empty file, staging folders)
    is converted again.

    Raises:
        ModelError: the model cannot be loaded or converted, or the cache folder is not writable.
    """
    _check_weights(directory, config)
    path = litert_cache_path(directory, config, segment_frames=segment_frames, precision=precision)
    if _complete(path):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a+b")
    except OSError as error:
        raise _UnwritableCache(
            f"Cannot write to the cache folder {str(path.parent)!r}: {error.strerror}; set ${CACHE_ENV} to a writable folder."
        ) from error
    with lock, _locked(lock):
        if _complete(path):  # another process converted it while this one waited
            return path
        _remove_conversion(path)
        if on_status is not None:
            on_status(_conversion_line(config, precision, segment_frames, path.parent))
        _convert(directory, config, path, segment_frames=segment_frames, precision=precision)
    return path


def load_masks(directory: pathlib.Path, config: ModelConfig, *, segment_frames: int, precision: str = DEFAULT_PRECISION,
               num_threads: int | None = None, on_status: Callable[[str], None] | None = None) -> LiteRTMasks:
    """:class:`LiteRTMasks` of a model directory, through the cache (:func:`cached_masks_model`).

    A cached file that does not load (truncated, empty, garbage, its JSON damaged) is converted
    again, once. Without a writable cache folder the model is converted into a temporary folder
    for this process only (and a line says so).

    Raises:
        ModelError: the model cannot be converted, or its conversion does not load (the message names the file).
    """
    try:
        path = cached_masks_model(directory, config, segment_frames=segment_frames, precision=precision, on_status=on_status)
    except _UnwritableCache as error:
        return _uncached_masks(directory, config, segment_frames=segment_frames, precision=precision,
                               num_threads=num_threads, on_status=on_status, reason=str(error))
    try:
        return LiteRTMasks(path, config.stems, num_threads=num_threads)
    except (ValueError, RuntimeError, ModelError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
    if on_status is not None:
        on_status(f"the cached LiteRT model {str(path)!r} does not load ({first}); converting it again")
    with open(path.with_name(path.name + ".lock"), "a+b") as lock, _locked(lock):
        _remove_conversion(path)
    path = cached_masks_model(directory, config, segment_frames=segment_frames, precision=precision, on_status=on_status)
    try:
        return LiteRTMasks(path, config.stems, num_threads=num_threads)
    except (ValueError, RuntimeError, ModelError) as error:
        raise ModelError(f"The cached LiteRT model {str(path)!r} does not load ({str(error).splitlines()[0]}); "
                         "delete it and run again, or use the keras runtime.") from error


def _uncached_masks(directory: pathlib.Path, config: ModelConfig, *, segment_frames: int, precision: str,
                    num_threads: int | None, on_status: Callable[[str], None] | None, reason: str) -> LiteRTMasks:
    import shutil
    import tempfile

    work = pathlib.Path(tempfile.mkdtemp(prefix="stemtf-litert-"))
    try:
        if on_status is not None:
            on_status(f"{reason.removesuffix('.')}: converting {config.name!r} to LiteRT ({precision}) for this run only")
        path = work / f"{config.name}-{precision}.tflite"
        _convert(directory, config, path, segment_frames=segment_frames, precision=precision)
        return LiteRTMasks(path, config.stems, num_threads=num_threads)  # the interpreter has read the file
    finally:
        shutil.rmtree(work, ignore_errors=True)
