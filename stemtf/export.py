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

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

import keras
import tensorflow as tf

from stemtf import __version__, spectral
from stemtf.config import ModelConfig
from stemtf.errors import ModelError, OutputError, StemtfError

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
KINDS = ("waveform", "masks")
WAVEFORM_INPUT = "waveform"
MAGNITUDE_INPUT = "magnitude"
WAV_INPUT = "audio_bytes"
WAV_SIGNATURE = "separate_wav"
SAVEDMODEL_VERSION = "1"
ONNX_OPSET = 17


# Sizes.


def segment_frames_for(config: ModelConfig, chunk_seconds: float | None) -> int:
    """STFT frames per chunk for chunks of about ``chunk_seconds`` (None: the config's ``segment_frames``).

    Rounded to a multiple of ``2 ** U-Net depth`` and at least the smallest chunk the model allows.
    """
    if chunk_seconds is None:
        return config.segment_frames
    if not chunk_seconds > 0:
        raise StemtfError(f"--chunk-seconds must be > 0. Received {chunk_seconds:g}.")
    stride = 2 ** len(config.unet.filters)
    minimum = 2 * (config.n_fft // config.hop_length) + stride
    minimum += (-minimum) % stride
    samples = chunk_seconds * config.sample_rate
    frames = (samples + 2 * spectral.front_padding(n_fft=config.n_fft, hop_length=config.hop_length) - config.n_fft) / config.hop_length + 1
    return max(minimum, int(round(frames / stride)) * stride)


def chunk_samples_for(config: ModelConfig, segment_frames: int) -> int:
    """Samples in one chunk of ``segment_frames`` STFT frames."""
    return spectral.segment_samples(segment_frames, n_fft=config.n_fft, hop_length=config.hop_length)


def default_overlap_samples(config: ModelConfig, chunk_samples: int) -> int:
    """The cross-fade :class:`~stemtf.separator.Separator` uses by default: 1 s, at most a quarter chunk."""
    return min(config.sample_rate, chunk_samples // 4)


# Graphs.


def _extended_masks(masks: dict, config: ModelConfig) -> list[tf.Tensor]:
    """``{stem: (1, T, max_bins, C)}`` -> list of ``(T, num_bins, C)`` masks in stem order."""
    return [
        spectral.extend_mask(
            masks[stem][0], num_bins=config.num_bins, how=config.mask_extension, extension_bins=config.extension_bins
        )
        for stem in config.stems
    ]


def waveform_chunk_function(model: keras.Model, config: ModelConfig, *, segment_frames: int | None = None):
    """A ``tf.function`` from one chunk ``(L, C)`` to ``{stem: (L, C)}`` with builtin-op-only STFTs.

    Same computation as the separator's chunk function without Wiener filtering, but with
    :func:`~stemtf.spectral.stft_matmul` / :func:`~stemtf.spectral.istft_matmul`.
    """
    frames = segment_frames or config.segment_frames
    length = chunk_samples_for(config, frames)
    n_fft, hop = config.n_fft, config.hop_length

    @tf.function(input_signature=[tf.TensorSpec([length, config.num_channels], tf.float32, name=WAVEFORM_INPUT)], autograph=False)
    def separate_chunk(waveform):
        real, imag = spectral.stft_matmul(waveform, n_fft=n_fft, hop_length=hop)  # (T, bins, C)
        magnitude = tf.sqrt(tf.square(real) + tf.square(imag))[None, :, : config.max_bins, :]
        masks = _extended_masks(model(magnitude, training=False), config)
        return {
            stem: spectral.istft_matmul(real * mask, imag * mask, n_fft=n_fft, hop_length=hop, num_samples=length)
            for stem, mask in zip(config.stems, masks)
        }

    return separate_chunk


def masks_function(model: keras.Model, config: ModelConfig, *, segment_frames: int | None = None):
    """A ``tf.function`` from magnitudes ``(1, T, max_bins, C)`` to ``{stem: (1, T, max_bins, C)}`` ratio masks."""
    frames = segment_frames or config.segment_frames
    spec = tf.TensorSpec([1, frames, config.max_bins, config.num_channels], tf.float32, name=MAGNITUDE_INPUT)

    @tf.function(input_signature=[spec], autograph=False)
    def masks(magnitude):
        outputs = model(magnitude, training=False)
        return {stem: outputs[stem] for stem in config.stems}

    return masks


def separate_function(
    model: keras.Model,
    config: ModelConfig,
    *,
    segment_frames: int | None = None,
    overlap_samples: int | None = None,
    wiener_iterations: int = 0,
):
    """A ``tf.function`` from a whole waveform ``(num_samples, C)`` to ``{stem: (num_samples, C)}``.

    The chunking, zero padding and linear cross-fade are :class:`~stemtf.separator.Separator`'s, in
    graph ops, so the result matches it; chunks go through the network one at a time (flat memory).
    """
    from stemtf.wiener import wiener_filter

    frames = segment_frames or config.segment_frames
    length = chunk_samples_for(config, frames)
    overlap = default_overlap_samples(config, length) if overlap_samples is None else overlap_samples
    if not 0 <= overlap <= length // 2:
        raise StemtfError(f"The overlap must be between 0 and {length // 2} samples. Received {overlap}.")
    stride = length - overlap
    n_fft, hop, channels, num_stems = config.n_fft, config.hop_length, config.num_channels, len(config.stems)

    def one_chunk(waveform):
        stft = spectral.stft(waveform, n_fft=n_fft, hop_length=hop)
        masks = _extended_masks(model(tf.abs(stft)[None, :, : config.max_bins, :], training=False), config)
        estimates = tf.stack([stft * tf.cast(mask, tf.complex64) for mask in masks])
        estimates = wiener_filter(stft, estimates, iterations=wiener_iterations)
        return spectral.istft(estimates, n_fft=n_fft, hop_length=hop, num_samples=length)  # (J, L, C)

    @tf.function(input_signature=[tf.TensorSpec([None, channels], tf.float32, name=WAVEFORM_INPUT)], autograph=False)
    def separate(waveform):
        num_samples = tf.shape(waveform)[0]
        count = 1 + (tf.maximum(num_samples - length, 0) + stride - 1) // stride
        total = (count - 1) * stride + length
        chunks = tf.signal.frame(tf.pad(waveform, [[0, total - num_samples], [0, 0]]), length, stride, axis=0)
        stems = tf.map_fn(
            one_chunk, chunks, fn_output_signature=tf.TensorSpec([num_stems, length, channels], tf.float32)
        )  # (count, J, L, C)
        index = tf.range(count)[:, None]
        ramp = (tf.range(overlap, dtype=tf.float32) + 0.5) / max(overlap, 1)
        fade_in = tf.where(index > 0, ramp[None, :], 1.0)
        fade_out = tf.where(index < count - 1, 1.0 - ramp[None, :], 1.0)
        weights = tf.concat([fade_in, tf.ones([count, length - 2 * overlap]), fade_out], axis=1)  # (count, L)
        stems = stems * weights[:, None, :, None]
        stems = tf.signal.overlap_and_add(tf.transpose(stems, [1, 3, 0, 2]), stride)  # (J, C, total)
        stems = tf.transpose(stems[:, :, :num_samples], [0, 2, 1])
        return {stem: stems[index] for index, stem in enumerate(config.stems)}

    return separate


def wav_function(config: ModelConfig, separate):
    """A ``tf.function`` from WAV files ``(batch,)`` string to ``{stem + "_bytes": (batch,) string}``.

    Inputs must be 16-bit PCM WAV at the model's rate, mono or stereo; each output keeps its
    input's channel count. The ``_bytes`` suffix makes TF Serving's REST API send them base64.
    """
    rate, channels, num_stems = config.sample_rate, config.num_channels, len(config.stems)

    def one_file(data):
        decoded = tf.audio.decode_wav(data)
        waveform = decoded.audio
        have = tf.shape(waveform)[1]
        checks = [
            tf.debugging.assert_equal(
                decoded.sample_rate, rate, message=f"the WAV must be {rate} Hz (resample it, or use /v1/separate)"
            ),
            tf.debugging.assert_less_equal(have, 2, message="the WAV must be mono or stereo"),
        ]
        with tf.control_dependencies(checks):
            if channels == 2:
                model_input = tf.cond(have == 1, lambda: tf.tile(waveform, [1, 2]), lambda: tf.identity(waveform))
            else:
                model_input = tf.reduce_mean(waveform, axis=1, keepdims=True)
        stems = separate(tf.ensure_shape(model_input, [None, channels]))
        encoded = []
        for stem in config.stems:
            out = stems[stem]
            if channels == 2:
                out = tf.cond(have == 1, lambda out=out: tf.reduce_mean(out, axis=1, keepdims=True), lambda out=out: out)
            else:
                out = tf.tile(out, [1, have])
            encoded.append(tf.audio.encode_wav(tf.clip_by_value(out, -1.0, 1.0), rate))
        return tf.stack(encoded)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=WAV_INPUT)], autograph=False)
    def separate_wav(audio_bytes):
        files = tf.map_fn(one_file, audio_bytes, fn_output_signature=tf.TensorSpec([num_stems], tf.string))
        return {f"{stem}_bytes": files[:, index] for index, stem in enumerate(config.stems)}

    return separate_wav


# Writers.


def metadata_path(artifact: str | os.PathLike) -> pathlib.Path:
    """Where the JSON description of ``artifact`` goes: ``ARTIFACT.json`` next to it."""
    artifact = pathlib.Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def _tensor_info(name: str, shape, dtype: str) -> dict[str, Any]:
    return {"name": name, "shape": [None if d is None else int(d) for d in shape], "dtype": dtype}


def _metadata(config: ModelConfig, *, fmt: str, kind: str, segment_frames: int, quantization: str, inputs, outputs, **extra) -> dict:
    length = chunk_samples_for(config, segment_frames)
    return {
        "format": fmt,
        "kind": kind,
        "model": config.name,
        "stems": list(config.stems),
        "sample_rate": config.sample_rate,
        "num_channels": config.num_channels,
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "max_bins": config.max_bins,
        "mask_extension": config.mask_extension,
        "extension_bins": config.extension_bins,
        "segment_frames": segment_frames,
        "chunk_samples": length,
        "overlap_samples": default_overlap_samples(config, length),
        "inputs": inputs,
        "outputs": outputs,
        "quantization": quantization,
        "stemtf_version": __version__,
        **extra,
    }


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


def _write_json(path: pathlib.Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


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


def export(
    model_name_or_path: str | os.PathLike,
    *,
    fmt: str,
    output_dir: str | os.PathLike,
    quantize: str = "none",
    chunk_seconds: float | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Export a model by name or directory; what ``stemtf export`` runs.

    Writes into ``output_dir``: ``savedmodel`` -> ``1/`` (a TF Serving model base path);
    ``tflite`` -> ``NAME[_QUANT].tflite`` (waveform chunk) and ``NAME_masks[_QUANT].tflite``;
    ``onnx`` -> ``NAME.onnx`` and ``NAME_masks.onnx``; each with its ``.json``.

    Returns:
        The artifact paths written.
    """
    from stemtf.model import load_model

    if fmt not in FORMATS:
        raise StemtfError(f"--format must be one of {', '.join(FORMATS)}. Received {fmt!r}.")
    if quantize not in QUANTIZATIONS:
        raise StemtfError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}. Received {quantize!r}.")
    if quantize != "none" and fmt != "tflite":
        raise StemtfError(f"--quantize {quantize} applies to --format tflite only.")
    model, config = load_model(model_name_or_path)
    frames = segment_frames_for(config, chunk_seconds)
    output_dir = pathlib.Path(output_dir)
    if fmt == "savedmodel":
        targets = {"savedmodel": output_dir / SAVEDMODEL_VERSION}
    else:
        suffix = "" if quantize == "none" else f"_{quantize}"
        targets = {kind: output_dir / f"{config.name}{'' if kind == 'waveform' else '_masks'}{suffix}.{fmt}" for kind in KINDS}
    if not overwrite:  # check every target first, so a clash never leaves half an export
        for target in targets.values():
            for path in (target, metadata_path(target)):
                if path.exists():
                    raise OutputError(f"Output {str(path)!r} already exists; pass --overwrite to replace it.")
    written = []
    for kind, target in targets.items():
        if fmt == "savedmodel":
            written.append(export_savedmodel(model, config, target, segment_frames=frames, overwrite=overwrite))
        elif fmt == "tflite":
            written.append(export_tflite(model, config, target, kind=kind, quantize=quantize, segment_frames=frames, overwrite=overwrite))
        else:
            written.append(export_onnx(model, config, target, kind=kind, segment_frames=frames, overwrite=overwrite))
    return written
