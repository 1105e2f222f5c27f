"""Reference runner for exported models: numpy + ai-edge-litert, no TensorFlow.

This is the code a phone app ports: read the JSON written next to the ``.tflite`` file, cut the
waveform into chunks of ``chunk_samples`` that overlap by ``overlap_samples``, run each chunk
(zero-padded at the end), cross-fade neighbours linearly and add. The chunking is a deliberate,
self-contained copy of :mod:`stemtf.apply`'s (a test pins the two together), so with the same chunk
length and overlap the outputs agree with :class:`stemtf.separator.Separator`. It also runs the ONNX
chunk model (with onnxruntime), which has the same interface.

Streams: :class:`StreamingRunner` runs the chunk model on a live stream (the latency is a chunk);
:class:`SlidingRunner` runs the masks model exported for a latency (``stemtf export MODEL --format
tflite --latency 0.65`` -> ``NAME_sliding.tflite``) with the sliding plan, down to a tenth of a
second. The sliding plan's STFT, mask extension and overlap-add are a second deliberate,
self-contained copy, of :class:`stemtf.sliding.SlidingSeparation` (a test pins the runner to
:class:`stemtf.streaming.StreamingSeparator` on the same ``.tflite`` file).

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
MaskFunction = Callable[[np.ndarray], np.ndarray]


def _open(path: pathlib.Path, signature: str | None, input_name: str, num_threads: int | None) -> Callable[[np.ndarray], dict]:
    """``input -> {output name: array}`` of a ``.tflite`` (ai-edge-litert) or ``.onnx`` (onnxruntime) file."""
    if path.suffix == ".onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return lambda value: dict(zip(names, session.run(names, {input_name: value})))
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    return signature_function(interpreter, signature or "serving_default", input_name)


def signature_function(interpreter, signature: str, input_name: str) -> Callable[[np.ndarray], dict]:
    """``input -> {output name: array}`` of a LiteRT interpreter's signature, its tensors allocated once.

    LiteRT's ``SignatureRunner`` resizes and re-allocates every tensor on every call (20 ms per chunk of
    the 4stems model, 6% of it); the input shape of an exported model is fixed, so this allocates once
    and then only sets, invokes and reads.
    """
    interpreter.allocate_tensors()  # before the runner exists (it holds views of the interpreter's data)
    runner = interpreter.get_signature_runner(signature)
    if getattr(runner, "_subgraph_index", 0) != 0:  # not the main graph: let the runner choose it
        return lambda value: runner(**{input_name: value})
    input_index = runner.get_input_details()[input_name]["index"]
    outputs = {name: details["index"] for name, details in runner.get_output_details().items()}

    def run(value: np.ndarray) -> dict:
        interpreter.set_tensor(input_index, value)
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in outputs.items()}

    return run


def _description(path: pathlib.Path, kind: str, needed: str):
    """The JSON description next to ``path``, which must describe a ``kind`` model (``ValueError`` otherwise)."""
    try:
        description = read_description(path)
    except StemtfError as error:
        raise ValueError(str(error)) from error
    if description.kind != kind:
        raise ValueError(f"{str(path)!r} is a {description.kind!r} model; {needed}.")
    return description


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
        self.description = _description(path, "waveform", "the runner needs a waveform chunk model")
        self.stems: list[str] = list(self.description.stems)
        self.sample_rate: int = self.description.sample_rate
        self.num_channels: int = self.description.num_channels
        self.chunk_samples: int = self.description.chunk_samples
        self.overlap_samples: int = self.description.overlap_samples
        self._run = _open(path, self.description.signature, self.description.inputs[0]["name"], num_threads)

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


class MasksModel:
    """An exported masks model (``.tflite`` or ``.onnx``) and its JSON description.

    Args:
        path: The ``NAME_sliding*.tflite`` (or any ``NAME_masks*``) file; ``PATH.json`` must be next to it.
        num_threads: Interpreter threads (None: the runtime's default).

    Attributes:
        description: The :class:`~stemtf.export.artifacts.ExportDescription` from the JSON.
        stems, window_frames: The stems (output order) and the frames of its fixed input.
    """

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None) -> None:
        path = pathlib.Path(path)
        self.description = _description(path, "masks", "this needs a masks model")
        self.path = path
        self.stems: list[str] = list(self.description.stems)
        self.window_frames: int = self.description.segment_frames
        self._run = _open(path, self.description.signature, self.description.inputs[0]["name"], num_threads)

    def __call__(self, magnitude: np.ndarray) -> np.ndarray:
        """float32 ``(1, window_frames, max_bins, C)`` magnitudes -> masks ``(num_stems, window_frames, max_bins, C)``."""
        outputs = self._run(np.ascontiguousarray(magnitude, dtype=np.float32))
        return np.stack([np.asarray(outputs[stem])[0] for stem in self.stems])


class SlidingRunner:
    """Separate a live stream block by block with a masks model on a sliding window of STFT frames.

    The phone-side twin of :class:`stemtf.streaming.StreamingSeparator` with ``latency=SECONDS``
    (a test pins them together): ``process(block)`` returns as many samples as it is given, every
    stem delayed by exactly ``latency_samples``; ``flush()`` returns the tail. The plan, as in
    :mod:`stemtf.sliding`: the STFT (periodic Hann window, ``n_fft - hop_length`` zeros in front)
    runs continuously; once ``step_frames + lookahead_frames`` frames past the last masked one
    exist, the model sees the last ``window_frames`` magnitude frames (the lowest ``max_bins``
    bins; zeros before the stream's first frame) and the ``step_frames`` frames that end
    ``lookahead_frames`` before the window's end are masked — the masks extended to every bin with
    ``mask_extension`` (``average``: the mean of the top ``extension_bins`` masks; ``edge``: the
    top one) — inverse-transformed and overlap-added with the synthesis window (Hann divided by the
    sum of squared Hann windows over each hop). A sample is final once the last frame covering it
    is masked, so::

        latency_samples = (step_frames + lookahead_frames + n_fft // hop_length - 1) * hop_length

    Args:
        masks_model: Magnitudes float32 ``(1, window_frames, max_bins, C)`` -> masks
            ``(num_stems, window_frames, max_bins, C)``, e.g. a :class:`MasksModel`.
        num_stems, num_channels: Stems the model returns; channels of the stream (the model's).
        n_fft, hop_length, max_bins, mask_extension, extension_bins: The model's STFT and masks
            (its JSON description).
        window_frames, step_frames, lookahead_frames: The plan (the JSON of a model exported
            with ``--latency``).

    Attributes:
        latency_samples: Every stem sample comes out exactly this many samples after its input.
        window_frames, step_frames, lookahead_frames: The plan.
    """

    def __init__(
        self, masks_model: MaskFunction | MasksModel, *, num_stems: int, num_channels: int, n_fft: int, hop_length: int,
        max_bins: int, mask_extension: str, extension_bins: int, window_frames: int, step_frames: int,
        lookahead_frames: int,
    ) -> None:
        if step_frames < 1 or lookahead_frames < 0 or step_frames + lookahead_frames > window_frames:
            raise ValueError(
                f"Need step_frames >= 1, lookahead_frames >= 0 and their sum <= window_frames ({window_frames}). "
                f"Received {step_frames} and {lookahead_frames}."
            )
        if mask_extension not in ("average", "edge"):
            raise ValueError(f"`mask_extension` must be 'average' or 'edge'. Received {mask_extension!r}.")
        self._model, self._num_stems, self._channels = masks_model, num_stems, num_channels
        self._n_fft, self._hop, self._max_bins = n_fft, hop_length, max_bins
        self._extension, self._extension_bins = mask_extension, extension_bins
        self.window_frames, self.step_frames, self.lookahead_frames = window_frames, step_frames, lookahead_frames
        self.latency_samples = (step_frames + lookahead_frames + n_fft // hop_length - 1) * hop_length
        self._analysis = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
        denominator = np.sum(np.square(self._analysis).reshape(n_fft // hop_length, hop_length), axis=0)
        self._synthesis = self._analysis / np.tile(denominator, n_fft // hop_length)
        self._scaled_analysis = self._analysis * np.float32(n_fft)
        self._input = np.zeros((n_fft - hop_length, num_channels), np.float32)  # input not yet in a frame, after the front padding
        self._spectra: list[np.ndarray] = []  # complex (bins, C) frames not yet masked, from frame self._masked on
        self._magnitudes = np.zeros((window_frames, max_bins, num_channels), np.float32)  # frames self._first on
        self._first = -window_frames
        self._computed = self._masked = 0  # frames computed, frames masked and overlap-added
        self._sum = np.zeros((num_stems, n_fft, num_channels), np.float32)  # overlap-add from frame self._masked on
        self._skip = n_fft - hop_length  # leading output samples that are the front padding
        self._received = self._emitted = 0
        self._ready = np.zeros((num_stems, self.latency_samples, num_channels), np.float32)  # starts with the latency's silence

    @classmethod
    def from_model(cls, masks_model: MasksModel) -> "SlidingRunner":
        """The runner of a masks model exported with a latency (its JSON carries the plan).

        Raises:
            ValueError: the model was exported without ``--latency``.
        """
        meta = masks_model.description
        if meta.step_frames is None:
            raise ValueError(
                f"{str(masks_model.path)!r} has no sliding plan; export it with "
                "`stemtf export MODEL --format tflite --latency SECONDS` (NAME_sliding.tflite)."
            )
        return cls(
            masks_model, num_stems=len(meta.stems), num_channels=meta.num_channels, n_fft=meta.n_fft,
            hop_length=meta.hop_length, max_bins=meta.max_bins, mask_extension=meta.mask_extension,
            extension_bins=meta.extension_bins, window_frames=meta.window_frames, step_frames=meta.step_frames,
            lookahead_frames=meta.lookahead_frames,
        )

    def _compute_frames(self) -> None:
        n_fft, hop = self._n_fft, self._hop
        count = (self._input.shape[0] - n_fft) // hop + 1 if self._input.shape[0] >= n_fft else 0
        if not count:
            return
        windows = np.lib.stride_tricks.sliding_window_view(self._input, n_fft, axis=0)[::hop][:count]  # (count, C, n_fft)
        # norm="forward" with the window scaled by n_fft: the same spectra as the default norm, 3.5x faster
        # in numpy 2 (whose default passes an int factor down a slow path)
        spectra = np.fft.rfft(windows * self._scaled_analysis, axis=-1, norm="forward")
        spectra = spectra.transpose(0, 2, 1).astype(np.complex64)  # (count, bins, C)
        self._spectra.extend(spectra)
        self._magnitudes = np.concatenate([self._magnitudes, np.abs(spectra[:, : self._max_bins, :])])
        self._computed += count
        self._input = self._input[count * hop :]

    def _extend(self, masks: np.ndarray) -> np.ndarray:
        """Masks ``(stems, count, max_bins, C)`` -> every bin ``(stems, count, n_fft // 2 + 1, C)``."""
        num_bins = self._n_fft // 2 + 1
        if num_bins == self._max_bins:
            return masks
        if self._extension == "average":
            fill = masks[..., self._max_bins - self._extension_bins :, :].mean(axis=-2, keepdims=True)
        else:
            fill = masks[..., self._max_bins - 1 :, :]
        shape = masks.shape[:-2] + (num_bins - self._max_bins, masks.shape[-1])
        return np.concatenate([masks, np.broadcast_to(fill, shape)], axis=-2)

    def _run(self, *, final: bool) -> list[np.ndarray]:
        """Mask every step whose window is complete (or, when ``final``, every frame left); the samples that became final."""
        out = []
        step, lookahead, window = self.step_frames, self.lookahead_frames, self.window_frames
        while self._masked < self._computed and (final or self._masked + step + lookahead <= self._computed):
            end = self._masked + step + lookahead  # the window's end (exclusive), in frames
            magnitudes = self._magnitudes[end - window - self._first : end - self._first]
            missing = window - magnitudes.shape[0]  # frames past the end of the stream: zeros
            if missing > 0:
                magnitudes = np.concatenate([magnitudes, np.zeros((missing,) + magnitudes.shape[1:], np.float32)])
            masks = np.asarray(self._model(np.ascontiguousarray(magnitudes[None])), np.float32)
            count = min(step, self._computed - self._masked)
            masks = self._extend(masks[:, window - lookahead - step : window - lookahead - step + count])
            frames = np.stack(self._spectra[:count])  # (count, bins, C)
            del self._spectra[:count]
            signal = np.fft.irfft(np.ascontiguousarray(np.swapaxes(frames[None] * masks, -1, -2)), n=self._n_fft, axis=-1).astype(np.float32)
            signal *= self._synthesis  # (stems, count, C, n_fft)
            out.append(self._overlap_add(np.swapaxes(signal, -1, -2)))
            self._masked += count
            drop = max(0, self._masked + step + lookahead - window - self._first)  # magnitudes no window needs again
            self._magnitudes, self._first = self._magnitudes[drop:], self._first + drop
        return out

    def _overlap_add(self, frames: np.ndarray) -> np.ndarray:
        """Add masked frames ``(stems, count, n_fft, C)``; return the samples no later frame touches."""
        hop, count = self._hop, frames.shape[1]
        total = np.concatenate([self._sum, np.zeros((self._num_stems, count * hop, self._channels), np.float32)], axis=1)
        for i in range(count):
            total[:, i * hop : i * hop + self._n_fft] += frames[:, i]
        done, self._sum = total[:, : count * hop], total[:, count * hop :]
        skip = min(self._skip, done.shape[1])
        self._skip -= skip
        return done[:, skip:]

    def _queue(self, parts: list[np.ndarray]) -> None:
        """Queue the final samples, never past the input's length (the rest is the STFT's end padding)."""
        if parts:
            out = np.concatenate(parts, axis=1)[:, : max(self._received - self._emitted, 0)]
            self._emitted += out.shape[1]
            self._ready = np.concatenate([self._ready, out], axis=1)

    def process(self, block: np.ndarray) -> np.ndarray:
        """The next block float32 ``(n, C)`` -> stems ``(num_stems, n, C)``, ``latency_samples`` late."""
        block = np.asarray(block, dtype=np.float32)
        self._received += block.shape[0]
        self._input = np.concatenate([self._input, block])
        self._compute_frames()
        self._queue(self._run(final=False))
        out, self._ready = self._ready[:, : block.shape[0]], self._ready[:, block.shape[0] :]
        return out

    def flush(self) -> np.ndarray:
        """The rest of the stream: the last ``latency_samples`` of every stem."""
        n_fft, hop = self._n_fft, self._hop
        # The end padding: every frame that touches an input sample exists.
        self._input = np.concatenate([self._input, np.zeros((n_fft - hop + (-self._received) % hop, self._channels), np.float32)])
        self._compute_frames()
        parts = self._run(final=True)
        parts.append(self._sum)  # the tail (beyond it, only the end padding)
        self._queue(parts)
        out, self._ready = self._ready, self._ready[:, :0]
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
