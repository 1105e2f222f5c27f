"""Separation jobs for the web page: a bounded queue, worker threads, and results cached on disk.

A job is one uploaded file separated by :meth:`stemtf.separator.Separator.separate_file`, exactly
as ``stemtf separate`` does it (same decoding, resampling and WAV writing). This package only
queues, tracks progress, cancels and keeps the results:

- :mod:`~stemtf.serve.jobs.manager`: :class:`JobManager`, the queue, the worker threads and what the routes call.
- :mod:`~stemtf.serve.jobs.record`: a :class:`Job`, :class:`JobError`, and a job as the page's JSON.
- :mod:`~stemtf.serve.jobs.limits`: the options' defaults and checks, and the bounds an upload must fit.
- :mod:`~stemtf.serve.jobs.runner`: the models offered, and one separation into a results folder.
- :mod:`~stemtf.serve.jobs.cache` and :mod:`~stemtf.serve.jobs.results`: the cache folder's layout,
  lock and restart, and the files of finished jobs.
"""

from stemtf.serve.jobs.limits import (
    DEFAULT_EXPIRY,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUOTA_MB,
    DEFAULT_WORKERS,
    check_options,
)
from stemtf.serve.jobs.manager import MP3_BITRATE, JobManager
from stemtf.serve.jobs.record import Job, JobError

__all__ = [
    "DEFAULT_EXPIRY",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_QUOTA_MB",
    "DEFAULT_WORKERS",
    "MP3_BITRATE",
    "Job",
    "JobError",
    "JobManager",
    "check_options",
]
