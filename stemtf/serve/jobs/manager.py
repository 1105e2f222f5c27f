"""The job manager: a bounded queue, worker threads, progress, cancelling, and the results' lifetime."""

from __future__ import annotations

import collections
import os
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from stemtf.errors import StemtfError
from stemtf.serve.groups import GroupsProblem, check_fields
from stemtf.serve.jobs import results
from stemtf.serve.jobs.cache import CacheFolder
from stemtf.serve.jobs.limits import (
    DEFAULT_EXPIRY,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUOTA_MB,
    DEFAULT_WORKERS,
    check_options,
    check_stem_bytes,
    probe_upload,
)
from stemtf.serve.jobs.record import JOB_ID, Cancelled, Job, JobError, describe, display_name, minutes, retry_after, songs
from stemtf.serve.jobs.runner import offered_model, separate_job

MP3_BITRATE = 192


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
        on_status: Called with a line for the console: a model loading, then one line per job
            that ends (file, model, outcome and its time).
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
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        check_options(max_queue=max_queue, workers=workers, quota_mb=quota_mb, expiry=expiry, max_duration=max_duration)
        self.on_status = on_status
        self._models = {name: offered_model(source, on_status) for name, source in models.items()}
        self.cache_dir = pathlib.Path(cache_dir)
        self.cache = CacheFolder(self.cache_dir)
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
        self._recent_seconds: collections.deque[float] = collections.deque(maxlen=8)

    # Life cycle.

    def __enter__(self) -> "JobManager":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def uploads_dir(self) -> pathlib.Path:
        return self.cache.uploads_dir

    @property
    def jobs_dir(self) -> pathlib.Path:
        return self.cache.jobs_dir

    def start(self) -> None:
        """Lock the cache folder, clean up after an earlier run, start the threads."""
        for job in self.cache.open():
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
        self.cache.release()

    # What the routes call.

    def offered(self, name: str):
        """The :class:`~stemtf.serve.jobs.runner.OfferedModel` of a model the page offers (its ``load()`` gives the shared Separator)."""
        return self._models[name]

    def models(self) -> list[dict[str, Any]]:
        """The models offered: ``[{"name", "stems", "sample_rate"}]``."""
        return [{"name": name, "stems": list(model.stems), "sample_rate": model.sample_rate} for name, model in self._models.items()]

    def check_room(self) -> None:
        """Fail with a 503 ``busy`` error if the queue is full (cheap: call it before reading an upload)."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise JobError(
                    f"The server is busy: {songs(len(self._queue))} already waiting. Try again in a little while.",
                    503, "busy", retry_after=retry_after(self._jobs.values(), self._recent_seconds),
                )

    def check_model(self, model: str) -> None:
        """Fail with a 400 ``unknown_model`` error unless ``model`` is offered."""
        if model not in self._models:
            offered = ", ".join(self._models) or "none"
            raise JobError(f"Unknown model {model!r}; this server offers {offered}.", 400, "unknown_model")

    def upload_path(self, filename: str) -> pathlib.Path:
        """A fresh path under ``uploads/`` for an upload: a random name plus the file's suffix if it is plain."""
        return self.cache.upload_path(filename)

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
                plan = check_fields(groups, entry.stems)
            except GroupsProblem as problem:  # worded as the page's fields, as if the groups came from them
                raise JobError(str(problem), 400, "bad_groups") from None
            stems = tuple(name for name, _ in plan) if plan else entry.stems
            duration, sample_rate, num_channels = probe_upload(upload, display_name(filename), max_duration=self.max_duration)
            check_stem_bytes(duration, sample_rate, num_channels, num_stems=len(stems), max_duration=self.max_duration,
                             model_sample_rate=entry.sample_rate, model_num_stems=len(entry.stems), quota_bytes=self.quota_bytes)
            with self._cond:
                if self._closing:
                    raise JobError("The server is shutting down.", 503, "busy", retry_after=30)
                self.check_room()
                job = Job(
                    id=str(uuid.uuid4()), model=model, filename=display_name(filename), stems=stems, groups=groups,
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
                self.cache.remove(job.id)
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
        folder = self.cache.results_dir(job.id)
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
            folder = self.cache.results_dir(job.id)
            try:
                return job.filename, [(f"{stem}.wav", open(folder / f"{stem}.wav", "rb")) for stem in job.stems]
            except FileNotFoundError:
                raise JobError("This job's results have expired; separate the file again.", 404, "not_found") from None

    def usage(self) -> int:
        """Bytes of results on disk."""
        return self.cache.usage()

    # Internals.

    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id) if JOB_ID.match(job_id or "") else None
        if job is None or self._expired(job, time.time()):
            raise JobError("No such job: it never existed, was deleted, or expired.", 404, "not_found")
        return job

    def _finished(self, job_id: str) -> Job:
        job = self._get(job_id)
        if job.status != "done":
            raise JobError(f"This job is {job.status}; its stems are not available.", 409, "not_ready")
        return job

    def _status(self, job: Job) -> dict[str, Any]:
        position = self._queue.index(job) + 1 if job.status == "queued" else None
        return describe(job, queue_position=position, expiry=self.expiry)

    def _load_all(self) -> None:
        for entry in self._models.values():
            if self._closing:
                return
            try:
                entry.load()
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
        partial = self.cache.partial_dir(job.id)
        try:
            separate_job(job, self._models[job.model].load(), partial, max_duration=self.max_duration, lock=self._cond)
            with self._cond:
                if job.cancel.is_set():
                    raise Cancelled
                self.cache.commit(job.id)  # complete results appear at once
                self._end(job, "done")
                self._recent_seconds.append(job.finished - (job.started or job.created))
        except Cancelled:
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
        self._report(job)
        if job.status == "done":
            self._enforce_quota(keep=job.id)

    def _report(self, job: Job) -> None:
        """One console line for a job that ended."""
        if self.on_status is None:
            return
        length = f", {minutes(job.duration)}" if job.duration else ""
        took = f"{(job.finished or time.time()) - job.created:.1f} s"
        outcome = {"done": f"done in {took}", "cancelled": f"cancelled after {took}"}.get(
            job.status, f"failed after {took}: {job.error}")
        self.on_status(f"Job {job.id[:8]} {job.filename!r} ({job.model}{length}): {outcome}")

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
                usage -= self.cache.size(job.id)
                self.cache.remove(job.id)
                del self._jobs[job.id]

    def _expired(self, job: Job, now: float) -> bool:
        return job.finished is not None and now >= job.finished + self.expiry

    def _sweep(self) -> None:
        """Forget expired jobs and delete their results."""
        with self._cond:
            now = time.time()
            for job in [job for job in self._jobs.values() if self._expired(job, now)]:
                del self._jobs[job.id]
                self.cache.remove(job.id)

    def _janitor(self) -> None:
        interval = min(30.0, max(0.2, self.expiry / 4))
        while True:
            with self._cond:
                self._cond.wait(interval)
                if self._closing:
                    return
            self._sweep()
