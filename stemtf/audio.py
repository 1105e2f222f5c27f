"""Read and write waveforms: soundfile first, ffmpeg for other containers; streaming, numpy only.

A waveform is float32 ``(num_samples, num_channels)``. Readers and writers work block by block so
that separating a file of any length keeps memory flat: :func:`open_audio` returns a reader,
:class:`AudioWriter` writes to a temporary file and renames it into place on :meth:`~AudioWriter.commit`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Protocol

import numpy as np
import soundfile as sf
import soxr

from stemtf.errors import AudioError, OutputError

FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
BIT_DEPTHS = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}
# Nominal Vorbis bitrates (kbps, 44.1 kHz stereo) at quality 0, 1, ... 10.
_VORBIS_KBPS = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)


class AudioReader(Protocol):
    """A source of float32 ``(n, num_channels)`` blocks."""

    sample_rate: int
    num_channels: int
    num_samples: int | None  # None when the length is not known in advance

    def read(self, num_samples: int) -> np.ndarray:
        """Up to ``num_samples`` samples; fewer only at the end, an empty array after it."""

    def close(self) -> None:
        """Release the file or process."""


def check_input_file(path: str | os.PathLike) -> pathlib.Path:
    """Fail with a clear message unless ``path`` is an existing, non-empty, readable file."""
    path = pathlib.Path(path)
    if not path.exists():
        raise AudioError(f"Input {str(path)!r} does not exist; check the path.")
    if path.is_dir():
        raise AudioError(f"Input {str(path)!r} is a directory; give an audio file.")
    if path.stat().st_size == 0:
        raise AudioError(f"Input {str(path)!r} is an empty file; give a file with audio in it.")
    if not os.access(path, os.R_OK):
        raise AudioError(f"Input {str(path)!r} cannot be read (permission denied).")
    return path


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


class _SoundfileReader:
    def __init__(self, path: pathlib.Path, offset: float) -> None:
        self._file = sf.SoundFile(str(path))
        self.sample_rate = self._file.samplerate
        self.num_channels = self._file.channels
        start = int(round(offset * self.sample_rate))
        total = self._file.frames
        if start >= total > 0:
            self._file.close()
            raise AudioError(
                f"--offset {offset:g} s is past the end of {str(path)!r} ({total / self.sample_rate:.2f} s long)."
            )
        if start:
            self._file.seek(start)
        self.num_samples: int | None = max(total - start, 0)

    def read(self, num_samples: int) -> np.ndarray:
        return self._file.read(num_samples, dtype="float32", always_2d=True)

    def close(self) -> None:
        self._file.close()


class _FfmpegReader:
    """Decode anything ffmpeg reads into float32 PCM through a pipe, at the file's own rate."""

    def __init__(self, path: pathlib.Path, offset: float) -> None:
        probe = _ffprobe(path)
        self.sample_rate = probe["sample_rate"]
        self.num_channels = probe["channels"]
        duration = probe["duration"]
        if duration is not None and offset >= duration:
            raise AudioError(f"--offset {offset:g} s is past the end of {str(path)!r} ({duration:.2f} s long).")
        self.num_samples = None if duration is None else int(round((duration - offset) * self.sample_rate))
        command = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{offset:.6f}", "-i", str(path), "-vn",
                   "-f", "f32le", "-acodec", "pcm_f32le", "-"]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._path = path

    def read(self, num_samples: int) -> np.ndarray:
        wanted = num_samples * self.num_channels * 4
        data = b""
        while len(data) < wanted:
            piece = self._process.stdout.read(wanted - len(data))
            if not piece:
                break
            data += piece
        if len(data) < wanted and self._process.wait() != 0:
            message = self._process.stderr.read().decode(errors="replace").strip().splitlines()
            raise AudioError(f"ffmpeg failed to decode {str(self._path)!r}: {message[-1] if message else 'unknown error'}.")
        usable = len(data) // (4 * self.num_channels) * 4 * self.num_channels
        return np.frombuffer(data[:usable], dtype="<f4").reshape(-1, self.num_channels).copy()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()
        self._process.stderr.close()


def _ffprobe(path: pathlib.Path) -> dict:
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        if path.suffix.lower().lstrip(".") in FORMATS:
            raise AudioError(f"Cannot decode {str(path)!r}: the file is corrupt or not audio.")
        raise AudioError(
            f"Cannot decode {str(path)!r}: it is not WAV/FLAC/OGG/MP3 and ffmpeg is not installed "
            "(install it: apt-get install ffmpeg, or convert the file to WAV)."
        )
    command = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=sample_rate,channels:format=duration", "-of", "json", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    info = json.loads(result.stdout or "{}") if result.returncode == 0 else {}
    streams = info.get("streams") or []
    if not streams:
        raise AudioError(f"Cannot decode {str(path)!r}: no audio stream found (corrupt or not an audio file).")
    duration = info.get("format", {}).get("duration")
    return {
        "sample_rate": int(streams[0]["sample_rate"]),
        "channels": int(streams[0]["channels"]),
        "duration": float(duration) if duration not in (None, "N/A") else None,
    }


def open_audio(path: str | os.PathLike, *, offset: float = 0.0) -> AudioReader:
    """Open an audio file for block reads, starting ``offset`` seconds in.

    WAV, FLAC, OGG and MP3 are read with soundfile; anything else ffmpeg decodes (m4a, aac, mp4, ...)
    goes through ffmpeg.

    Raises:
        AudioError: the file is missing, empty, a directory, unreadable, corrupt, or ``offset`` is
            past its end.
    """
    path = check_input_file(path)
    if offset < 0:
        raise AudioError(f"--offset must be >= 0 seconds. Received {offset:g}.")
    try:
        reader: AudioReader = _SoundfileReader(path, offset)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        reader = _FfmpegReader(path, offset)
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


def check_output_options(fmt: str, bit_depth: int, bitrate: int | None) -> None:
    """Fail with a clear message unless the output format, bit depth and bitrate go together."""
    if fmt not in FORMATS:
        raise OutputError(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}.")
    if bit_depth not in BIT_DEPTHS:
        raise OutputError(f"--bit-depth must be 16, 24 or 32. Received {bit_depth}.")
    output_subtype(fmt, bit_depth)
    if bitrate is not None and not 32 <= bitrate <= 320:
        raise OutputError(f"--bitrate must be between 32 and 320 kbps. Received {bitrate}.")


def output_subtype(fmt: str, bit_depth: int) -> str | None:
    """The soundfile subtype for ``fmt`` at ``bit_depth`` (16, 24 or 32 = float)."""
    if fmt == "wav":
        return BIT_DEPTHS[bit_depth]
    if fmt == "flac":
        if bit_depth == 32:
            raise OutputError("FLAC stores at most 24 bits; use --bit-depth 16 or 24, or --format wav for float.")
        return BIT_DEPTHS[bit_depth]
    return {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[fmt]


class AudioWriter:
    """Write blocks to ``path`` through a temporary file in the same folder.

    Nothing appears at ``path`` until :meth:`commit`; :meth:`abort` leaves no trace. Blocks at
    ``input_rate`` are resampled to ``sample_rate`` on the fly.

    Args:
        path: Final file path; its folder must exist.
        sample_rate: Sample rate of the file, in Hz.
        num_channels: Channels of the file.
        fmt: ``wav``, ``flac``, ``ogg`` or ``mp3``.
        bit_depth: 16, 24 or 32 (float) for WAV/FLAC.
        bitrate: kbps for MP3 (constant bitrate) and OGG (nominal Vorbis quality); None for the default.
        input_rate: Rate of the blocks given to :meth:`write`; defaults to ``sample_rate``.
    """

    def __init__(
        self,
        path: pathlib.Path,
        *,
        sample_rate: int,
        num_channels: int,
        fmt: str = "wav",
        bit_depth: int = 16,
        bitrate: int | None = None,
        input_rate: int | None = None,
    ) -> None:
        self.path = pathlib.Path(path)
        self.num_channels = num_channels
        subtype = output_subtype(fmt, bit_depth)
        self._clip = subtype.startswith("PCM") or fmt in ("ogg", "mp3")
        options = {}
        if bitrate is not None and fmt == "mp3":
            # libsndfile maps the compression level linearly onto 320..32 kbps, then to an MPEG rate.
            options = {"compression_level": min(max((320 - bitrate) / 288, 0.0), 0.99), "bitrate_mode": "CONSTANT"}
        elif bitrate is not None and fmt == "ogg":
            quality = float(np.interp(bitrate, _VORBIS_KBPS, np.arange(11)))
            options = {"compression_level": min(max(1.0 - quality / 10.0, 0.0), 0.99)}
        handle, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(handle)
        self._tmp = pathlib.Path(tmp)
        try:
            self._file = sf.SoundFile(
                tmp, "w", samplerate=sample_rate, channels=num_channels, format=FORMATS[fmt], subtype=subtype, **options
            )
        except Exception as error:
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"Cannot write {fmt} to {str(self.path)!r}: {error}".splitlines()[0]) from None
        self._resampler = None
        if input_rate is not None and input_rate != sample_rate:
            self._resampler = soxr.ResampleStream(input_rate, sample_rate, num_channels, dtype="float32")

    def write(self, block: np.ndarray, *, last: bool = False) -> None:
        """Append a float32 ``(n, num_channels)`` block; ``last=True`` flushes the resampler."""
        if self._resampler is not None:
            block = self._resampler.resample_chunk(np.ascontiguousarray(block, np.float32), last=last)
            block = block.reshape(-1, self.num_channels)
        if self._clip:
            block = np.clip(block, -1.0, 1.0)
        if block.shape[0]:
            self._file.write(block)

    def commit(self) -> pathlib.Path:
        """Close the file and move it to its final path."""
        self._file.close()
        os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_audio(path: str | os.PathLike, *, offset: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
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


def write_audio(
    path: str | os.PathLike, waveform: np.ndarray, sample_rate: int, *, fmt: str | None = None, bit_depth: int = 16
) -> pathlib.Path:
    """Write a whole waveform ``(num_samples, num_channels)`` atomically; format from the suffix by default."""
    path = pathlib.Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise OutputError(f"Unknown output format {fmt!r}; use one of {', '.join(FORMATS)}.")
    writer = AudioWriter(path, sample_rate=sample_rate, num_channels=waveform.shape[1], fmt=fmt, bit_depth=bit_depth)
    try:
        writer.write(waveform, last=True)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
