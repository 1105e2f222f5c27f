"""Where a separator's masks come from: Keras (TensorFlow) or LiteRT (no TensorFlow), and the LiteRT cache.

A mask predictor maps mixture magnitudes float32 ``(1, segment_frames, max_bins, C)`` to masks
``(num_stems, segment_frames, max_bins, C)`` in stem order. Everything else a separator does (STFT,
full-band extension, masking, Wiener filtering, chunking, writing) is the same numpy code for both
(:func:`stemtf.apply.separate_chunk_numpy`).

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
from stemtf.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from stemtf.errors import ModelError, OptionError

RUNTIMES = ("auto", "keras", "litert")
PRECISIONS = ("float32", "float16", "int8")
# Measured with the shipped weights on 30 s of real music (benchmarks/runtime_parity.py): float32
# matches Keras to 124-134 dB SNR per stem, float16 to 65-74 dB (XNNPACK computes part of it in half
# precision) at the same speed and half the cache size, int8 to only 22-37 dB (about 1.5x faster).
# float32 keeps the LiteRT path indistinguishable from Keras; int8 is there for those who choose it.
DEFAULT_PRECISION = "float32"
CACHE_ENV = "STEMTF_CACHE"
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
        raise ModelError('The litert runtime needs ai-edge-litert: pip install ".[tflite]" from the stemtf folder, or use --runtime keras.')
    return runtime


def cache_dir() -> pathlib.Path:
    """``$STEMTF_CACHE``, else ``$XDG_CACHE_HOME/stemtf``, else ``~/.cache/stemtf``."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "stemtf"


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
def _lock(path: pathlib.Path):
    import fcntl

    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_masks_model(
    directory: pathlib.Path,
    config: ModelConfig,
    *,
    segment_frames: int,
    precision: str = DEFAULT_PRECISION,
    on_status: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """The LiteRT masks model of a model directory: from the cache, or converted once (needs TensorFlow) and cached.

    Raises:
        ModelError: the model cannot be loaded or converted, or the cache folder is not writable.
    """
    if not (directory / WEIGHTS_FILE).is_file():
        raise ModelError(
            f"Model {config.name!r} in {str(directory)!r} has no trained weights ({WEIGHTS_FILE} is missing); "
            "train it with `stemtf train` or choose another --model."
        )
    path = litert_cache_path(directory, config, segment_frames=segment_frames, precision=precision)
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelError(f"Cannot create the cache folder {str(path.parent)!r}: {error.strerror}; set ${CACHE_ENV}.") from error
    with _lock(path.with_name(path.name + ".lock")):
        if path.is_file():  # another process converted it while this one waited
            return path
        if on_status is not None:
            on_status(f"converting {config.name!r} to LiteRT ({precision}) once; cached in {path.parent}")
        from stemtf.export.writers import export_tflite
        from stemtf.model import load_model

        model, _ = load_model(directory)
        with quiet_native_stderr():
            export_tflite(model, config, path, kind="masks", quantize=_QUANTIZE[precision], segment_frames=segment_frames, overwrite=True)
    return path
