"""The worker's side of a job: the models offered (loaded at first use) and one separation into a folder."""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import time
from typing import Any

from stemtf import audio
from stemtf.serve.jobs import results
from stemtf.serve.jobs.record import Cancelled, Job, JobError, minutes


@dataclasses.dataclass
class OfferedModel:
    """A model the page offers: what it writes, and its Separator once loaded."""

    source: Any  # a model name, a model directory, or a ready Separator
    stems: tuple[str, ...]
    sample_rate: int
    separator: Any = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def load(self):
        """The model's Separator, loaded at its first job (loading takes seconds; jobs wait for it)."""
        with self.lock:
            if self.separator is None:
                from stemtf.separator import Separator

                self.separator = Separator.from_pretrained(self.source)
            return self.separator


def offered_model(source: Any) -> OfferedModel:
    """An :class:`OfferedModel` for a model name or directory (its config read now), or a ready ``Separator``."""
    if hasattr(source, "separate_file"):
        return OfferedModel(source=source, stems=tuple(source.stems), sample_rate=source.sample_rate, separator=source)
    from stemtf.config import load_model_config

    config, _ = load_model_config(source)
    return OfferedModel(source=source, stems=tuple(config.stems), sample_rate=config.sample_rate)


def separate_job(job: Job, separator, partial: pathlib.Path, *, max_duration: float, lock: threading.Condition) -> None:
    """Separate ``job.upload`` into the new folder ``partial`` (stem WAVs and the job's record), reporting progress on ``job``.

    Args:
        job: The running job; its progress, start time and (if unknown) duration are set under ``lock``.
        separator: The job's model.
        partial: The folder to create and write into.
        max_duration: Longest audio accepted, in seconds; counted in the model's samples when the
            length of the upload was not known before decoding it.
        lock: The manager's lock.

    Raises:
        Cancelled: ``job.cancel`` was set; checked before every chunk.
        JobError: the audio is longer than ``max_duration`` (``too_long``).
        StemtfError: the upload cannot be decoded or the stems cannot be written.
    """
    stride = separator.chunk_samples - separator.overlap_samples
    limit = max_duration * separator.sample_rate

    def progress(done: int, total: int | None) -> None:
        if job.cancel.is_set():
            raise Cancelled
        if total is None and done * stride > limit + separator.chunk_samples:
            raise JobError(f"The audio is longer than this server's limit of {minutes(max_duration)}.", 413, "too_long")
        with lock:
            if done == 0:
                job.started = time.time()
            job.chunks_done, job.chunks_total = done, total

    partial.mkdir()
    written = separator.separate_file(job.upload, output_dir=partial, filename="{stem}.{ext}", fmt="wav",
                                      groups=job.groups, progress=progress)
    if job.duration is None:  # a file that did not say its length: now it is known
        info = audio.probe_audio(next(iter(written.values())))
        with lock:
            job.duration = info.num_samples / info.sample_rate
    record = {"id": job.id, "model": job.model, "filename": job.filename, "stems": list(job.stems),
              "duration": job.duration, "sample_rate": job.sample_rate, "num_channels": job.num_channels,
              "created": job.created, "finished": time.time()}
    results.write_record(partial, record)
