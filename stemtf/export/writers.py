"""Writing one artifact, atomically and with its JSON: a SavedModel, a TFLite file or an ONNX model."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

import keras
import tensorflow as tf

from stemtf import __version__, options, spectral
from stemtf.config import ModelConfig
from stemtf.errors import DependencyError, ModelError, OptionError
from stemtf.outputs import exists_error, staged
from stemtf.export.artifacts import (
    KINDS,
    MAGNITUDE_INPUT,
    ONNX_OPSET,
    SAVEDMODEL_VERSION,
    WAV_INPUT,
    WAV_SIGNATURE,
    WAVEFORM_INPUT,
    ExportDescription,
    check_options,
    description_path,
    tensor_info,
)
from stemtf.export.graphs import masks_function, separate_function, wav_function, waveform_chunk_function
from stemtf.export.inference import inference_model


def _description(
    config: ModelConfig, *, fmt: str, kind: str, segment_frames: int, quantization: str, inputs, outputs,
    overlap_samples: int | None = None, **extra,
) -> ExportDescription:
    length = config.chunk_samples_for(segment_frames)
    return ExportDescription(
        format=fmt, kind=kind, model=config.name, stems=tuple(config.stems), sample_rate=config.sample_rate,
        num_channels=config.num_channels, n_fft=config.n_fft, hop_length=config.hop_length, max_bins=config.max_bins,
        mask_extension=config.mask_extension, extension_bins=config.extension_bins, segment_frames=segment_frames,
        chunk_samples=length,
        overlap_samples=config.default_overlap_for(length) if overlap_samples is None else overlap_samples,
        inputs=tuple(inputs), outputs=tuple(outputs), quantization=quantization, stemtf_version=__version__, **extra,
    )


def _atomic_output(path: pathlib.Path, *, overwrite: bool):
    """Yield a temporary path next to ``path``; on success move it (and its JSON) into place."""
    return staged(path, overwrite=overwrite, companions=[description_path(path)])


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
    wiener_iterations: int = options.DEFAULT_WIENER_ITERATIONS,
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
            "inputs": [tensor_info(WAVEFORM_INPUT, [None, channels], "float32")],
            "outputs": [tensor_info(stem, [None, channels], "float32") for stem in config.stems],
        },
        WAV_SIGNATURE: {
            "inputs": [tensor_info(WAV_INPUT, [None], "string")],
            "outputs": [tensor_info(f"{stem}_bytes", [None], "string") for stem in config.stems],
        },
    }
    meta = _description(
        config, fmt="savedmodel", kind="separate", segment_frames=frames, quantization="none",
        inputs=signatures["serving_default"]["inputs"], outputs=signatures["serving_default"]["outputs"],
        overlap_samples=overlap_samples, signatures=signatures, wiener_iterations=wiener_iterations,
    )
    with _atomic_output(path, overwrite=overwrite) as temporary:
        _write_archive(model, {"serving_default": separate, WAV_SIGNATURE: separate_wav}, temporary)
        meta.write(description_path(temporary))
    return path


def _kind_function(model: keras.Model, config: ModelConfig, kind: str, frames: int):
    if kind == "waveform":
        function = waveform_chunk_function(model, config, segment_frames=frames)
        length = config.chunk_samples_for(frames)
        inputs = [tensor_info(WAVEFORM_INPUT, [length, config.num_channels], "float32")]
        outputs = [tensor_info(stem, [length, config.num_channels], "float32") for stem in config.stems]
    elif kind == "masks":
        function = masks_function(model, config, segment_frames=frames)
        shape = [1, frames, config.max_bins, config.num_channels]
        inputs = [tensor_info(MAGNITUDE_INPUT, shape, "float32")]
        outputs = [tensor_info(stem, shape, "float32") for stem in config.stems]
    else:
        raise OptionError("kind", f"{{option}} must be one of {', '.join(KINDS)}. Received {kind!r}.")
    return function, inputs, outputs


def sliding_plan(config: ModelConfig, latency: float) -> dict[str, int]:
    """The description fields of the masks model for the sliding plan within ``latency`` seconds.

    Raises:
        OptionError: (``latency``) not a positive number, or shorter than the model can meet.
    """
    from stemtf import sliding

    window, step, lookahead = sliding.plan_for_latency(latency, config)
    return {
        "window_frames": window, "step_frames": step, "lookahead_frames": lookahead,
        "latency_samples": sliding.plan_latency(step, lookahead, n_fft=config.n_fft, hop_length=config.hop_length),
    }


def export_tflite(
    model: keras.Model,
    config: ModelConfig,
    path: str | os.PathLike,
    *,
    kind: str = "waveform",
    quantize: str = options.DEFAULT_QUANTIZE,
    segment_frames: int | None = None,
    latency: float | None = None,
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
        latency: Seconds: a ``masks`` model for the sliding plan of a stream within this latency
            (:func:`stemtf.sliding.frames_for_latency`): its ``segment_frames`` is the plan's
            window, and the JSON records the plan (``window_frames``, ``step_frames``,
            ``lookahead_frames``, ``latency_samples``) for :class:`stemtf.litert_runner.SlidingRunner`.
        overwrite: Replace an existing file.

    Returns:
        ``path``.

    Raises:
        OptionError: unknown kind or quantization, a latency the model cannot meet, or ``latency``
            with another kind or with ``segment_frames``.
        ModelError: the graph needs a non-builtin op.
    """
    check_options("tflite", quantize, latency=latency)
    path = pathlib.Path(path)
    plan = {}
    if latency is not None:
        if kind != "masks" or segment_frames is not None:
            raise OptionError("latency", "{option} sets the window of a masks model: give it with kind='masks' and without segment_frames.")
        plan = sliding_plan(config, latency)
    frames = plan.get("window_frames") or segment_frames or config.segment_frames
    model = inference_model(model, config)  # the same masks with ops LiteRT runs faster
    function, inputs, outputs = _kind_function(model, config, kind, frames)
    meta = _description(config, fmt="tflite", kind=kind, segment_frames=frames, quantization=quantize,
                        inputs=inputs, outputs=outputs, signature="serving_default", **plan)
    with tempfile.TemporaryDirectory(prefix="stemtf-export-") as work:
        # int8: the STFT's DFT bases computed when the graph runs, or the quantizer would round them to 8 bits.
        with spectral.basis_computed_at_run_time() if quantize == "int8" else contextlib.nullcontext():
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
            raise ModelError(f"TFLite conversion failed: {str(error).strip().splitlines()[0]}") from error
    with _atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(flatbuffer)
        meta.write(description_path(temporary))
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
        raise DependencyError("ONNX export", "tf2onnx", "onnx") from None
    path = pathlib.Path(path)
    frames = segment_frames or config.segment_frames
    function, inputs, outputs = _kind_function(model, config, kind, frames)
    meta = _description(config, fmt="onnx", kind=kind, segment_frames=frames, quantization="none",
                        inputs=inputs, outputs=outputs, opset=opset)
    concrete = function.get_concrete_function()
    with _atomic_output(path, overwrite=overwrite) as temporary:
        try:
            tf2onnx.convert.from_function(
                function, input_signature=list(concrete.structured_input_signature[0]), opset=opset,
                output_path=str(temporary),
            )
        except Exception as error:
            raise ModelError(f"ONNX conversion failed: {str(error).strip().splitlines()[0]}") from error
        meta.write(description_path(temporary))
    return path


def export(
    model_name_or_path: str | os.PathLike,
    *,
    fmt: str,
    output_dir: str | os.PathLike,
    quantize: str = options.DEFAULT_QUANTIZE,
    chunk_seconds: float | None = None,
    latency: float | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Export a model by name or directory; what ``stemtf export`` runs.

    Writes into ``output_dir``: ``savedmodel`` -> ``1/`` (a TF Serving model base path);
    ``tflite`` -> ``NAME[_QUANT].tflite`` (waveform chunk) and ``NAME_masks[_QUANT].tflite``, and
    with ``latency`` (seconds) also ``NAME_sliding[_QUANT].tflite``: the masks model for the
    sliding plan within that latency (see :func:`export_tflite`); ``onnx`` -> ``NAME.onnx`` and
    ``NAME_masks.onnx``; each with its ``.json``.

    Returns:
        The artifact paths written.

    Raises:
        OptionError: a bad option (``latency``: not tflite, or shorter than the model can meet).
    """
    from stemtf.config import load_model_config
    from stemtf.model import load_model

    check_options(fmt, quantize, latency=latency)
    options.check_chunk_seconds(chunk_seconds)
    if latency is not None:
        sliding_plan(load_model_config(model_name_or_path)[0], latency)  # before loading the weights
    model, config = load_model(model_name_or_path)
    frames = config.segment_frames_for(chunk_seconds)
    output_dir = pathlib.Path(output_dir)
    if fmt == "savedmodel":
        targets = {"savedmodel": output_dir / SAVEDMODEL_VERSION}
    else:
        suffix = "" if quantize == "none" else f"_{quantize}"
        targets = {kind: output_dir / f"{config.name}{'' if kind == 'waveform' else '_masks'}{suffix}.{fmt}" for kind in KINDS}
        if latency is not None:
            targets["sliding"] = output_dir / f"{config.name}_sliding{suffix}.{fmt}"
    if not overwrite:  # check every target first, so a clash never leaves half an export
        for target in targets.values():
            for path in (target, description_path(target)):
                if path.exists():
                    raise exists_error(path)
    written = []
    for kind, target in targets.items():
        if kind == "sliding":
            written.append(export_tflite(model, config, target, kind="masks", quantize=quantize, latency=latency, overwrite=overwrite))
        elif fmt == "savedmodel":
            written.append(export_savedmodel(model, config, target, segment_frames=frames, overwrite=overwrite))
        elif fmt == "tflite":
            written.append(export_tflite(model, config, target, kind=kind, quantize=quantize, segment_frames=frames, overwrite=overwrite))
        else:
            written.append(export_onnx(model, config, target, kind=kind, segment_frames=frames, overwrite=overwrite))
    return written
