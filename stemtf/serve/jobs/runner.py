"""The worker's side of a job: the models offered (loaded at first use) and one separation into a folder."""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import time
from collections.abc import Callable
from typing import Any

from stemtf import audio
from stemtf.errors import StemtfError
from stemtf.serve.jobs import results
from stemtf.serve.jobs.record import Cancelled, Job, JobError, minutes


@dataclasses.dataclass
class OfferedModel:
    """A model the page offers: what it writes, and its Separator once loaded."""

    source: Any  # a model name, a model directory, or a ready Separator
    stems: tuple[str, ...]
    sample_rate: int
    num_channels: int = 2
    separator: Any = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    on_status: Callable[[str], None] | None = None  # told when the model loads (it takes seconds)
    name: str = ""  # shown on the console (default: the source)

    def load(self):
        """The model's Separator, loaded once at its first use (loading takes seconds; callers wait for it).

        The page's jobs and TF Serving's REST API share it (one engine per model); its mask
        predictor is called by one thread at a time (a LiteRT interpreter is not thread-safe), the
        rest of the separation (STFT, Wiener, files) runs in parallel.
        """
        with self.lock:
            if self.separator is None:
                from stemtf.separator import Separator

                name = self.name or str(self.source)
                started = time.monotonic()
                self._tell(f"Loading {name} ({', '.join(self.stems)})...")
                try:
                    loaded = Separator.from_pretrained(self.source, on_status=self._tell)
                except StemtfError as error:
                    self._tell(f"Could not load {name}: {error}")
                    raise
                self.separator = Separator(SerialMasks(loaded.masks), loaded.config)
                self._tell(f"Loaded {name} with {self.separator.runtime} in {time.monotonic() - started:.1f} s.")
            return self.separator

    def _tell(self, line: str) -> None:
        if self.on_status is not None:
            self.on_status(line)


class SerialMasks:
    """A mask predictor called by one thread at a time, shared by the page's workers and the REST API."""

    def __init__(self, masks: Any) -> None:
        self.masks = masks
        self.runtime = masks.runtime
        self._lock = threading.Lock()

    def __call__(self, magnitude):
        with self._lock:
            return self.masks(magnitude)


def offered_model(source: Any, on_status: Callable[[str], None] | None = None) -> OfferedModel:
    """An :class:`OfferedModel` for a model name or directory (its config read now), or a ready ``Separator``."""
    if isinstance(source, OfferedModel):
        return source
    if hasattr(source, "separate_file"):
        return OfferedModel(source=source, stems=tuple(source.stems), sample_rate=source.sample_rate,
                            num_channels=source.config.num_channels, separator=source)
    from stemtf.config import load_model_config

    config, _ = load_model_config(source)
    return OfferedModel(source=source, stems=tuple(config.stems), sample_rate=config.sample_rate,
                        num_channels=config.num_channels, on_status=on_status, name=config.name)


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
