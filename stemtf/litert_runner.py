"""Reference runner for an exported waveform chunk model: numpy + ai-edge-litert, no TensorFlow.

This is the code a phone app ports: read the JSON written next to the ``.tflite`` file, cut the
waveform into chunks of ``chunk_samples`` that overlap by ``overlap_samples``, run each chunk
(zero-padded at the end), cross-fade neighbours linearly and add. The chunking is a deliberate,
self-contained copy of :mod:`stemtf.apply`'s (a test pins the two together), so with the same chunk
length and overlap the outputs agree with :class:`stemtf.separator.Separator`. It also runs the ONNX
chunk model (with onnxruntime), which has the same interface.

From stemtf it imports only :mod:`stemtf.export.artifacts` (standard library only: the JSON
description), and it never imports TensorFlow::

    python -m stemtf.litert_runner exported/4stems/4stems.tflite song.wav -o separated/song
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Callable

import numpy as np

from stemtf.errors import StemtfError
from stemtf.export.artifacts import read_description

ChunkFunction = Callable[[np.ndarray], dict]


class ChunkModel:
    """An exported waveform chunk model (``.tflite`` or ``.onnx``) and its JSON description.

    Args:
        path: The ``.tflite`` or ``.onnx`` file; ``PATH.json`` must be next to it.
        num_threads: Interpreter threads (None: the runtime's default).

    Attributes:
        description: The :class:`~stemtf.export.artifacts.ExportDescription` from the JSON.
        stems, sample_rate, num_channels, chunk_samples, overlap_samples: from it.
    """

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None) -> None:
        path = pathlib.Path(path)
        try:
            self.description = read_description(path)
        except StemtfError as error:
            raise ValueError(str(error)) from error
        if self.description.kind != "waveform":
            raise ValueError(f"{str(path)!r} is a {self.description.kind!r} model; the runner needs a waveform chunk model.")
        self.stems: list[str] = list(self.description.stems)
        self.sample_rate: int = self.description.sample_rate
        self.num_channels: int = self.description.num_channels
        self.chunk_samples: int = self.description.chunk_samples
        self.overlap_samples: int = self.description.overlap_samples
        self._input = self.description.inputs[0]["name"]
        if path.suffix == ".onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = num_threads
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            names = [output.name for output in session.get_outputs()]
            self._run = lambda chunk: dict(zip(names, session.run(names, {self._input: chunk})))
        else:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            runner = interpreter.get_signature_runner(self.description.signature or "serving_default")
            self._run = lambda chunk: runner(**{self._input: chunk})

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Separate one chunk: float32 ``(chunk_samples, num_channels)`` -> ``(num_stems, chunk_samples, num_channels)``."""
        outputs = self._run(np.ascontiguousarray(chunk, dtype=np.float32))
        return np.stack([np.asarray(outputs[stem]) for stem in self.stems])


def separate_chunks(
    waveform: np.ndarray, chunk_model: ChunkFunction | ChunkModel, *, chunk_samples: int, overlap_samples: int
) -> np.ndarray:
    """Separate a whole waveform chunk by chunk with a linear cross-fade.

    Args:
        waveform: float32 ``(num_samples, num_channels)`` at the model's rate and channel count.
        chunk_model: Maps a chunk ``(chunk_samples, num_channels)`` to ``(num_stems, chunk_samples, num_channels)``.
        chunk_samples: Samples per chunk (the model's fixed input length).
        overlap_samples: Samples shared by neighbouring chunks, at most half a chunk.

    Returns:
        float32 ``(num_stems, num_samples, num_channels)``.
    """
    num_samples = waveform.shape[0]
    overlap = overlap_samples
    if not 0 <= overlap <= chunk_samples // 2:
        raise ValueError(f"`overlap_samples` must be in [0, {chunk_samples // 2}]. Received {overlap}.")
    stride = chunk_samples - overlap
    count = 1 if num_samples <= chunk_samples else 1 + -(-(num_samples - chunk_samples) // stride)
    ramp = ((np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1))[:, None]
    output = None
    for index in range(count):
        start = index * stride
        chunk = waveform[start : start + chunk_samples]
        valid = chunk.shape[0]
        if valid < chunk_samples:
            chunk = np.pad(chunk, ((0, chunk_samples - valid), (0, 0)))
        stems = np.asarray(chunk_model(chunk), dtype=np.float32)
        if output is None:
            output = np.zeros((stems.shape[0], num_samples, waveform.shape[1]), np.float32)
        if index > 0:
            stems[:, :overlap] *= ramp
        if index < count - 1:
            stems[:, stride:] *= 1.0 - ramp
        output[:, start : start + valid] += stems[:, :valid]
    return output


class StreamingRunner:
    """Separate a live stream block by block with an exported chunk model; the latency is one chunk.

    The phone-side twin of :class:`stemtf.streaming.StreamingSeparator` (a test pins them
    together): ``process(block)`` returns as many samples as it is given, every stem delayed by
    exactly ``latency_samples`` (the model's chunk); ``flush()`` returns the tail.

    Args:
        chunk_model: Maps a chunk ``(chunk_samples, C)`` to ``(num_stems, chunk_samples, C)``.
        num_stems: Stems the model returns.
        num_channels: Channels of the stream (the model's).
        chunk_samples: The model's fixed chunk length.
        overlap_samples: Cross-fade between neighbouring chunks (at most half a chunk).
    """

    def __init__(
        self, chunk_model: ChunkFunction | ChunkModel, *, num_stems: int, num_channels: int, chunk_samples: int,
        overlap_samples: int,
    ) -> None:
        if not 0 <= overlap_samples <= chunk_samples // 2:
            raise ValueError(f"`overlap_samples` must be in [0, {chunk_samples // 2}]. Received {overlap_samples}.")
        self._model, self._length, self._overlap = chunk_model, chunk_samples, overlap_samples
        self._stride = chunk_samples - overlap_samples
        self._ramp = ((np.arange(overlap_samples, dtype=np.float32) + 0.5) / max(overlap_samples, 1))[:, None]
        self.latency_samples = chunk_samples
        self._pending = np.zeros((0, num_channels), np.float32)
        self._carry = self._tail = None
        self._ready = np.zeros((num_stems, chunk_samples, num_channels), np.float32)  # starts with the latency's silence

    def _run(self, chunk: np.ndarray, *, last: bool) -> np.ndarray:
        stems = np.asarray(self._model(chunk), dtype=np.float32)
        if self._carry is not None:
            stems[:, : self._overlap] = stems[:, : self._overlap] * self._ramp + self._carry
        if not last:
            self._tail = stems[:, self._stride :].copy()
            self._carry = stems[:, self._stride :] * (1.0 - self._ramp)
        return stems

    def process(self, block: np.ndarray) -> np.ndarray:
        """The next block float32 ``(n, C)`` -> stems ``(num_stems, n, C)``, ``latency_samples`` late."""
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        while self._pending.shape[0] >= self._length:
            stems = self._run(self._pending[: self._length], last=False)
            self._ready = np.concatenate([self._ready, stems[:, : self._stride]], axis=1)
            self._pending = self._pending[self._stride :]
        out, self._ready = self._ready[:, : len(block)], self._ready[:, len(block) :]
        return out

    def flush(self) -> np.ndarray:
        """The rest of the stream: the last ``latency_samples`` of every stem."""
        remaining = self._pending.shape[0]
        if self._tail is not None and remaining <= self._overlap:
            last = self._tail[:, :remaining]  # the last chunk already reached the end: its tail stands unfaded
        elif remaining:
            last = self._run(np.pad(self._pending, ((0, self._length - remaining), (0, 0))), last=True)[:, :remaining]
        else:
            last = self._ready[:, :0]
        out, self._ready = np.concatenate([self._ready, last], axis=1), self._ready[:, :0]
        self._pending = self._pending[:0]
        return out


def separate(waveform: np.ndarray, sample_rate: int, model: ChunkModel) -> dict[str, np.ndarray]:
    """Separate a waveform of any rate and mono/stereo layout; stems keep its shape and rate.

    Args:
        waveform: float ``(num_samples, num_channels)`` (1 or 2 channels) or ``(num_samples,)``.
        sample_rate: Its rate in Hz; resampled (with soxr) to the model's and back when different.
        model: The chunk model.

    Returns:
        ``{stem: float32 waveform}`` of the input's shape.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    squeeze = waveform.ndim == 1
    if squeeze:
        waveform = waveform[:, None]
    if waveform.ndim != 2 or waveform.shape[1] not in (1, 2) or waveform.shape[0] == 0:
        raise ValueError(f"`waveform` must be (num_samples, 1 or 2) with samples. Received shape {waveform.shape}.")
    num_samples, num_channels = waveform.shape
    x = waveform
    if sample_rate != model.sample_rate:
        import soxr

        x = soxr.resample(x, sample_rate, model.sample_rate).reshape(-1, num_channels).astype(np.float32)
    x = _convert_channels(x, model.num_channels)
    stems = separate_chunks(x, model, chunk_samples=model.chunk_samples, overlap_samples=model.overlap_samples)
    result = {}
    for stem, out in zip(model.stems, stems):
        if sample_rate != model.sample_rate:
            import soxr

            out = soxr.resample(out, model.sample_rate, sample_rate).reshape(-1, out.shape[1])
        out = _convert_channels(out, num_channels)
        out = np.pad(out[:num_samples], ((0, max(0, num_samples - out.shape[0])), (0, 0))).astype(np.float32)
        result[stem] = out[:, 0] if squeeze else out
    return result


def _convert_channels(waveform: np.ndarray, num_channels: int) -> np.ndarray:
    if waveform.shape[1] == num_channels:
        return waveform
    if num_channels == 2:
        return np.repeat(waveform, 2, axis=1)
    return waveform.mean(axis=1, keepdims=True)


def separate_file(
    path: str | os.PathLike, model_path: str | os.PathLike, output_dir: str | os.PathLike, *, num_threads: int | None = None
) -> dict[str, pathlib.Path]:
    """Separate an audio file (anything soundfile reads) into ``OUTPUT_DIR/STEM.wav`` (16-bit PCM)."""
    import soundfile as sf

    waveform, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    stems = separate(waveform, sample_rate, ChunkModel(model_path, num_threads=num_threads))
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for stem, out in stems.items():
        written[stem] = output_dir / f"{stem}.wav"
        sf.write(str(written[stem]), np.clip(out, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m stemtf.litert_runner MODEL INPUT -o DIR``."""
    parser = argparse.ArgumentParser(description="Separate a file with an exported .tflite/.onnx chunk model (no TensorFlow).")
    parser.add_argument("model", help="the exported waveform chunk model (.tflite or .onnx, with its .json)")
    parser.add_argument("input", help="audio file (WAV, FLAC, OGG, MP3)")
    parser.add_argument("-o", "--output-dir", default="separated", help="folder for STEM.wav (default: separated)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads")
    args = parser.parse_args(argv)
    try:
        written = separate_file(args.input, args.model, args.output_dir, num_threads=args.threads)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"litert_runner: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.input}: {', '.join(str(p) for p in written.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
