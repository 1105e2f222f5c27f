"""Reference runner for exported models: numpy + ai-edge-litert (or onnxruntime), no TensorFlow.

The runner is thin adapters over the library's numpy engine (:mod:`stemtf.dsp`, :mod:`stemtf.plans`):
an exported chunk model or masks model plugs into the same plans :class:`stemtf.separator.Separator`
and :class:`stemtf.streaming.StreamingSeparator` run, so with the same chunk length and overlap the
outputs agree with theirs. A phone app ports the formulas of ``docs/engine.md`` (the STFT, mask
extension, chunk plan and sliding plan, with their latency arithmetic), not this file.

- :class:`ChunkModel` (``NAME.tflite`` / ``NAME.onnx``, waveform chunk -> stems): :func:`separate`
  for a whole waveform, :class:`StreamingRunner` for a live stream (the latency is a chunk);
- :class:`MasksModel` exported for a latency (``stemtf export MODEL --format tflite --latency 0.65``
  -> ``NAME_sliding.tflite``): :class:`SlidingRunner`, down to a tenth of a second.

It never imports TensorFlow::

    python -m stemtf.litert_runner exported/4stems/4stems.tflite song.wav -o separated   # -> separated/song/STEM.wav
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable

import numpy as np

from stemtf import apply, dsp, interpreters, outputs, plans
from stemtf.errors import OutputError, StemtfError
from stemtf.options import DEFAULT_OUTPUT_DIR
from stemtf.export.artifacts import read_description

ChunkFunction = Callable[[np.ndarray], np.ndarray]
MaskFunction = Callable[[np.ndarray], np.ndarray]
signature_function = interpreters.signature_function


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
        self._run = interpreters.open_model(path, self.description.signature, self.description.inputs[0]["name"], num_threads)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Separate one chunk: float32 ``(chunk_samples, num_channels)`` -> ``(num_stems, chunk_samples, num_channels)``."""
        outputs = self._run(np.ascontiguousarray(chunk, dtype=np.float32))
        return np.stack([np.asarray(outputs[stem]) for stem in self.stems])


def separate_chunks(
    waveform: np.ndarray, chunk_model: ChunkFunction | ChunkModel, *, chunk_samples: int, overlap_samples: int
) -> np.ndarray:
    """Separate a whole waveform chunk by chunk with a linear cross-fade (:class:`stemtf.plans.ChunkPlan`).

    Args:
        waveform: float32 ``(num_samples, num_channels)`` at the model's rate and channel count.
        chunk_model: Maps a chunk ``(chunk_samples, num_channels)`` to ``(num_stems, chunk_samples, num_channels)``.
        chunk_samples: Samples per chunk (the model's fixed input length).
        overlap_samples: Samples shared by neighbouring chunks, at most half a chunk.

    Returns:
        float32 ``(num_stems, num_samples, num_channels)``.
    """
    plan = plans.ChunkPlan(chunk_model, num_stems=0, num_channels=waveform.shape[1], chunk_samples=chunk_samples,
                           overlap_samples=overlap_samples)
    return np.concatenate([part for part in (plan.feed(waveform), plan.finish()) if part.shape[1]], axis=1)


class StreamingRunner(plans.Delayed):
    """Separate a live stream block by block with an exported chunk model; the latency is one chunk.

    The phone-side twin of :class:`stemtf.streaming.StreamingSeparator` (the same plan):
    ``process(block)`` returns as many samples as it is given, every stem delayed by exactly
    ``latency_samples`` (the model's chunk); ``flush()`` returns the tail.

    Args:
        chunk_model: Maps a chunk ``(chunk_samples, C)`` to ``(num_stems, chunk_samples, C)``.
        num_stems: Stems the model returns.
        num_channels: Channels of the stream (the model's).
        chunk_samples: The model's fixed chunk length.
        overlap_samples: Cross-fade between neighbouring chunks (at most half a chunk).
    """

    def __init__(self, chunk_model: ChunkFunction | ChunkModel, *, num_stems: int, num_channels: int, chunk_samples: int,
                 overlap_samples: int) -> None:
        plan = plans.ChunkPlan(chunk_model, num_stems=num_stems, num_channels=num_channels, chunk_samples=chunk_samples,
                               overlap_samples=overlap_samples)
        super().__init__(plan, num_stems=num_stems, num_channels=num_channels)


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
        self._run = interpreters.open_model(path, self.description.signature, self.description.inputs[0]["name"], num_threads)

    def __call__(self, magnitude: np.ndarray) -> np.ndarray:
        """float32 ``(1, window_frames, max_bins, C)`` magnitudes -> masks ``(num_stems, window_frames, max_bins, C)``."""
        outputs = self._run(np.ascontiguousarray(magnitude, dtype=np.float32))
        return np.stack([np.asarray(outputs[stem])[0] for stem in self.stems])


class SlidingRunner(plans.Delayed):
    """Separate a live stream block by block with a masks model on a sliding window of STFT frames.

    The phone-side twin of :class:`stemtf.streaming.StreamingSeparator` with ``latency=SECONDS``
    (the same :class:`stemtf.plans.SlidingPlan`): ``process(block)`` returns as many samples as it
    is given, every stem delayed by exactly ``latency_samples``; ``flush()`` returns the tail. The
    plan and its latency are written out in ``docs/engine.md``.

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
        spectral = dsp.Spectral(n_fft, hop_length, max_bins, mask_extension, extension_bins)
        plan = plans.SlidingPlan(masks_model, spectral, num_stems=num_stems, num_channels=num_channels,
                                 window_frames=window_frames, step_frames=step_frames, lookahead_frames=lookahead_frames)
        super().__init__(plan, num_stems=num_stems, num_channels=num_channels)
        self.window_frames, self.step_frames, self.lookahead_frames = window_frames, step_frames, lookahead_frames

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
    x = apply.to_model_format(waveform, sample_rate, model_rate=model.sample_rate, model_channels=model.num_channels)
    stems = separate_chunks(x, model, chunk_samples=model.chunk_samples, overlap_samples=model.overlap_samples)
    result = {}
    for stem, out in zip(model.stems, stems):
        out = apply.from_model_format(out, model_rate=model.sample_rate, sample_rate=sample_rate,
                                      num_channels=num_channels, num_samples=num_samples)
        result[stem] = out[:, 0] if squeeze else out
    return result


def separate_file(path: str | os.PathLike, model: ChunkModel | str | os.PathLike, output_dir: str | os.PathLike, *,
                  num_threads: int | None = None, overwrite: bool = False) -> dict[str, pathlib.Path]:
    """Separate an audio file (anything soundfile reads) into ``OUTPUT_DIR/TRACK/STEM.wav`` (16-bit PCM).

    Every stem is written to a hidden temporary file first and moved into place when all are done;
    existing files are never replaced unless ``overwrite``.

    Raises:
        OutputError: a stem file exists already (without ``overwrite``) or cannot be written.
    """
    import soundfile as sf

    folder = pathlib.Path(output_dir) / pathlib.Path(path).stem
    if not isinstance(model, ChunkModel):
        model = ChunkModel(model, num_threads=num_threads)
    targets = {stem: folder / f"{stem}.wav" for stem in model.stems}
    existing = [target for target in targets.values() if target.exists()]
    if existing and not overwrite:
        raise outputs.exists_error(existing[0])
    waveform, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    stems = separate(waveform, sample_rate, model)
    created = outputs.make_folders(folder)
    temporary, written = {}, []
    try:
        for stem, target in targets.items():
            handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            os.close(handle)
            temporary[stem] = pathlib.Path(name)
            sf.write(str(temporary[stem]), np.clip(stems[stem], -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        for stem, target in targets.items():
            written.append(outputs.place(temporary.pop(stem), target, overwrite=overwrite))
    except BaseException:
        for leftover in [*temporary.values(), *written]:
            leftover.unlink(missing_ok=True)
        outputs.remove_folders(created)
        raise
    return targets


def main(argv: list[str] | None = None) -> int:
    """``python -m stemtf.litert_runner MODEL INPUT... -o DIR [--overwrite]``."""
    parser = argparse.ArgumentParser(description="Separate files with an exported .tflite/.onnx chunk model (no TensorFlow).")
    parser.add_argument("model", help="the exported waveform chunk model (.tflite or .onnx, with its .json)")
    parser.add_argument("inputs", nargs="+", metavar="input", help="audio files (WAV, FLAC, OGG, MP3)")
    parser.add_argument("-o", "--output-dir", default=DEFAULT_OUTPUT_DIR, help=f"root folder: DIR/TRACK/STEM.wav (default: {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing stem files")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads")
    args = parser.parse_args(argv)
    try:
        model = ChunkModel(args.model, num_threads=args.threads)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"litert_runner: error: {error}", file=sys.stderr)
        return 1
    failed = 0
    for path in args.inputs:
        try:
            written = separate_file(path, model, args.output_dir, overwrite=args.overwrite)
        except OutputError as error:  # names the runner's flags (--overwrite, --output-dir), as stemtf's CLI does
            print(f"litert_runner: error: {error.for_cli()}", file=sys.stderr)
            failed += 1
            continue
        except (ValueError, OSError, RuntimeError) as error:
            print(f"litert_runner: error: {path}: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: {', '.join(str(p) for p in written.values())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
