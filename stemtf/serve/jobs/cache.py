"""The job manager's cache folder: its layout, its lock against a second server, and what survives a restart.

Nothing in it is ever named after an uploaded file:

- ``uploads/ID.EXT``: an upload while its job waits or runs; deleted when the job ends.
- ``jobs/ID.partial/``: results being written; deleted at start-up, so it never looks complete.
- ``jobs/ID/``: complete results (``STEM.wav``, ``job.json``, ``STEM.mp3`` once asked for), moved
  into place with one directory rename when every stem is written.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import re
import uuid

from stemtf.errors import StemtfError
from stemtf.serve.jobs import results
from stemtf.serve.jobs.record import JOB_ID, Job

_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class CacheFolder:
    """Uploads and results of one job manager under ``path``; :meth:`open` before use, :meth:`release` after."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self._lock_file = None

    @property
    def uploads_dir(self) -> pathlib.Path:
        return self.path / "uploads"

    @property
    def jobs_dir(self) -> pathlib.Path:
        return self.path / "jobs"

    def open(self) -> list[Job]:
        """Lock the folder, delete what an earlier run left half-done; the finished jobs it left complete."""
        try:
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.path / ".lock", "w")
        except OSError as error:
            raise StemtfError(f"Cannot use cache folder {str(self.path)!r}: {error.strerror or error}.") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise StemtfError(
                f"Cache folder {str(self.path)!r} is in use by another stemtf server; choose another {{option:cache_dir}}."
            ) from None
        for leftover in self.uploads_dir.iterdir():  # the jobs that owned them died with the last process
            results.remove(leftover)
        restored = []
        for entry in self.jobs_dir.iterdir():
            job = _restore(entry)
            if job is None:
                results.remove(entry)
            else:
                restored.append(job)
        return restored

    def release(self) -> None:
        """Unlock the folder (for the next server)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def upload_path(self, filename: str) -> pathlib.Path:
        """A fresh path under ``uploads/`` for an upload: a random name plus the file's suffix if it is plain."""
        suffix = pathlib.PurePath(filename.replace("\\", "/")).suffix
        # The suffix helps ffmpeg guess a format; anything unusual is dropped rather than trusted.
        return self.uploads_dir / f"{uuid.uuid4().hex}{suffix.lower() if _SUFFIX.match(suffix) else ''}"

    def partial_dir(self, job_id: str) -> pathlib.Path:
        """Where a running job writes its results."""
        return self.jobs_dir / f"{job_id}.partial"

    def results_dir(self, job_id: str) -> pathlib.Path:
        """Where a finished job's complete results are."""
        return self.jobs_dir / job_id

    def commit(self, job_id: str) -> None:
        """Move a job's written results into place: complete results appear at once."""
        os.replace(self.partial_dir(job_id), self.results_dir(job_id))

    def remove(self, job_id: str) -> None:
        """Delete a job's results, if they are there."""
        results.remove(self.results_dir(job_id))

    def size(self, job_id: str) -> int:
        """Bytes of a job's results."""
        return results.folder_size(self.results_dir(job_id))

    def usage(self) -> int:
        """Bytes of results on disk."""
        return results.folder_size(self.jobs_dir)


def _restore(folder: pathlib.Path) -> Job | None:
    """A finished job from an earlier run's complete results; None for anything else."""
    if not JOB_ID.match(folder.name):
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
