"""Separation jobs for the web page: a bounded queue, worker threads, and results cached on disk.

A job is one uploaded file separated by :meth:`stemtf.separator.Separator.separate_file`, exactly
as ``stemtf separate`` does it (same decoding, resampling and WAV writing). This module only
queues, tracks progress, cancels and keeps the results.

Layout of the cache folder (nothing in it is ever named after an uploaded file):

- ``uploads/ID.EXT``: an upload while its job waits or runs; deleted when the job ends.
- ``jobs/ID.partial/``: results being written; deleted at start-up, so it never looks complete.
- ``jobs/ID/``: complete results (``STEM.wav``, ``job.json``, ``STEM.mp3`` once asked for), moved
  into place with one directory rename when every stem is written.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import math
import os
import pathlib
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from stemtf import audio, options
from stemtf.errors import OptionError, StemtfError
from stemtf.serve import results

DEFAULT_MAX_QUEUE = 8
DEFAULT_WORKERS = 1
DEFAULT_QUOTA_MB = 2000.0
DEFAULT_EXPIRY = 3600.0
DEFAULT_MAX_DURATION = 600.0
MP3_BITRATE = 192
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


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


class _Cancelled(Exception):
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


@dataclasses.dataclass
class _Model:
    source: Any  # a model name, a model directory, or a ready Separator
    stems: tuple[str, ...]
    sample_rate: int
    separator: Any = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class JobManager:
    """Queue, run, track and keep separation jobs.

    Use as a context manager (or call :meth:`start` and :meth:`close`): it locks the cache folder
    against a second server, clears what an earlier run left half-done, restores its complete
    results, and starts the worker and clean-up threads.

    Args:
        models: ``{name: model}`` where a model is a name or directory for
            :meth:`Separator.from_pretrained` (loaded at its first job) or a ready ``Separator``.
        cache_dir: Folder for uploads and results; created if missing.
        max_queue: Jobs that may wait (running jobs not counted); more get a 503.
        workers: Jobs separated at the same time.
        quota_mb: Most megabytes of results kept; the oldest finished jobs are deleted first.
        expiry: Seconds a finished job's results are kept.
        max_duration: Longest audio accepted, in seconds (counted in the model's samples when the
            length of a file is not known before decoding it).
        preload: Load every model in a background thread at start, so the first job does not wait.
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        cache_dir: str | os.PathLike,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        workers: int = DEFAULT_WORKERS,
        quota_mb: float = DEFAULT_QUOTA_MB,
        expiry: float = DEFAULT_EXPIRY,
        max_duration: float = DEFAULT_MAX_DURATION,
        preload: bool = False,
    ) -> None:
        check_options(max_queue=max_queue, workers=workers, quota_mb=quota_mb, expiry=expiry, max_duration=max_duration)
        self._models = {name: _describe_model(name, source) for name, source in models.items()}
        self.cache_dir = pathlib.Path(cache_dir)
        self.max_queue = max_queue
        self.workers = workers
        self.quota_bytes = int(quota_mb * 1e6)
        self.expiry = expiry
        self.max_duration = max_duration
        self.preload = preload
        self._jobs: dict[str, Job] = {}
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._lock_file = None
        self._recent_seconds: collections.deque[float] = collections.deque(maxlen=8)

    # Life cycle.

    def __enter__(self) -> "JobManager":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def uploads_dir(self) -> pathlib.Path:
        return self.cache_dir / "uploads"

    @property
    def jobs_dir(self) -> pathlib.Path:
        return self.cache_dir / "jobs"

    def start(self) -> None:
        """Lock the cache folder, clean up after an earlier run, start the threads."""
        try:
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.cache_dir / ".lock", "w")
        except OSError as error:
            raise StemtfError(f"Cannot use cache folder {str(self.cache_dir)!r}: {error.strerror or error}.") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise StemtfError(
                f"Cache folder {str(self.cache_dir)!r} is in use by another stemtf server; choose another --cache-dir."
            ) from None
        for leftover in self.uploads_dir.iterdir():  # the jobs that owned them died with the last process
            results.remove(leftover)
        for entry in self.jobs_dir.iterdir():
            job = self._restore(entry)
            if job is None:
                results.remove(entry)
            else:
                self._jobs[job.id] = job
        self._sweep()
        for index in range(self.workers):
            self._threads.append(threading.Thread(target=self._work, name=f"stemtf-job-{index}", daemon=True))
        self._threads.append(threading.Thread(target=self._janitor, name="stemtf-job-janitor", daemon=True))
        if self.preload:
            self._threads.append(threading.Thread(target=self._load_all, name="stemtf-job-preload", daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Cancel running jobs, stop the threads and release the cache folder."""
        with self._cond:
            self._closing = True
            for job in self._jobs.values():
                job.cancel.set()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # What the routes call.

    def models(self) -> list[dict[str, Any]]:
        """The models offered: ``[{"name", "stems", "sample_rate"}]``."""
        return [{"name": name, "stems": list(model.stems), "sample_rate": model.sample_rate} for name, model in self._models.items()]

    def check_room(self) -> None:
        """Fail with a 503 ``busy`` error if the queue is full (cheap: call it before reading an upload)."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise JobError(
                    f"The server is busy: {_songs(len(self._queue))} already waiting. Try again in a little while.",
                    503, "busy", retry_after=self._retry_after(),
                )

    def check_model(self, model: str) -> None:
        """Fail with a 400 ``unknown_model`` error unless ``model`` is offered."""
        if model not in self._models:
            offered = ", ".join(self._models) or "none"
            raise JobError(f"Unknown model {model!r}; this server offers {offered}.", 400, "unknown_model")

    def upload_path(self, filename: str) -> pathlib.Path:
        """A fresh path under ``uploads/`` for an upload: a random name plus the file's suffix if it is plain."""
        suffix = pathlib.PurePath(filename.replace("\\", "/")).suffix
        # The suffix helps ffmpeg guess a format; anything unusual is dropped rather than trusted.
        return self.uploads_dir / f"{uuid.uuid4().hex}{suffix.lower() if _SUFFIX.match(suffix) else ''}"

    def submit(
        self, upload: pathlib.Path, filename: str, model: str, *, groups: Mapping[str, list[str]] | None = None
    ) -> dict[str, Any]:
        """Queue a job for an upload saved at ``upload`` (which the manager now owns and deletes).

        ``groups`` (``{name: [stem, ...]}``, see :meth:`Separator.separate`) sums stems into one
        output each; the job's stems are then the groups and the stems left out of them.

        Returns:
            The job's status (see :meth:`status`).

        Raises:
            JobError: unknown model, not audio, too long, results larger than the quota, queue full.
        """
        try:
            self.check_model(model)
            entry = self._models[model]
            try:
                plan = options.check_groups(groups, entry.stems)
            except OptionError as error:
                raise JobError(error.for_cli().replace("--group ", "").replace("--two-stems ", ""), 400, "bad_groups") from None
            stems = tuple(name for name, _ in plan) if plan else entry.stems
            duration, sample_rate, num_channels = self._probe(upload, _display_name(filename))
            # WAV results are 16-bit at the upload's rate and channel count: their size is known now
            # (for a file of unknown length, that of a file as long as the limit).
            needed = int((duration or self.max_duration) * sample_rate) * num_channels * 2 * len(stems)
            # Bounded like the duration, in bytes: what a limit-long stereo file at the model's rate
            # gives; a 384 kHz upload would otherwise make 9x the stems of a 44.1 kHz one.
            most = int(self.max_duration * entry.sample_rate) * 2 * 2 * len(entry.stems)
            if needed > most:
                raise JobError(
                    f"At {sample_rate} Hz the stems of this file would need {needed / 1e6:.0f} MB, more than this "
                    f"server writes for one song ({most / 1e6:.0f} MB); upload a shorter file or one at a lower "
                    "sample rate.", 413, "too_big",
                )
            if needed > self.quota_bytes:
                raise JobError(
                    f"The stems of this file would need {needed / 1e6:.0f} MB, more than this server keeps "
                    f"({self.quota_bytes / 1e6:g} MB); upload a shorter file.", 413, "too_big",
                )
            with self._cond:
                if self._closing:
                    raise JobError("The server is shutting down.", 503, "busy", retry_after=30)
                self.check_room()
                job = Job(
                    id=str(uuid.uuid4()), model=model, filename=_display_name(filename), stems=stems, groups=groups,
                    created=time.time(), upload=upload, duration=duration, sample_rate=sample_rate,
                    num_channels=num_channels,
                )
                self._jobs[job.id] = job
                self._queue.append(job)
                self._cond.notify_all()
                return self._status(job)
        except BaseException:
            upload.unlink(missing_ok=True)
            raise

    def status(self, job_id: str) -> dict[str, Any]:
        """The job as JSON-ready data: status, progress 0..1, time left, queue position, stems when done."""
        with self._cond:
            return self._status(self._get(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a waiting or running job (it stops before its next chunk), or delete a finished one's results."""
        with self._cond:
            job = self._get(job_id)
            if job.status == "queued":
                self._queue.remove(job)
                if job.upload is not None:
                    job.upload.unlink(missing_ok=True)
                self._end(job, "cancelled")
            elif job.status == "running":
                job.cancel.set()  # the worker stops at the next chunk and reports "cancelled"
            else:
                del self._jobs[job.id]
                results.remove(self.jobs_dir / job.id)
                return {"id": job.id, "status": "deleted"}
            return self._status(job)

    def stem_file(self, job_id: str, stem: str, fmt: str) -> pathlib.Path:
        """The path of a finished job's stem as ``wav`` or ``mp3`` (encoded from the WAV on first use)."""
        if fmt not in ("wav", "mp3"):
            raise JobError(f"Stems are offered as .wav or .mp3; received .{fmt}.", 404, "not_found")
        with self._cond:
            job = self._finished(job_id)
            if stem not in job.stems:
                raise JobError(f"This job has no stem {stem!r}; it has {', '.join(job.stems)}.", 404, "not_found")
        folder = self.jobs_dir / job.id
        wav = folder / f"{stem}.wav"
        if fmt == "wav":
            return wav
        target = folder / f"{stem}.mp3"
        if not target.exists():
            try:
                results.encode_mp3(wav, target, bitrate=MP3_BITRATE)
            except FileNotFoundError:  # expired or evicted while we were encoding
                raise JobError("This job's results have expired; separate the file again.", 404, "not_found") from None
            except StemtfError as error:  # e.g. a rate MP3 does not have (96 kHz): the WAV is still there
                raise JobError(f"No MP3 of this stem: {error} Download the WAV instead.", 422, "failed") from None
            self._enforce_quota(keep=job.id)
        return target

    def open_stems(self, job_id: str) -> tuple[str, list[tuple[str, Any]]]:
        """A finished job's track name and its stem WAV files, opened now so eviction cannot take them mid-download."""
        with self._cond:
            job = self._finished(job_id)
            folder = self.jobs_dir / job.id
            try:
                return job.filename, [(f"{stem}.wav", open(folder / f"{stem}.wav", "rb")) for stem in job.stems]
            except FileNotFoundError:
                raise JobError("This job's results have expired; separate the file again.", 404, "not_found") from None

    def usage(self) -> int:
        """Bytes of results on disk."""
        return results.folder_size(self.jobs_dir)

    # Internals.

    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id) if _ID.match(job_id or "") else None
        if job is None or self._expired(job, time.time()):
            raise JobError("No such job: it never existed, was deleted, or expired.", 404, "not_found")
        return job

    def _finished(self, job_id: str) -> Job:
        job = self._get(job_id)
        if job.status != "done":
            raise JobError(f"This job is {job.status}; its stems are not available.", 409, "not_ready")
        return job

    def _status(self, job: Job) -> dict[str, Any]:
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
            result["queue_position"] = self._queue.index(job) + 1
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
            result["expires_in"] = max(0, round(job.finished + self.expiry - now))
        if job.error is not None:
            result["error"], result["kind"] = job.error, job.kind
        return result

    def _retry_after(self) -> int:
        """Seconds until a queue slot is likely free: the shortest time left of a running job."""
        left = [
            (time.time() - job.started) / job.chunks_done * (job.chunks_total - job.chunks_done)
            for job in self._jobs.values()
            if job.status == "running" and job.started and job.chunks_done and job.chunks_total
        ]
        if left:
            return min(600, max(1, math.ceil(min(left))))
        recent = sorted(self._recent_seconds)
        return min(600, max(1, math.ceil(recent[len(recent) // 2]))) if recent else 10

    def _probe(self, upload: pathlib.Path, name: str) -> tuple[float | None, int, int]:
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
            if seconds is not None and seconds > self.max_duration:
                raise JobError(
                    f"{name!r} is {_minutes(seconds)} long; this server separates at most {_minutes(self.max_duration)}.",
                    413, "too_long",
                )
            # Unknown length (a stream through ffmpeg, a streamed FLAC): None, never a guess shown as
            # the duration; the worker counts the model's samples and stops at the limit.
            return seconds, reader.sample_rate, reader.num_channels
        finally:
            reader.close()

    def _separator(self, name: str):
        """The model's Separator, loaded at its first job (loading takes seconds; jobs wait for it)."""
        entry = self._models[name]
        with entry.lock:
            if entry.separator is None:
                from stemtf.separator import Separator

                entry.separator = Separator.from_pretrained(entry.source)
            return entry.separator

    def _load_all(self) -> None:
        for name in self._models:
            if self._closing:
                return
            try:
                self._separator(name)
            except StemtfError:
                pass  # reported on the first job that needs this model

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self._queue.popleft()
                job.status = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        partial = self.jobs_dir / f"{job.id}.partial"
        try:
            separator = self._separator(job.model)
            stride = separator.chunk_samples - separator.overlap_samples
            limit = self.max_duration * separator.sample_rate

            def progress(done: int, total: int | None) -> None:
                if job.cancel.is_set():
                    raise _Cancelled
                if total is None and done * stride > limit + separator.chunk_samples:
                    raise JobError(f"The audio is longer than this server's limit of {_minutes(self.max_duration)}.", 413, "too_long")
                with self._cond:
                    if done == 0:
                        job.started = time.time()
                    job.chunks_done, job.chunks_total = done, total

            partial.mkdir()
            written = separator.separate_file(job.upload, output_dir=partial, filename="{stem}.{ext}", fmt="wav",
                                             groups=job.groups, progress=progress)
            if job.duration is None:  # a file that did not say its length: now it is known
                info = audio.probe_audio(next(iter(written.values())))
                with self._cond:
                    job.duration = info.num_samples / info.sample_rate
            record = {"id": job.id, "model": job.model, "filename": job.filename, "stems": list(job.stems),
                      "duration": job.duration, "sample_rate": job.sample_rate, "num_channels": job.num_channels,
                      "created": job.created, "finished": time.time()}
            results.write_record(partial, record)
            with self._cond:
                if job.cancel.is_set():
                    raise _Cancelled
                os.replace(partial, self.jobs_dir / job.id)  # the commit: complete results appear at once
                self._end(job, "done")
                self._recent_seconds.append(job.finished - (job.started or job.created))
        except _Cancelled:
            with self._cond:
                self._end(job, "cancelled")
        except JobError as error:
            with self._cond:
                self._end(job, "failed", str(error), error.kind)
        except StemtfError as error:
            with self._cond:
                self._end(job, "failed", str(error).replace(str(job.upload), "the upload"), "failed")
        except Exception as error:  # a bug: report it on the job rather than kill the worker thread
            with self._cond:
                self._end(job, "failed", f"Separation failed: {type(error).__name__}: {error}".splitlines()[0], "failed")
        finally:
            results.remove(partial)
            if job.upload is not None:
                job.upload.unlink(missing_ok=True)
        if job.status == "done":
            self._enforce_quota(keep=job.id)

    def _end(self, job: Job, status: str, error: str | None = None, kind: str | None = None) -> None:
        job.status, job.finished, job.error, job.kind = status, time.time(), error, kind
        self._cond.notify_all()

    def _enforce_quota(self, *, keep: str) -> None:
        """Delete the oldest finished results until the cache fits its quota; the job ``keep`` goes last."""
        with self._cond:
            usage = self.usage()
            if usage <= self.quota_bytes:
                return
            done = sorted((job for job in self._jobs.values() if job.status == "done"), key=lambda job: (job.id == keep, job.finished))
            for job in done:
                if usage <= self.quota_bytes:
                    break
                folder = self.jobs_dir / job.id
                usage -= results.folder_size(folder)
                results.remove(folder)
                del self._jobs[job.id]

    def _expired(self, job: Job, now: float) -> bool:
        return job.finished is not None and now >= job.finished + self.expiry

    def _sweep(self) -> None:
        """Forget expired jobs and delete their results."""
        with self._cond:
            now = time.time()
            for job in [job for job in self._jobs.values() if self._expired(job, now)]:
                del self._jobs[job.id]
                results.remove(self.jobs_dir / job.id)

    def _janitor(self) -> None:
        interval = min(30.0, max(0.2, self.expiry / 4))
        while True:
            with self._cond:
                self._cond.wait(interval)
                if self._closing:
                    return
            self._sweep()

    def _restore(self, folder: pathlib.Path) -> Job | None:
        """A finished job from an earlier run's complete results; None for anything else."""
        if not _ID.match(folder.name):
            return None  # *.partial folders and strays: never complete
        record = results.read_record(folder)
        if record is None:
            return None
        try:
            return Job(id=folder.name, model=str(record["model"]), filename=str(record["filename"]),
                       stems=tuple(record["stems"]), created=float(record["created"]), status="done",
                       duration=record["duration"], sample_rate=record["sample_rate"],
                       num_channels=record["num_channels"], finished=float(record["finished"]))
        except (KeyError, TypeError, ValueError):
            return None


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


def _describe_model(name: str, source: Any) -> _Model:
    if hasattr(source, "separate_file"):
        return _Model(source=source, stems=tuple(source.stems), sample_rate=source.sample_rate, separator=source)
    from stemtf.config import load_model_config

    config, _ = load_model_config(source)
    return _Model(source=source, stems=tuple(config.stems), sample_rate=config.sample_rate)


def _display_name(filename: str) -> str:
    """The last part of an uploaded file name, printable, for display and download names only."""
    name = pathlib.PurePath(filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name if name not in ("", ".", "..") else "upload"


def _songs(count: int) -> str:
    return "1 song is" if count == 1 else f"{count} songs are"


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
