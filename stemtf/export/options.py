"""The export choices and the exported artifacts' fixed names; no TensorFlow, so the CLI checks options first."""

from stemtf.errors import StemtfError

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
KINDS = ("waveform", "masks")
WAVEFORM_INPUT = "waveform"
MAGNITUDE_INPUT = "magnitude"
WAV_INPUT = "audio_bytes"
WAV_SIGNATURE = "separate_wav"
SAVEDMODEL_VERSION = "1"
ONNX_OPSET = 17


def check_options(fmt: str, quantize: str) -> None:
    """Raise a one-line :class:`StemtfError` unless ``fmt`` and ``quantize`` are a valid export choice."""
    if fmt not in FORMATS:
        raise StemtfError(f"--format {fmt!r} is not supported (--format must be one of {', '.join(FORMATS)}).")
    if quantize not in QUANTIZATIONS:
        raise StemtfError(f"--quantize {quantize!r} is not supported (--quantize must be one of {', '.join(QUANTIZATIONS)}).")
    if quantize != "none" and fmt != "tflite":
        raise StemtfError(f"--quantize {quantize} applies to --format tflite only.")
