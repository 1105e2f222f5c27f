"""What an export is, without TensorFlow: the choices, their check, fixed names, and the JSON description.

Every exported artifact ``PATH`` has ``PATH.json`` next to it, an :class:`ExportDescription`. The
server (:mod:`stemtf.serve`) and the reference runner (:mod:`stemtf.litert_runner`) read it with
:func:`read_description`, so its keys live in one place. This module imports only the standard
library and :mod:`stemtf.errors`: the CLI checks options with it before TensorFlow loads, and the
TensorFlow-free runner reads descriptions with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

from stemtf.errors import ModelError, OptionError

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
KINDS = ("waveform", "masks")
WAVEFORM_INPUT = "waveform"
MAGNITUDE_INPUT = "magnitude"
WAV_INPUT = "audio_bytes"
WAV_SIGNATURE = "separate_wav"
SAVEDMODEL_VERSION = "1"
ONNX_OPSET = 17


def check_options(fmt: str, quantize: str, *, latency: float | None = None) -> None:
    """Raise a one-line :class:`~stemtf.errors.OptionError` unless ``fmt``, ``quantize`` and ``latency`` are a valid export choice.

    Whether the model meets ``latency`` is :func:`stemtf.sliding.frames_for_latency`'s check.
    """
    if fmt not in FORMATS:
        raise OptionError("fmt", f"{{option}} {fmt!r} is not supported ({{option}} must be one of {', '.join(FORMATS)}).")
    if quantize not in QUANTIZATIONS:
        raise OptionError(
            "quantize", f"{{option}} {quantize!r} is not supported ({{option}} must be one of {', '.join(QUANTIZATIONS)})."
        )
    if quantize != "none" and fmt != "tflite":
        raise OptionError("quantize", f"{{option}} {quantize} applies to the tflite format only.")
    if latency is not None and fmt != "tflite":
        raise OptionError("latency", "{option} (the sliding window's masks model for phones) applies to the tflite format only.")


def tensor_info(name: str, shape, dtype: str) -> dict[str, Any]:
    """One input or output of an artifact: ``{"name", "shape" (None for a free dimension), "dtype"}``."""
    return {"name": name, "shape": [None if d is None else int(d) for d in shape], "dtype": dtype}


@dataclasses.dataclass(frozen=True)
class ExportDescription:
    """The JSON written next to every exported artifact (``ARTIFACT.json``).

    Attributes:
        format: ``savedmodel``, ``tflite`` or ``onnx``.
        kind: ``separate`` (SavedModel, whole waveform), ``waveform`` (one chunk) or ``masks``.
        model: The model's name.
        stems: Stem names, in output order.
        sample_rate, num_channels, n_fft, hop_length, max_bins, mask_extension, extension_bins:
            The model's signal geometry (what an app needs to feed it).
        segment_frames: STFT frames per chunk.
        chunk_samples: Samples per chunk.
        overlap_samples: The cross-fade between neighbouring chunks, in samples.
        inputs, outputs: ``[{"name", "shape", "dtype"}]`` of the main signature.
        quantization: ``none``, ``float16`` or ``int8``.
        stemtf_version: The stemtf version that wrote it.
        signature: The signature to run (TFLite), if any.
        signatures: Every signature's inputs and outputs (SavedModel), if any.
        wiener_iterations: Wiener filter iterations baked into the graph (SavedModel).
        opset: The ONNX opset, if ONNX.
        window_frames, step_frames, lookahead_frames: The sliding plan of a masks model exported for a
            latency (:mod:`stemtf.sliding`): every ``step_frames`` new STFT frames, run the model on
            the last ``window_frames`` (= ``segment_frames``) magnitude frames and mask the
            ``step_frames`` frames that end ``lookahead_frames`` before the window's end. None otherwise.
        latency_samples: That plan's latency: an input sample's stems are final this many samples later.
    """

    format: str
    kind: str
    model: str
    stems: tuple[str, ...]
    sample_rate: int
    num_channels: int
    n_fft: int
    hop_length: int
    max_bins: int
    mask_extension: str
    extension_bins: int
    segment_frames: int
    chunk_samples: int
    overlap_samples: int
    inputs: tuple[dict, ...]
    outputs: tuple[dict, ...]
    quantization: str = "none"
    stemtf_version: str = ""
    signature: str | None = None
    signatures: dict | None = None
    wiener_iterations: int | None = None
    opset: int | None = None
    window_frames: int | None = None
    step_frames: int | None = None
    lookahead_frames: int | None = None
    latency_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the optional fields that are unset."""
        data = dataclasses.asdict(self)
        data["stems"], data["inputs"], data["outputs"] = list(self.stems), list(self.inputs), list(self.outputs)
        return {key: value for key, value in data.items() if value is not None}

    def write(self, path: str | os.PathLike) -> None:
        """Write the JSON to ``path``."""
        pathlib.Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExportDescription":
        """Build from parsed JSON; unknown keys (from newer versions) are ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        for key in ("stems", "inputs", "outputs"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)


def description_path(artifact: str | os.PathLike) -> pathlib.Path:
    """Where the JSON description of ``artifact`` goes: ``ARTIFACT.json`` next to it."""
    artifact = pathlib.Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def read_description(artifact: str | os.PathLike) -> ExportDescription:
    """The :class:`ExportDescription` of an exported artifact.

    Raises:
        ModelError: the JSON is missing, unreadable or lacks a required key.
    """
    path = description_path(artifact)
    try:
        return ExportDescription.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelError(f"{str(path)!r} is missing; export the model with `stemtf export`.") from None
    except (OSError, ValueError, TypeError) as error:
        raise ModelError(f"{str(path)!r} is not a stemtf export description ({error}); export the model again.") from error
