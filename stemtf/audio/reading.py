"""Reading waveforms: soundfile first (WAV, FLAC, OGG, MP3), ffmpeg for anything else; streaming readers."""

from __future__ import annotations

import io
import math
import os
import pathlib
import subprocess

import numpy as np
import soundfile as sf
import soxr

from stemtf.audio.ffmpeg import _SEEK_PREROLL, FfmpegReader, _ffmpeg_command, _ffmpeg_failure, _ffprobe, _require_ffmpeg
from stemtf.audio.formats import AudioInfo, AudioReader
from stemtf.errors import AudioError
from stemtf.options import DEFAULT_OFFSET, check_input_file

# What soundfile raises for a file it cannot read (a container or codec libsndfile lacks): the cue
# for every reader here to try ffmpeg instead.
_SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError)


class ArrayReader:
    """Serve an in-memory waveform ``(num_samples, num_channels)`` block by block."""

    def __init__(self, waveform: np.ndarray, sample_rate: int) -> None:
        self.waveform = waveform
        self.sample_rate = int(sample_rate)
        self.num_channels = waveform.shape[1]
        self.num_samples: int | None = waveform.shape[0]
        self._position = 0

    def read(self, num_samples: int) -> np.ndarray:
        block = self.waveform[self._position : self._position + num_samples]
        self._position += block.shape[0]
        return np.ascontiguousarray(block, dtype=np.float32)

    def close(self) -> None:
        pass


# libsndfile's frame count for a file whose header does not give its length (SF_COUNT_MAX).
_UNKNOWN_FRAMES = 1 << 62


def _count_frames(path: pathlib.Path) -> int:
    """The length of a file whose header does not give it, by decoding it once with ffmpeg."""
    reader = FfmpegReader(path, 0.0)
    try:
        total = 0
        while count := reader.read(1 << 18).shape[0]:
            total += count
        return total
    finally:
        reader.close()


def _libsndfile_reason(error: sf.LibsndfileError) -> str:
    """libsndfile's words without its "Error : " prefix or final period: "flac decoder lost sync"."""
    reason = error.error_string.strip().rstrip(".")
    return reason[len("Error :"):].strip() if reason.startswith("Error :") else reason


class _SoundfileReader:
    def __init__(self, path: pathlib.Path, offset: float) -> None:
        self._path = path
        self._file = sf.SoundFile(str(path))
        self.sample_rate = self._file.samplerate
        self.num_channels = self._file.channels
        start = int(round(offset * self.sample_rate))
        total = self._file.frames
        if total >= _UNKNOWN_FRAMES:
            # A streamed FLAC (written to a pipe) has no length in its header: libsndfile reports
            # 2**63 - 1 frames and fails on every seek, which its reads do too. ffmpeg reads it.
            self._file.close()
            raise RuntimeError("length unknown to libsndfile")
        if start >= total > 0:
            self._file.close()
            raise AudioError(
                f"{{option:offset}} {offset:g} s is past the end of {str(path)!r} ({total / self.sample_rate:.2f} s long)."
            )
        if start:
            self._file.seek(start)
        self.num_samples: int | None = max(total - start, 0)

    def read(self, num_samples: int) -> np.ndarray:
        position = self._file.tell()
        try:
            return self._file.read(num_samples, dtype="float32", always_2d=True)
        except sf.LibsndfileError as error:
            # The header was fine, the data is not: a truncated file (an interrupted download or
            # copy) or one damaged mid-file. One sentence, never libsndfile's exception.
            raise AudioError(
                f"Cannot decode {str(self._path)!r} near {position / self.sample_rate:.1f} s: "
                f"{_libsndfile_reason(error)} (the file is truncated or corrupt; download or re-encode it again)."
            ) from None

    def close(self) -> None:
        self._file.close()


def probe_audio(path: str | os.PathLike, *, stream: int | None = None) -> AudioInfo:
    """Sample rate, channels and length of an audio file, from its header (nothing is decoded).

    Args:
        path: The file: WAV, FLAC, OGG, MP3 through soundfile, anything else through ffprobe.
        stream: Absolute stream index in a multi-stream container (MUSDB18 ``.stem.mp4``: 0 is the
            mixture), or None for the file's first audio stream.

    Raises:
        AudioError: the file is missing, empty, unreadable, corrupt, has no such audio stream, or
            needs ffmpeg and ffmpeg is not installed.
    """
    path = check_input_file(path)
    if stream is None:
        try:
            info = sf.info(str(path))
            if info.frames < _UNKNOWN_FRAMES:
                return AudioInfo(sample_rate=info.samplerate, num_channels=info.channels, num_samples=info.frames)
            return AudioInfo(sample_rate=info.samplerate, num_channels=info.channels, num_samples=_count_frames(path))
        except _SOUNDFILE_ERRORS:
            pass
    return _ffprobe(path, stream)


def read_segment(
    path: str | os.PathLike, start: int, num_samples: int, *, sample_rate: int | None = None, stream: int | None = None
) -> np.ndarray:
    """Read ``num_samples`` samples from sample ``start``, without decoding the rest of the file.

    soundfile reads the part directly; any other file (or a chosen ``stream``) is decoded by ffmpeg,
    which seeks on the input side.

    Args:
        path: The file.
        start: First sample to read, counted at the file's own sample rate.
        num_samples: Number of samples to read, at the file's own sample rate.
        sample_rate: The file's sample rate (:func:`probe_audio`) when the caller knows it; it spares
            ffmpeg reads a probe, and a file whose rate differs is an error.
        stream: Absolute stream index in a multi-stream container (MUSDB18 ``.stem.mp4``), or None
            for the file's first audio stream.

    Returns:
        float32 ``(n, num_channels)`` with the file's own channels; ``n`` is ``num_samples`` except
        at the end of the file (0 from the end on).

    Raises:
        ValueError: ``start`` or ``num_samples`` is negative.
        AudioError: the file is missing, unreadable or corrupt, is not at ``sample_rate``, or needs
            ffmpeg and ffmpeg is not installed.
    """
    if start < 0 or num_samples < 0:
        raise ValueError(f"`start` and `num_samples` must be >= 0. Received start={start}, num_samples={num_samples}.")
    if stream is None:
        try:
            with sf.SoundFile(str(path)) as handle:
                _check_rate(path, handle.samplerate, sample_rate)
                if handle.frames >= _UNKNOWN_FRAMES:  # cannot seek (a streamed FLAC): ffmpeg below
                    raise RuntimeError("length unknown to libsndfile")
                if start >= handle.frames:
                    return np.zeros((0, handle.channels), np.float32)
                try:
                    handle.seek(start)
                    return handle.read(num_samples, dtype="float32", always_2d=True)
                except sf.LibsndfileError as error:
                    # The header was fine, the data is not (a FLAC corrupted mid-file): ffmpeg would
                    # skip the damage and hand back silence in its place, so stop here instead.
                    raise AudioError(
                        f"Cannot decode {str(path)!r} near {start / handle.samplerate:.1f} s: "
                        f"{_libsndfile_reason(error)} (the file is corrupt; re-encode or remove it)."
                    ) from None
        except _SOUNDFILE_ERRORS:
            pass
    path = check_input_file(path)
    _require_ffmpeg(path)
    if sample_rate is None:
        sample_rate = _ffprobe(path, stream).sample_rate
    preroll = min(start, _SEEK_PREROLL)
    command = _ffmpeg_command(
        path, offset=(start - preroll) / sample_rate, duration=(preroll + num_samples) / sample_rate, stream=stream, output="wav"
    )
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise AudioError(_ffmpeg_failure(path, result.stderr))
    try:
        # WAV, not raw samples: its header tells the channels, which saves an ffprobe per read.
        block, rate = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    except _SOUNDFILE_ERRORS as error:
        raise AudioError(f"ffmpeg gave no readable audio for {str(path)!r}: {error}".splitlines()[0]) from error
    _check_rate(path, rate, sample_rate)
    return block[preroll : preroll + num_samples]


def _check_rate(path: str | os.PathLike, rate: int, expected: int | None) -> None:
    if expected is not None and rate != expected:
        raise AudioError(f"{str(path)!r} is sampled at {rate} Hz, not {expected} Hz as expected; did the file change?")


def open_audio(path: str | os.PathLike, *, offset: float = DEFAULT_OFFSET) -> AudioReader:
    """Open an audio file for block reads, starting ``offset`` seconds in.

    WAV, FLAC, OGG and MP3 are read with soundfile; anything else ffmpeg decodes (m4a, aac, mp4, ...)
    goes through ffmpeg.

    Raises:
        AudioError: the file is missing, empty, a directory, unreadable, corrupt, or ``offset`` is
            past its end.
    """
    path = check_input_file(path)
    if offset < 0:
        raise AudioError(f"{{option:offset}} must be >= 0 seconds. Received {offset:g}.")
    try:
        reader: AudioReader = _SoundfileReader(path, offset)
    except _SOUNDFILE_ERRORS:
        reader = FfmpegReader(path, offset)
    if reader.num_samples == 0:
        reader.close()
        raise AudioError(f"Input {str(path)!r} holds no audio samples.")
    return reader


class LimitedReader:
    """Stop a reader after ``max_samples`` samples (``--duration``)."""

    def __init__(self, reader: AudioReader, max_samples: int) -> None:
        self._reader = reader
        self._left = max_samples
        self.sample_rate = reader.sample_rate
        self.num_channels = reader.num_channels
        total = reader.num_samples
        self.num_samples = max_samples if total is None else min(total, max_samples)

    def read(self, num_samples: int) -> np.ndarray:
        block = self._reader.read(min(num_samples, self._left)) if self._left > 0 else np.zeros((0, self.num_channels), np.float32)
        self._left -= block.shape[0]
        return block

    def close(self) -> None:
        self._reader.close()


class FiniteReader:
    """Fail at the first NaN or infinite sample, which would otherwise turn every stem into noise or NaN.

    Args:
        reader: The reader to check, at the file's own rate.
        name: How to name the input in the error (its path, or "the upload").
    """

    def __init__(self, reader: AudioReader, name: str) -> None:
        self._reader = reader
        self._name = name
        self._position = 0
        self.sample_rate = reader.sample_rate
        self.num_channels = reader.num_channels
        self.num_samples = reader.num_samples

    def read(self, num_samples: int) -> np.ndarray:
        block = self._reader.read(num_samples)
        finite = np.isfinite(block)
        if not finite.all():
            first = self._position + int(np.argmin(finite.all(axis=1)))
            raise AudioError(
                f"{self._name} contains NaN or infinite samples (from {first / self.sample_rate:.3f} s); "
                "repair or re-export it (e.g. as 16-bit WAV)."
            )
        self._position += block.shape[0]
        return block

    def close(self) -> None:
        self._reader.close()


class ResamplingReader:
    """Resample a reader's blocks to ``sample_rate`` as a stream (soxr, high quality)."""

    def __init__(self, reader: AudioReader, sample_rate: int, block_size: int = 65536) -> None:
        self._reader = reader
        self.sample_rate = sample_rate
        self.num_channels = reader.num_channels
        total = reader.num_samples
        self.num_samples = None if total is None else math.ceil(total * sample_rate / reader.sample_rate)
        self._stream = soxr.ResampleStream(reader.sample_rate, sample_rate, self.num_channels, dtype="float32")
        self._block_size = block_size
        self._buffer = np.zeros((0, self.num_channels), np.float32)
        self._done = False

    def read(self, num_samples: int) -> np.ndarray:
        pieces = [self._buffer]
        have = self._buffer.shape[0]
        while have < num_samples and not self._done:
            block = self._reader.read(self._block_size)
            last = block.shape[0] == 0
            out = self._stream.resample_chunk(block, last=last).reshape(-1, self.num_channels)
            pieces.append(out)
            have += out.shape[0]
            self._done = last
        data = np.concatenate(pieces)
        self._buffer = data[num_samples:]
        return data[:num_samples]

    def close(self) -> None:
        self._reader.close()


def convert_channels(waveform: np.ndarray, num_channels: int) -> np.ndarray:
    """Mono -> stereo duplicates the channel; stereo -> mono averages the two."""
    have = waveform.shape[1]
    if have == num_channels:
        return waveform
    if have == 1 and num_channels == 2:
        return np.repeat(waveform, 2, axis=1)
    if have == 2 and num_channels == 1:
        return waveform.mean(axis=1, keepdims=True)
    raise AudioError(f"Cannot convert {have} channels to {num_channels}.")


def read_audio(path: str | os.PathLike, *, offset: float = DEFAULT_OFFSET, duration: float | None = None) -> tuple[np.ndarray, int]:
    """Read a whole file (or ``duration`` seconds of it): ``(waveform, sample_rate)``."""
    reader = open_audio(path, offset=offset)
    try:
        if duration is not None:
            reader = LimitedReader(reader, int(round(duration * reader.sample_rate)))
        blocks = []
        while True:
            block = reader.read(1 << 20)
            if not block.shape[0]:
                break
            blocks.append(block)
        return np.concatenate(blocks), reader.sample_rate
    finally:
        reader.close()
