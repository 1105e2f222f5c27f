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
  for apps that do their own STFT. Exported for a latency (TFLite, ``NAME_sliding.tflite``), its
  ``segment_frames`` is the window of a stream's sliding plan (:mod:`stemtf.sliding`), recorded in
  the JSON; :class:`stemtf.litert_runner.SlidingRunner` is the reference that runs it.

Every artifact ``PATH`` gets ``PATH.json`` next to it (:class:`ExportDescription`): stems, sample
rate, chunk length, input and output names, shapes and dtypes, quantization. Keras 3 weights are exported through
``keras.export.ExportArchive`` (TFLite silently drops them on other routes) and every route is
checked numerically by the tests.
"""

from stemtf.export.artifacts import (
    FORMATS,
    KINDS,
    MAGNITUDE_INPUT,
    ONNX_OPSET,
    QUANTIZATIONS,
    SAVEDMODEL_VERSION,
    WAV_INPUT,
    WAV_SIGNATURE,
    WAVEFORM_INPUT,
    ExportDescription,
    check_options,
    description_path,
    read_description,
)

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
    "ExportDescription",
    "check_options",
    "description_path",
    "export",
    "export_onnx",
    "export_savedmodel",
    "export_tflite",
    "masks_function",
    "read_description",
    "separate_function",
    "wav_function",
    "waveform_chunk_function",
]


def __getattr__(name: str):
    # The writers and graphs need TensorFlow: they load on first use, so that the names above
    # (what the CLI checks options with, what the TensorFlow-free runner reads) load without it.
    from stemtf.export.graphs import masks_function, separate_function, wav_function, waveform_chunk_function
    from stemtf.export.writers import export, export_onnx, export_savedmodel, export_tflite

    public = {
        "export": export,
        "export_onnx": export_onnx,
        "export_savedmodel": export_savedmodel,
        "export_tflite": export_tflite,
        "masks_function": masks_function,
        "separate_function": separate_function,
        "wav_function": wav_function,
        "waveform_chunk_function": waveform_chunk_function,
    }
    if name not in public:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return public[name]
