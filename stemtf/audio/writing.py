"""Writing waveforms: block by block into a temporary file, renamed into place only when complete."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import pathlib
import tempfile
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from stemtf import options, outputs
from stemtf.audio.formats import BIT_DEPTHS, FORMATS
from stemtf.errors import OutputError

# The report of the innermost clipping_report() block of this thread (None outside one).
_CLIPPING: contextvars.ContextVar[list | None] = contextvars.ContextVar("stemtf_clipping", default=None)


@dataclasses.dataclass(frozen=True)
class Clipped:
    """A file written with samples beyond full scale, which its format cannot hold: they were clipped.

    Attributes:
        path: The file.
        samples: How many samples (over all channels) were clipped.
        peak: The largest magnitude given to the writer (1.0 is full scale).
    """

    path: pathlib.Path
    samples: int
    peak: float


@contextlib.contextmanager
def clipping_report() -> Iterator[list[Clipped]]:
    """Yield a list that gets a :class:`Clipped` for each file an :class:`AudioWriter` of this thread
    commits inside the block with clipped samples (for a caller to warn about: loud input, or
    stems louder than the mixture)."""
    report: list[Clipped] = []
    token = _CLIPPING.set(report)
    try:
        yield report
    finally:
        _CLIPPING.reset(token)


# Nominal Vorbis bitrates (kbps, 44.1 kHz stereo) at quality 0, 1, ... 10.
_VORBIS_KBPS = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)


def output_subtype(fmt: str, bit_depth: int) -> str | None:
    """The soundfile subtype for ``fmt`` at ``bit_depth`` (16, 24 or 32 = float).

    Raises:
        OutputOptionError: see :func:`stemtf.options.check_output` (e.g. FLAC at 32 bits).
    """
    options.check_output(fmt, bit_depth, None)
    if fmt in ("wav", "flac"):
        return BIT_DEPTHS[bit_depth]
    return {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[fmt]


class AudioWriter:
    """Write blocks to ``path`` through a temporary file in the same folder.

    Nothing appears at ``path`` until :meth:`commit`, which never replaces a file that appeared
    meanwhile unless asked to; :meth:`abort` leaves no trace. Blocks at ``input_rate`` are
    resampled to ``sample_rate`` on the fly. A failed write (disk full) is an :class:`OutputError`.

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
        fmt: str = options.DEFAULT_FORMAT,
        bit_depth: int = options.DEFAULT_BIT_DEPTH,
        bitrate: int | None = None,
        input_rate: int | None = None,
    ) -> None:
        self.path = pathlib.Path(path)
        self.num_channels = num_channels
        subtype = output_subtype(fmt, bit_depth)
        self._clip = subtype.startswith("PCM") or fmt in ("ogg", "mp3")
        self._pcm16 = fmt == "wav" and subtype == "PCM_16"  # float32 blocks converted by pcm16()
        # Samples beyond full scale that integer and lossy formats cannot hold and this writer clipped
        # (a caller says so: loud input, or stems louder than the mixture), and the largest magnitude seen.
        self.clipped_samples = 0
        self.peak = 0.0
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
            raise OutputError(f"Cannot write {fmt} to {str(self.path)!r}: {error}".splitlines()[0]) from error
        self._resampler = None
        if input_rate is not None and input_rate != sample_rate:
            self._resampler = soxr.ResampleStream(input_rate, sample_rate, num_channels, dtype="float32")

    def write(self, block: np.ndarray, *, last: bool = False) -> None:
        """Append a float32 ``(n, num_channels)`` block; ``last=True`` flushes the resampler."""
        if self._resampler is not None:
            block = self._resampler.resample_chunk(np.ascontiguousarray(block, np.float32), last=last)
            block = block.reshape(-1, self.num_channels)
        if block.size:
            largest = max(float(np.max(block)), -float(np.min(block)))  # the largest magnitude, without a copy
            self.peak = max(self.peak, largest)
            if self._clip and not largest <= 1.0:  # (NaN too, as before)
                self.clipped_samples += int(np.count_nonzero(np.abs(block) > 1.0))
                block = np.clip(block, -1.0, 1.0)
        if block.shape[0]:
            if self._pcm16 and block.dtype == np.float32:
                block = pcm16(block)
            try:
                self._file.write(block)
            except (AssertionError, OSError, sf.LibsndfileError) as error:
                # soundfile asserts on a short write: that is how a full disk (ENOSPC, EFBIG) shows up.
                raise outputs.disk_error(self.path, error if isinstance(error, OSError) else None) from error

    def commit(self, *, overwrite: bool = False) -> pathlib.Path:
        """Close the file and move it to its final path.

        Args:
            overwrite: Replace a file already at the path; otherwise a file that appeared there
                since this writer started (another process, a user) is kept and this fails.

        Raises:
            OutputError: the path exists (without ``overwrite``), or the last write failed.
        """
        try:
            self._file.close()
        except (AssertionError, OSError, sf.LibsndfileError) as error:
            raise outputs.disk_error(self.path, error if isinstance(error, OSError) else None) from error
        os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual permissions
        outputs.place(self._tmp, self.path, overwrite=overwrite)
        report = _CLIPPING.get()
        if report is not None and self.clipped_samples:
            report.append(Clipped(self.path, self.clipped_samples, self.peak))
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        if not self._file.closed:
            try:
                self._file.close()
            except Exception:  # a full disk fails the header update too; the file is deleted anyway
                pass
        self._tmp.unlink(missing_ok=True)


def pcm16(block: np.ndarray) -> np.ndarray:
    """float32 ``(n, C)`` (any layout) -> C-contiguous int16, exactly as libsndfile writes floats to 16-bit PCM WAV.

    libsndfile (1.2, with the clipping soundfile turns on) rounds ``x * 2**31`` to a 32-bit integer
    (clipped) and keeps its top 16 bits, ``floor(rint(x * 2**31) / 2**16)``; NaN becomes -32768. Its
    per-sample loop took 2.5x as long as these array passes, most of a 120 s song's writing time;
    ``tests/test_engine_overlap.py`` pins the two to each other.
    """
    scaled = np.empty(block.shape, np.float32)  # C order: soundfile writes interleaved channels
    np.fmax(block, np.float32(-1.0), out=scaled)  # NaN -> -1, as libsndfile's NaN -> INT_MIN
    np.fmin(scaled, np.float32(1.0), out=scaled)
    scaled *= np.float32(2.0**31)
    np.rint(scaled, out=scaled)
    scaled *= np.float32(2.0**-16)
    np.floor(scaled, out=scaled)
    np.fmin(scaled, np.float32(32767.0), out=scaled)  # 1.0 -> 32768: libsndfile clips to the largest integer
    return scaled.astype(np.int16)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_audio(
    path: str | os.PathLike, waveform: np.ndarray, sample_rate: int, *, fmt: str | None = None, bit_depth: int = options.DEFAULT_BIT_DEPTH,
    overwrite: bool = True,
) -> pathlib.Path:
    """Write a whole waveform ``(num_samples, num_channels)`` atomically; format from the suffix by default.

    ``overwrite=False`` fails with :class:`OutputError` instead of replacing an existing file.
    """
    path = pathlib.Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise OutputError(f"Unknown output format {fmt!r}; use one of {', '.join(FORMATS)}.")
    writer = AudioWriter(path, sample_rate=sample_rate, num_channels=waveform.shape[1], fmt=fmt, bit_depth=bit_depth)
    try:
        writer.write(waveform, last=True)
        return writer.commit(overwrite=overwrite)
    except BaseException:
        writer.abort()
        raise
