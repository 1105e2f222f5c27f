"""Export a model as a TF SavedModel (servers), TFLite (phones) or ONNX, each with a JSON description.

Artifacts and what they compute (``L`` = chunk samples, ``C`` = the model's channels):

- **SavedModel** (TF Serving layout ``DIR/1/``): ``serving_default`` maps a float32 waveform
  ``(num_samples, C)`` at the model's rate to ``{stem: (num_samples, C)}`` with the same chunking and
  cross-fade as :class:`~stemtf.separator.Separator`; ``separate_wav`` maps a batch of 16-bit PCM
  WAV files (strings, shape ``(batch,)``) to ``{stem + "_bytes": WAV strings}``. It needs only
  TensorFlow to load (``tf.saved_model.load``), no stemtf.
- **waveform** (TFLite, ONNX): one fixed-length chunk ``(L, C)`` -> ``{stem: (L, C)}``, with the
  DFT-as-matmul STFT so that it needs builtin ops only; the caller overlap-adds chunks
  (:mod:`stemtf.litert_runner` is the reference).
- **masks** (TFLite, ONNX): magnitudes ``(1, segment_frames, max_bins, C)`` -> ``{stem: masks}``
  for apps that do their own STFT.

Every artifact ``PATH`` gets ``PATH.json`` next to it: stems, sample rate, chunk length, input and
output names, shapes and dtypes, quantization. Keras 3 weights are exported through
``keras.export.ExportArchive`` (TFLite silently drops them on other routes) and every route is
checked numerically by the tests.
"""

import importlib

from stemtf.export.options import (
    FORMATS,
    KINDS,
    MAGNITUDE_INPUT,
    ONNX_OPSET,
    QUANTIZATIONS,
    SAVEDMODEL_VERSION,
    WAV_INPUT,
    WAV_SIGNATURE,
    WAVEFORM_INPUT,
)

# Everything else needs TensorFlow and is imported on first use, so that ``stemtf.export.options``
# (what the CLI checks --format and --quantize against) loads without it.
_LAZY = {
    "chunk_samples_for": "sizes",
    "default_overlap_samples": "sizes",
    "segment_frames_for": "sizes",
    "masks_function": "graphs",
    "separate_function": "graphs",
    "wav_function": "graphs",
    "waveform_chunk_function": "graphs",
    "metadata_path": "metadata",
    "export_onnx": "writers",
    "export_savedmodel": "writers",
    "export_tflite": "writers",
    "export": "command",
}

__all__ = [
    "FORMATS",
    "KINDS",
    "MAGNITUDE_INPUT",
    "ONNX_OPSET",
    "QUANTIZATIONS",
    "SAVEDMODEL_VERSION",
    "WAV_INPUT",
    "WAV_SIGNATURE",
    "WAVEFORM_INPUT",
    "chunk_samples_for",
    "default_overlap_samples",
    "export",
    "export_onnx",
    "export_savedmodel",
    "export_tflite",
    "masks_function",
    "metadata_path",
    "segment_frames_for",
    "separate_function",
    "wav_function",
    "waveform_chunk_function",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
