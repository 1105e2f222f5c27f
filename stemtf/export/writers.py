"""Writing one artifact, atomically and with its JSON: a SavedModel, a TFLite file or an ONNX model."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile

import keras
import tensorflow as tf

from stemtf.config import ModelConfig
from stemtf.errors import ModelError, OutputError, StemtfError
from stemtf.export.graphs import masks_function, separate_function, wav_function, waveform_chunk_function
from stemtf.export.metadata import _metadata, _tensor_info, _write_json, metadata_path
from stemtf.export.options import KINDS, MAGNITUDE_INPUT, ONNX_OPSET, QUANTIZATIONS, WAV_INPUT, WAV_SIGNATURE, WAVEFORM_INPUT
from stemtf.export.sizes import chunk_samples_for


@contextlib.contextmanager
def _atomic_output(path: pathlib.Path, *, overwrite: bool):
    """Yield a temporary path next to ``path``; on success move it (and its JSON) into place."""
    meta = metadata_path(path)
    if not overwrite:
        for target in (path, meta):
            if target.exists():
                raise OutputError(f"Output {str(target)!r} already exists; pass --overwrite to replace it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as error:
        raise OutputError(f"Cannot write to {str(path.parent)!r}: {error.strerror}.") from None
    try:
        temporary = staging / path.name
        yield temporary
        for target in (path, meta):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        os.replace(temporary, path)
        os.replace(metadata_path(temporary), meta)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_archive(model: keras.Model, endpoints: dict, path: pathlib.Path) -> None:
    """A SavedModel with ``endpoints`` ({signature: tf.function}) and the model's variables tracked by Keras."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function in endpoints.items():
        archive.add_endpoint(name, function)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # write_out prints a summary
        archive.write_out(str(path), verbose=False)


def export_savedmodel(
    model: keras.Model,
    config: ModelConfig,
    path: str | os.PathLike,
    *,
    segment_frames: int | None = None,
    overlap_samples: int | None = None,
    wiener_iterations: int = 0,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write a SavedModel with ``serving_default`` (waveform) and ``separate_wav`` (WAV bytes) signatures.

    Args:
        model: The spectrogram -> masks network from :func:`stemtf.model.build_model`.
        config: Its config.
        path: The SavedModel directory (for TF Serving, ``MODEL_BASE/1``); ``PATH.json`` is written too.
        segment_frames: STFT frames per chunk (default: the config's).
        overlap_samples: Cross-fade between chunks (default: the separator's, 1 s).
        wiener_iterations: Multichannel Wiener filter iterations baked into the graph.
        overwrite: Replace an existing export.

    Returns:
        ``path``.
    """
    path = pathlib.Path(path)
    frames = segment_frames or config.segment_frames
    separate = separate_function(
        model, config, segment_frames=frames, overlap_samples=overlap_samples, wiener_iterations=wiener_iterations
    )
    separate_wav = wav_function(config, separate)
    channels = config.num_channels
    signatures = {
        "serving_default": {
            "inputs": [_tensor_info(WAVEFORM_INPUT, [None, channels], "float32")],
            "outputs": [_tensor_info(stem, [None, channels], "float32") for stem in config.stems],
        },
        WAV_SIGNATURE: {
            "inputs": [_tensor_info(WAV_INPUT, [None], "string")],
            "outputs": [_tensor_info(f"{stem}_bytes", [None], "string") for stem in config.stems],
        },
    }
    meta = _metadata(
        config, fmt="savedmodel", kind="separate", segment_frames=frames, quantization="none",
        inputs=signatures["serving_default"]["inputs"], outputs=signatures["serving_default"]["outputs"],
        signatures=signatures, wiener_iterations=wiener_iterations,
    )
    if overlap_samples is not None:
        meta["overlap_samples"] = overlap_samples
    with _atomic_output(path, overwrite=overwrite) as temporary:
        _write_archive(model, {"serving_default": separate, WAV_SIGNATURE: separate_wav}, temporary)
        _write_json(metadata_path(temporary), meta)
    return path


def _kind_function(model: keras.Model, config: ModelConfig, kind: str, frames: int):
    if kind == "waveform":
        function = waveform_chunk_function(model, config, segment_frames=frames)
        length = chunk_samples_for(config, frames)
        inputs = [_tensor_info(WAVEFORM_INPUT, [length, config.num_channels], "float32")]
        outputs = [_tensor_info(stem, [length, config.num_channels], "float32") for stem in config.stems]
    elif kind == "masks":
        function = masks_function(model, config, segment_frames=frames)
        shape = [1, frames, config.max_bins, config.num_channels]
        inputs = [_tensor_info(MAGNITUDE_INPUT, shape, "float32")]
        outputs = [_tensor_info(stem, shape, "float32") for stem in config.stems]
    else:
        raise StemtfError(f"The export kind must be one of {', '.join(KINDS)}. Received {kind!r}.")
    return function, inputs, outputs


def export_tflite(
    model: keras.Model,
    config: ModelConfig,
    path: str | os.PathLike,
    *,
    kind: str = "waveform",
    quantize: str = "none",
    segment_frames: int | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write a ``.tflite`` file that needs TFLite builtin ops only, and ``PATH.json``.

    Args:
        model: The spectrogram -> masks network.
        config: Its config.
        path: The ``.tflite`` file to write.
        kind: ``waveform`` (a fixed-length chunk ``(L, C)`` -> ``{stem: (L, C)}``) or ``masks``
            (magnitudes ``(1, T, max_bins, C)`` -> ``{stem: masks}``).
        quantize: ``none`` (float32), ``float16`` (weights stored as float16) or ``int8``
            (dynamic-range: int8 weights, float activations).
        segment_frames: STFT frames per chunk (default: the config's).
        overwrite: Replace an existing file.

    Returns:
        ``path``.

    Raises:
        StemtfError: unknown kind or quantization, or the graph needs a non-builtin op.
    """
    if quantize not in QUANTIZATIONS:
        raise StemtfError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}. Received {quantize!r}.")
    path = pathlib.Path(path)
    frames = segment_frames or config.segment_frames
    function, inputs, outputs = _kind_function(model, config, kind, frames)
    meta = _metadata(config, fmt="tflite", kind=kind, segment_frames=frames, quantization=quantize,
                     inputs=inputs, outputs=outputs, signature="serving_default")
    with tempfile.TemporaryDirectory(prefix="stemtf-export-") as work:
        _write_archive(model, {"serving_default": function}, pathlib.Path(work) / "savedmodel")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(pathlib.Path(work) / "savedmodel"))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises ConverterError and others, with long logs
            raise ModelError(f"TFLite conversion failed: {str(error).strip().splitlines()[0]}") from None
    with _atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(flatbuffer)
        _write_json(metadata_path(temporary), meta)
    return path


def export_onnx(
    model: keras.Model,
    config: ModelConfig,
    path: str | os.PathLike,
    *,
    kind: str = "waveform",
    segment_frames: int | None = None,
    opset: int = ONNX_OPSET,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write an ONNX model (via tf2onnx) of the ``waveform`` chunk or ``masks`` graph, and ``PATH.json``.

    Input and output names are those of :func:`export_tflite`'s graphs; the DFT-as-matmul STFT keeps
    FFT nodes (which onnxruntime rejects) out of the waveform graph.
    """
    try:
        import tf2onnx
    except ImportError:
        raise ModelError('ONNX export needs tf2onnx: pip install "stemtf[onnx]".') from None
    path = pathlib.Path(path)
    frames = segment_frames or config.segment_frames
    function, inputs, outputs = _kind_function(model, config, kind, frames)
    meta = _metadata(config, fmt="onnx", kind=kind, segment_frames=frames, quantization="none",
                     inputs=inputs, outputs=outputs, opset=opset)
    concrete = function.get_concrete_function()
    with _atomic_output(path, overwrite=overwrite) as temporary:
        try:
            tf2onnx.convert.from_function(
                function, input_signature=list(concrete.structured_input_signature[0]), opset=opset,
                output_path=str(temporary),
            )
        except Exception as error:
            raise ModelError(f"ONNX conversion failed: {str(error).strip().splitlines()[0]}") from None
        _write_json(metadata_path(temporary), meta)
    return path
