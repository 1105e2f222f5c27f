"""What the job manager accepts: its options' defaults and checks, and the bounds an upload must fit."""

from __future__ import annotations

import pathlib

from stemtf import audio, options
from stemtf.errors import OptionError
from stemtf.serve.jobs.record import JobError, minutes

# The defaults live in stemtf.options, where the CLI reads them without importing the server.
DEFAULT_MAX_QUEUE = options.DEFAULT_MAX_QUEUE
DEFAULT_WORKERS = options.DEFAULT_WORKERS
DEFAULT_QUOTA_MB = options.DEFAULT_QUOTA_MB
DEFAULT_EXPIRY = options.DEFAULT_EXPIRY  # seconds
DEFAULT_MAX_DURATION = options.DEFAULT_MAX_DURATION


def check_options(*, max_queue: int, workers: int, quota_mb: float, expiry: float, max_duration: float) -> None:
    """Fail with one line naming the option unless every limit is usable.

    Raises:
        OptionError: a limit out of range (the message names its keyword; ``stemtf serve`` shows the flag).
    """
    for keyword, value in (("max_queue", max_queue), ("workers", workers)):
        if value < 1:
            raise OptionError(keyword, f"{{option}} must be >= 1. Received {value}.")
    for keyword, value, unit in (("quota_mb", quota_mb, ""), ("expiry", expiry, " s"), ("max_duration", max_duration, " s")):
        if not value > 0:
            raise OptionError(keyword, f"{{option}} must be > 0. Received {value:g}{unit}.")


def probe_upload(upload: pathlib.Path, name: str, *, max_duration: float) -> tuple[float | None, int, int]:
    """``(seconds or None if unknown, sample_rate, channels)`` of an upload; JobError if it is not audio or too long."""
    from stemtf.errors import AudioError

    try:
        reader = audio.open_audio(upload)
    except AudioError:
        raise JobError(
            f"{name!r} is not audio that stemtf can read; choose a WAV, FLAC, OGG, MP3, M4A or other audio file.",
            400, "not_audio",
        ) from None
    try:
        if reader.num_channels not in (1, 2):
            raise JobError(f"{name!r} has {reader.num_channels} channels; upload mono or stereo audio.", 400, "not_audio")
        seconds = None if reader.num_samples is None else reader.num_samples / reader.sample_rate
        if seconds is not None and seconds > max_duration:
            raise JobError(
                f"{name!r} is {minutes(seconds)} long; this server separates at most {minutes(max_duration)}.",
                413, "too_long",
            )
        # Unknown length (a stream through ffmpeg, a streamed FLAC): None, never a guess shown as
        # the duration; the worker counts the model's samples and stops at the limit.
        return seconds, reader.sample_rate, reader.num_channels
    finally:
        reader.close()


def check_stem_bytes(
    duration: float | None,
    sample_rate: int,
    num_channels: int,
    *,
    num_stems: int,
    max_duration: float,
    model_sample_rate: int,
    model_num_stems: int,
    quota_bytes: int,
) -> None:
    """Fail with a 413 ``too_big`` if the stems of an upload would outweigh what the server writes or keeps.

    Args:
        duration: The upload's seconds, None if unknown (counted as ``max_duration``).
        sample_rate: The upload's rate in Hz: the stems are written at it.
        num_channels: The upload's channels.
        num_stems: Files written (stems or groups).
        max_duration: Longest audio accepted, in seconds.
        model_sample_rate: The model's rate in Hz.
        model_num_stems: The model's stems.
        quota_bytes: Most bytes of results the server keeps.
    """
    # WAV results are 16-bit at the upload's rate and channel count: their size is known now
    # (for a file of unknown length, that of a file as long as the limit).
    needed = int((duration or max_duration) * sample_rate) * num_channels * 2 * num_stems
    # Bounded like the duration, in bytes: what a limit-long stereo file at the model's rate
    # gives; a 384 kHz upload would otherwise make 9x the stems of a 44.1 kHz one.
    most = int(max_duration * model_sample_rate) * 2 * 2 * model_num_stems
    if needed > most:
        raise JobError(
            f"At {sample_rate} Hz the stems of this file would need {needed / 1e6:.0f} MB, more than this "
            f"server writes for one song ({most / 1e6:.0f} MB); upload a shorter file or one at a lower "
            "sample rate.", 413, "too_big",
        )
    if needed > quota_bytes:
        raise JobError(
            f"The stems of this file would need {needed / 1e6:.0f} MB, more than this server keeps "
            f"({quota_bytes / 1e6:g} MB); upload a shorter file.", 413, "too_big",
        )
