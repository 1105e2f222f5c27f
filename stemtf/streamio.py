"""The stream plumbing of ``stemtf stream``: PCM in from a file or a pipe, stems out to files or stdout.

Input is a WAV stream (PCM, what ``ffmpeg ... -f wav -`` writes, read with the standard library's
``wave`` so a pipe works) or raw PCM (``--raw`` with the rate, channels and sample format given).
Output is one WAV file per selected stream, or raw 16-bit PCM on stdout for a single stream
(``--keep vocals`` or ``--remove vocals``), so ``stemtf stream`` sits in a pipe between ffmpeg and
a player.
"""

from __future__ import annotations

import io
import sys
import wave
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np

from stemtf.errors import AudioError, OptionError

MIN_SAMPLE_RATE = 1000  # Hz, the lowest rate a stream is resampled from
SAMPLE_FORMATS = {"s16le": ("<i2", 32768.0), "s32le": ("<i4", 2147483648.0), "f32le": ("<f4", 1.0)}


class _Source:
    """A context manager that closes the source."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PcmSource(_Source):
    """Blocks of float32 ``(n, channels)`` from a WAV or raw PCM byte stream.

    Args:
        stream: A binary file object (a pipe is fine: nothing seeks).
        raw: ``None`` for WAV, else ``(sample_rate, channels, sample_format)``.
    """

    def __init__(self, stream: BinaryIO, *, raw: tuple[int, int, str] | None = None) -> None:
        self._stream = stream
        if raw is None:
            try:
                self._wave = wave.open(stream, "rb")
            except (wave.Error, EOFError) as error:
                raise AudioError(
                    f"The input is not a PCM WAV stream ({error}); give a file's path for other formats (MP3, FLAC, ...), "
                    "or pass --raw with --rate, --channels and --sample-format for raw PCM."
                ) from error
            width = self._wave.getsampwidth()
            if width not in (2, 4):
                raise AudioError(f"WAV streams of {8 * width}-bit samples are not supported; use 16- or 32-bit PCM (ffmpeg -c:a pcm_s16le).")
            self.sample_rate, self.num_channels = self._wave.getframerate(), self._wave.getnchannels()
            self._dtype, self._scale = SAMPLE_FORMATS["s16le" if width == 2 else "s32le"]
        else:
            self._wave = None
            self.sample_rate, self.num_channels, sample_format = raw
            check_raw(self.sample_rate, self.num_channels, sample_format)
            self._dtype, self._scale = SAMPLE_FORMATS[sample_format]
        if self.num_channels not in (1, 2):
            raise AudioError(f"The stream has {self.num_channels} channels; stemtf streams mono or stereo (ffmpeg ... -ac 2).")
        self._frame_bytes = np.dtype(self._dtype).itemsize * self.num_channels
        self._leftover = b""

    def close(self) -> None:
        self._stream.close()

    def blocks(self, num_samples: int) -> Iterator[np.ndarray]:
        """Blocks of up to ``num_samples`` samples until the stream ends (a trailing partial sample is dropped)."""
        while True:
            if self._wave is not None:
                data = self._wave.readframes(num_samples)
            else:
                data = self._leftover + self._stream.read(num_samples * self._frame_bytes - len(self._leftover))
                usable = len(data) - len(data) % self._frame_bytes
                data, self._leftover = data[:usable], data[usable:]
                if not data and self._leftover:
                    return
            if not data:
                return
            samples = np.frombuffer(data, dtype=self._dtype).reshape(-1, self.num_channels)
            yield (samples.astype(np.float32) / self._scale)


def check_raw(sample_rate: int, num_channels: int, sample_format: str) -> None:
    """The layout of raw PCM input: a rate of at least 1000 Hz, mono or stereo, a known sample format.

    Raises:
        OptionError: (``sample_rate``, ``num_channels``, ``sample_format``) a value out of range.
    """
    if sample_format not in SAMPLE_FORMATS:
        raise OptionError("sample_format", f"{{option}} must be one of {', '.join(SAMPLE_FORMATS)}. Received {sample_format!r}.")
    if not sample_rate >= MIN_SAMPLE_RATE:
        raise OptionError("sample_rate", f"{{option}} must be >= {MIN_SAMPLE_RATE} Hz. Received {sample_rate}.")
    if num_channels not in (1, 2):
        raise OptionError("num_channels", f"{{option}} must be 1 or 2 (mono or stereo). Received {num_channels}.")


class ReaderSource(_Source):
    """:class:`PcmSource`'s interface over a stemtf audio reader (any file :func:`stemtf.audio.open_audio` reads)."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.sample_rate, self.num_channels = reader.sample_rate, reader.num_channels

    def close(self) -> None:
        self._reader.close()

    def blocks(self, num_samples: int) -> Iterator[np.ndarray]:
        """Blocks of up to ``num_samples`` samples until the input ends."""
        while True:
            block = self._reader.read(num_samples)
            if not block.shape[0]:
                return
            yield block


class StemSink:
    """Where a stream's outputs go: one WAV file each (written whole or not at all), or stdout.

    Args:
        selected: ``{output: stems summed into it}`` (:func:`select_outputs`).
        targets: ``{output: path}``; empty for raw 16-bit PCM on stdout (one output).
        sample_rate, num_channels: The stream's.
        trim: Leading samples to drop (the latency, for outputs aligned with the input; 0: live);
            an aligned output ends exactly with the input (the tail flushed).
        overwrite: Replace existing files when committing.
    """

    def __init__(self, selected: dict[str, tuple[str, ...]], targets: dict, *, sample_rate: int, num_channels: int,
                 trim: float = 0, overwrite: bool = False) -> None:
        from stemtf import outputs
        from stemtf.audio import AudioWriter

        self._selected, self._overwrite = selected, overwrite
        self._trim, self._skipped, self._received, self._sent = int(round(trim)), 0, 0, 0
        self._writers: dict = {}
        self._created = []
        try:
            for target in targets.values():
                self._created += outputs.make_folders(target.parent)
            outputs.remove_stale_temporaries(targets.values())  # what a killed run left next to these outputs
            for name, target in targets.items():
                self._writers[name] = AudioWriter(target, sample_rate=sample_rate, num_channels=num_channels)
        except BaseException:
            self.abort()
            raise

    def send(self, stems: dict[str, np.ndarray], received: int, *, last: bool = False) -> None:
        """Write the outputs of ``stems`` (every stem's next samples); ``received``: input samples since the last call."""
        self._received += received
        for name, parts in self._selected.items():
            block = sum(stems[stem] for stem in parts)
            skip = min(block.shape[0], self._trim - self._skipped)
            block = block[skip:]
            if last and self._trim:  # aligned: exactly as long as the input
                wanted = self._received - self._sent
                block = np.pad(block[:wanted], ((0, max(0, wanted - block.shape[0])), (0, 0)))
            if name in self._writers:
                self._writers[name].write(block)
            else:
                sys.stdout.buffer.write(to_pcm16(block))
                sys.stdout.buffer.flush()
        self._skipped += skip
        self._sent += block.shape[0]

    def commit(self) -> None:
        """Put every file in place; one that cannot be (it appeared meanwhile) does not stop the others."""
        errors = []
        for writer in self._writers.values():
            try:
                writer.commit(overwrite=self._overwrite)
            except Exception as error:  # noqa: BLE001 (reported below, after the others are committed)
                writer.abort()
                errors.append(error)
        if errors:
            raise errors[0]

    def abort(self) -> None:
        """Delete every temporary file and the folders this sink made."""
        from stemtf import outputs

        for writer in self._writers.values():
            writer.abort()
        outputs.remove_folders(self._created)


def select_outputs(stems: Sequence[str], keep: Sequence[str], remove: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``{output name: stems summed into it}``: the kept stems one by one, or one mix without the removed ones.

    Raises:
        OptionError: an unknown stem, both --keep and --remove, or nothing left.
    """
    if keep and remove:
        raise OptionError("keep", "Give either {option} or {option:remove}, not both.")
    for keyword, names in (("keep", keep), ("remove", remove)):
        unknown = [name for name in names if name not in stems]
        if unknown:
            raise OptionError(keyword, f"{{option}} {unknown[0]!r} is not a stem of this model ({', '.join(stems)}).")
    if remove:
        rest = tuple(stem for stem in stems if stem not in remove)
        if not rest:
            raise OptionError("remove", "{option} leaves no stem to output.")
        return {"without-" + "-".join(remove): rest}
    return {stem: (stem,) for stem in (keep or stems)}


def to_pcm16(block: np.ndarray) -> bytes:
    """float ``(n, channels)`` -> interleaved little-endian 16-bit PCM bytes (clipped)."""
    return (np.clip(block, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()


def stdin_binary() -> BinaryIO:
    """Standard input as bytes (pytest's capture replaces it with an object without ``buffer``)."""
    return getattr(sys.stdin, "buffer", None) or io.BytesIO(b"")
