"""What the job manager accepts: its options' defaults and checks, and the bounds an upload must fit."""

from __future__ import annotations

import pathlib

from stemtf import audio
from stemtf.errors import StemtfError
from stemtf.serve.jobs.record import JobError, minutes

DEFAULT_MAX_QUEUE = 8
DEFAULT_WORKERS = 1
DEFAULT_QUOTA_MB = 2000.0
DEFAULT_EXPIRY = 3600.0
DEFAULT_MAX_DURATION = 600.0


def check_options(*, max_queue: int, workers: int, quota_mb: float, expiry: float, max_duration: float) -> None:
    """Fail with one line naming the option unless every limit is usable."""
    if max_queue < 1:
        raise StemtfError(f"--queue-length must be >= 1. Received {max_queue}.")
    if workers < 1:
        raise StemtfError(f"--workers must be >= 1. Received {workers}.")
    if not quota_mb > 0:
        raise StemtfError(f"--cache-quota-mb must be > 0. Received {quota_mb:g}.")
    if not expiry > 0:
        raise StemtfError(f"--expiry-minutes must be > 0. Received {expiry / 60:g}.")
    if not max_duration > 0:
        raise StemtfError(f"--max-duration must be > 0. Received {max_duration:g}.")


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
