"""The export choices and the exported artifacts' fixed names; no TensorFlow, so the CLI checks options first."""

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
KINDS = ("waveform", "masks")
WAVEFORM_INPUT = "waveform"
MAGNITUDE_INPUT = "magnitude"
WAV_INPUT = "audio_bytes"
WAV_SIGNATURE = "separate_wav"
SAVEDMODEL_VERSION = "1"
ONNX_OPSET = 17
