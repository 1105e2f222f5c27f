"""One job: its record, the errors it reports, and how it is shown as JSON to the page."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stemtf.errors import StemtfError

JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class JobError(StemtfError):
    """A refused request or a failed job, with what the HTTP layer needs to report it.

    Args:
        message: One sentence for a person.
        status: HTTP status.
        kind: A stable word the page maps to a heading (``not_audio``, ``too_long``, ``too_big``,
            ``busy``, ``not_found``, ``unknown_model``, ``bad_request``, ``failed``, ``not_ready``,
            ``timeout``).
        retry_after: Seconds after which a refused request may succeed (``busy`` only).
    """

    def __init__(self, message: str, status: int = 400, kind: str = "bad_request", retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.retry_after = retry_after


class Cancelled(Exception):
    """Raised from the progress callback: the only way to stop ``separate_file`` between two chunks."""


@dataclasses.dataclass
class Job:
    """One separation; mutated only under the manager's lock."""

    id: str
    model: str
    filename: str  # shown to people, never used as a path
    stems: tuple[str, ...]  # what is written: the model's stems, or the groups and the stems left out of them
    created: float
    groups: Mapping[str, list[str]] | None = None
    upload: pathlib.Path | None = None
    status: str = "queued"  # queued -> running -> done | failed | cancelled
    duration: float | None = None
    sample_rate: int | None = None
    num_channels: int | None = None
    chunks_done: int = 0
    chunks_total: int | None = None
    started: float | None = None  # when the first chunk started (model loaded)
    finished: float | None = None
    error: str | None = None
    kind: str | None = None
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)


def describe(job: Job, *, queue_position: int | None, expiry: float) -> dict[str, Any]:
    """The job as JSON-ready data: status, progress 0..1, time left, queue position, stems when done.

    Args:
        job: The job (read under the manager's lock).
        queue_position: 1 for the next job to run; None unless the job is queued.
        expiry: Seconds a finished job's results are kept.
    """
    now = time.time()
    progress = 1.0 if job.status == "done" else (job.chunks_done / job.chunks_total if job.chunks_total else 0.0)
    result: dict[str, Any] = {
        "id": job.id, "status": job.status, "model": job.model, "filename": job.filename,
        "progress": round(progress, 4), "time_left": None, "queue_position": None,
        "duration": job.duration, "sample_rate": job.sample_rate, "num_channels": job.num_channels,
        "stem_names": list(job.stems),
    }
    if job.status == "running":
        result["loading_model"] = job.started is None  # the model loads before the first chunk
    if job.status == "running" and job.cancel.is_set():
        result["status"] = "cancelling"  # until the separator reaches its next chunk
    if job.status == "queued":
        result["queue_position"] = queue_position
    elif job.status == "running" and job.started is not None and job.chunks_done and job.chunks_total:
        elapsed = now - job.started
        result["time_left"] = round(elapsed / job.chunks_done * (job.chunks_total - job.chunks_done), 1)
    elif job.status == "done":
        base = f"/v1/jobs/{job.id}"
        result["stems"] = [
            {"name": stem, "wav": f"{base}/stems/{stem}.wav", "mp3": f"{base}/stems/{stem}.mp3"} for stem in job.stems
        ]
        result["zip"] = f"{base}/stems.zip"
    if job.finished is not None:
        result["expires_in"] = max(0, round(job.finished + expiry - now))
    if job.error is not None:
        result["error"], result["kind"] = job.error, job.kind
    return result


def retry_after(jobs: Iterable[Job], recent_seconds: Sequence[float]) -> int:
    """Seconds until a queue slot is likely free: the shortest time left of a running job.

    Without a running job that has made progress, the median of ``recent_seconds`` (how long
    recent jobs took), or 10 s.
    """
    left = [
        (time.time() - job.started) / job.chunks_done * (job.chunks_total - job.chunks_done)
        for job in jobs
        if job.status == "running" and job.started and job.chunks_done and job.chunks_total
    ]
    if left:
        return min(600, max(1, math.ceil(min(left))))
    recent = sorted(recent_seconds)
    return min(600, max(1, math.ceil(recent[len(recent) // 2]))) if recent else 10


def display_name(filename: str) -> str:
    """The last part of an uploaded file name, printable, for display and download names only."""
    name = pathlib.PurePath(filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name if name not in ("", ".", "..") else "upload"


def songs(count: int) -> str:
    return "1 song is" if count == 1 else f"{count} songs are"


def minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
