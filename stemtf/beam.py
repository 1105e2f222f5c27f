"""Separate a catalogue on Apache Beam: one model per worker, files in, stems out, failures set aside.

The pipeline is thin on purpose: it reads audio paths (a glob, or a text file of paths, on any
Beam filesystem: local, ``gs://``, ``s3://``, ...), hands each to :meth:`Separator.separate_file`
through Beam's ``RunInference`` with a small :class:`SeparatorModelHandler` (the model is loaded
once per worker and shared by its threads), and writes the stems with the same naming and formats
as ``stemtf separate``. Long files stream chunk by chunk, so a worker's memory stays flat.

- A file whose stems all exist already is skipped: a rerun only does what is left (resumable). A
  file some of whose stem files exist (another model's run into the same folder, say) is refused
  like ``stemtf separate`` refuses, into the dead letter, unless ``overwrite``.
- A file that fails never fails the pipeline: it goes to a dead-letter output, one line per file
  (``path<TAB>reason``), which ``stemtf separate-batch`` prints at the end.
- Metrics (namespace ``stemtf``): ``files_done``, ``files_failed``, ``files_skipped``,
  ``audio_ms`` and ``separate_ms`` (their ratio is the seconds spent per second of audio).

Files on remote filesystems are copied to a local temporary file to be decoded, and their stems
are written locally and then copied to the output filesystem; local files are read and written in
place (the outputs appear atomically, as with ``stemtf separate``).

Requires ``apache-beam`` (``pip install ".[beam]"`` from the stemtf folder).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any

from stemtf import options
from stemtf.errors import OptionError, StemtfError

NAMESPACE = "stemtf"
DEAD_LETTER_NAME = "failed.tsv"
LIST_SUFFIXES = (".txt", ".lst", ".list")


def _beam():
    try:
        import apache_beam
    except ImportError:
        raise StemtfError('Batch separation needs Apache Beam: pip install ".[beam]" from the stemtf folder.') from None
    return apache_beam


@dataclasses.dataclass(frozen=True)
class FileResult:
    """What became of one input file.

    Attributes:
        path: The input, as given.
        status: ``done``, ``skipped`` (every stem existed) or ``failed``.
        outputs: The stem files written (or found, when skipped).
        error: One line saying why, when failed.
        audio_seconds: Length of the audio separated.
        seconds: Wall time spent on the file.
    """

    path: str
    status: str
    outputs: tuple[str, ...] = ()
    error: str = ""
    audio_seconds: float = 0.0
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class SeparationSettings:
    """Where and how the stems are written: ``stemtf separate``'s output options."""

    output_dir: str
    filename: str = options.DEFAULT_FILENAME
    fmt: str = options.DEFAULT_FORMAT
    bit_depth: int = options.DEFAULT_BIT_DEPTH
    bitrate: int | None = None
    overwrite: bool = False
    flags: bool = False  # name options in the failure reasons by their command-line flags (--overwrite)

    def check(self) -> None:
        options.check_output(self.fmt, self.bit_depth, self.bitrate)
        options.check_filename(self.filename)

    def reason(self, error: StemtfError) -> str:
        """``error`` as one dead-letter line: options named by their flags with :attr:`flags`, else by their keywords."""
        return error.for_cli() if self.flags else str(error)

    def option(self, keyword: str) -> str:
        """How a failure reason names an option: ``--filename`` with :attr:`flags`, else `` `filename` ``."""
        return OptionError.flag_of(keyword) if self.flags else f"`{keyword}`"


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def separate_one(separator, path: str, settings: SeparationSettings) -> FileResult:
    """Separate one file (local or on any Beam filesystem); never raises for a bad file.

    Returns:
        A :class:`FileResult`; a file whose outputs all exist is ``skipped`` (without
        ``settings.overwrite``); one some of whose outputs exist is ``failed``, nothing replaced.
    """
    from stemtf import outputs
    from apache_beam.io.filesystems import FileSystems

    start = time.perf_counter()
    name = pathlib.PurePosixPath(path.split("://", 1)[-1]).name
    targets = separator.output_paths(name, output_dir="", filename=settings.filename, fmt=settings.fmt)
    final = {stem: FileSystems.join(settings.output_dir, str(relative)) for stem, relative in targets.items()}
    existing = [target for target in final.values() if FileSystems.exists(target)]
    if not settings.overwrite and existing:
        if len(existing) == len(final):
            return FileResult(path, "skipped", tuple(final.values()))
        # Not every stem exists: these files are someone else's (another model, another input): refuse.
        return FileResult(path, "failed", error=settings.reason(outputs.exists_error(existing[0])),
                          seconds=time.perf_counter() - start)
    remote_output = _is_remote(settings.output_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="stemtf-beam-") as work:
            source = path
            if _is_remote(path):
                source = os.path.join(work, "input", name)
                os.makedirs(os.path.dirname(source))
                with FileSystems.open(path) as remote, open(source, "wb") as local:
                    shutil.copyfileobj(remote, local)
            output_dir = os.path.join(work, "output") if remote_output else settings.output_dir
            written = separator.separate_file(
                source, output_dir=output_dir, filename=settings.filename, fmt=settings.fmt,
                bit_depth=settings.bit_depth, bitrate=settings.bitrate, overwrite=settings.overwrite,
            )
            if remote_output:
                for stem, local_path in written.items():
                    with open(local_path, "rb") as local, FileSystems.create(final[stem]) as remote:
                        shutil.copyfileobj(local, remote)
            audio_seconds = _seconds_of(written)
    except StemtfError as error:
        return FileResult(path, "failed", error=settings.reason(error), seconds=time.perf_counter() - start)
    except Exception as error:  # a worker must survive any one file; the reason goes to the dead letter
        message = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
        return FileResult(path, "failed", error=message, seconds=time.perf_counter() - start)
    return FileResult(path, "done", tuple(final.values()), audio_seconds=audio_seconds, seconds=time.perf_counter() - start)


def _seconds_of(written: dict[str, pathlib.Path]) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(next(iter(written.values())))).duration)
    except Exception:  # a format soundfile cannot probe (it wrote it, so this is only a metric)
        return 0.0


def _handler_class():
    """:class:`SeparatorModelHandler`, defined once Beam is imported (its base class is Beam's)."""
    from apache_beam.ml.inference.base import ModelHandler

    class SeparatorModelHandler(ModelHandler):
        """RunInference's view of a stemtf model: load once per worker, separate whole files.

        Args:
            model: A model name or directory.
            settings: Where and how the stems are written.
            runtime: ``auto``, ``keras`` or ``litert`` (see :mod:`stemtf.runtimes`).
        """

        def __init__(self, model: str, settings: SeparationSettings, *, runtime: str = options.DEFAULT_RUNTIME) -> None:
            super().__init__()
            self._model, self._settings, self._runtime = model, settings, runtime

        def load_model(self):
            from stemtf.separator import Separator

            return Separator.from_pretrained(self._model, runtime=self._runtime)

        def run_inference(self, batch: Sequence[str], model, inference_args: dict[str, Any] | None = None) -> Iterable[FileResult]:
            from apache_beam.metrics import Metrics

            for path in batch:
                result = separate_one(model, path, self._settings)
                Metrics.counter(NAMESPACE, f"files_{result.status}").inc()
                if result.status == "done":
                    Metrics.counter(NAMESPACE, "audio_ms").inc(int(1000 * result.audio_seconds))
                    Metrics.counter(NAMESPACE, "separate_ms").inc(int(1000 * result.seconds))
                yield result

        def batch_elements_kwargs(self) -> dict[str, Any]:
            return {"max_batch_size": 1}  # a file is a unit of work; batching files gains nothing

        def get_metrics_namespace(self) -> str:
            return NAMESPACE

    return SeparatorModelHandler


def read_inputs(pipeline, inputs: str):
    """A PCollection of input paths: the lines of a text file of paths, or the files a glob matches."""
    beam = _beam()
    from apache_beam.io import fileio

    if inputs.lower().endswith(LIST_SUFFIXES):
        return (
            pipeline
            | "ReadList" >> beam.io.ReadFromText(inputs)
            | "Strip" >> beam.Map(str.strip)
            | "DropBlank" >> beam.Filter(lambda line: bool(line) and not line.startswith("#"))
        )
    return pipeline | "Match" >> fileio.MatchFiles(inputs) | "Paths" >> beam.Map(lambda metadata: metadata.path)


@dataclasses.dataclass
class BatchSummary:
    """What :func:`run` reports: counts, the dead-letter lines and the metrics."""

    done: int
    skipped: int
    failed: int
    failures: list[tuple[str, str]]
    audio_seconds: float
    separate_seconds: float
    dead_letter: str


def run(
    inputs: str,
    *,
    output_dir: str,
    model: str = options.DEFAULT_MODEL,
    runtime: str = options.DEFAULT_RUNTIME,
    filename: str = options.DEFAULT_FILENAME,
    fmt: str = options.DEFAULT_FORMAT,
    bit_depth: int = options.DEFAULT_BIT_DEPTH,
    bitrate: int | None = None,
    overwrite: bool = False,
    pipeline_args: Sequence[str] = (),
    flags: bool = False,
) -> BatchSummary:
    """Run the batch separation pipeline and wait for it; what ``stemtf separate-batch`` runs.

    Args:
        inputs: A glob (``songs/*.mp3``, ``gs://bucket/in/**``) or a ``.txt``/``.lst`` file of paths.
        output_dir: Root of the outputs (local or any Beam filesystem).
        model: A model name or directory (staged with the workers for remote runners).
        runtime: The separator's mask runtime.
        filename, fmt, bit_depth, bitrate: As ``stemtf separate``.
        overwrite: Separate every file again and replace its stem files (without it a file whose
            stems all exist is skipped, and one with only some of them is refused).
        pipeline_args: Beam pipeline options (``--runner``, ``--direct_num_workers``, ...).
        flags: Name options in the failure reasons by their command-line flags (``--overwrite``,
            what ``stemtf separate-batch`` asks for); by default by their keywords (`` `overwrite` ``).

    Returns:
        A :class:`BatchSummary`; failed files are listed in ``OUTPUT_DIR/failed.tsv`` too.
    """
    _beam()
    from apache_beam.io.filesystems import FileSystems

    from stemtf import runtimes

    from stemtf.config import load_model_config

    settings = SeparationSettings(output_dir=output_dir, filename=filename, fmt=fmt, bit_depth=bit_depth, bitrate=bitrate,
                                  overwrite=overwrite, flags=flags)
    settings.check()
    runtimes.check_runtime(runtime, runtimes.DEFAULT_PRECISION)
    config, _ = load_model_config(model)  # an unknown model fails here, before any worker starts
    dead_letter = FileSystems.join(output_dir, DEAD_LETTER_NAME)
    pipeline = _pipeline(inputs, model=model, model_name=config.name, settings=settings, runtime=runtime,
                         dead_letter=dead_letter, pipeline_args=pipeline_args)
    outcome = pipeline.run()
    outcome.wait_until_finish()
    return _summary(outcome, dead_letter)


def _pipeline(inputs: str, *, model: str, model_name: str, settings: SeparationSettings, runtime: str, dead_letter: str,
              pipeline_args: Sequence[str]):
    """The Beam pipeline of :func:`run`: read the inputs, set aside those whose outputs clash, separate the rest,
    write every failure to ``dead_letter``."""
    beam = _beam()
    from apache_beam.metrics import Metrics
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    handler = _handler_class()(model, settings, runtime=runtime)

    def output_key(path: str) -> str:  # inputs with the same key would write the same stem files
        track = pathlib.PurePosixPath(path.split("://", 1)[-1]).stem
        return settings.filename.format(track=track, stem="{stem}", ext=settings.fmt, model=model_name)

    def split_clashes(item):
        first, *others = sorted(item[1])
        yield beam.pvalue.TaggedOutput("unique", first)
        for other in others:
            Metrics.counter(NAMESPACE, "files_failed").inc()
            yield FileResult(other, "failed", error=f"it would write the same files as {first}; use a "
                             f"{settings.option('filename')} pattern that tells them apart (e.g. with a folder per "
                             "input) or separate them apart.")

    pipeline = beam.Pipeline(options=PipelineOptions(list(pipeline_args)))
    grouped = (
        read_inputs(pipeline, inputs)
        | "Key" >> beam.Map(lambda path: (output_key(path), path))
        | "ByOutput" >> beam.GroupByKey()
        | "Clashes" >> beam.FlatMap(split_clashes).with_outputs("unique", main="clashes")
    )
    separated = grouped.unique | "Separate" >> RunInference(handler)
    (
        (separated, grouped.clashes)
        | "All" >> beam.Flatten()
        | "Failed" >> beam.Filter(lambda result: result.status == "failed")
        | "Format" >> beam.Map(lambda result: f"{result.path}\t{result.error}")
        | "DeadLetter" >> beam.io.WriteToText(dead_letter, shard_name_template="")
    )
    return pipeline


def _summary(outcome, dead_letter: str) -> BatchSummary:
    """The :class:`BatchSummary` of a finished pipeline: its ``stemtf`` counters and the dead letter's lines."""
    from apache_beam.io.filesystems import FileSystems

    counters = {item.key.metric.name: item.committed for item in outcome.metrics().query()["counters"]
                if item.key.metric.namespace == NAMESPACE}
    failures = []
    if FileSystems.exists(dead_letter):
        with FileSystems.open(dead_letter) as handle:
            for line in handle.read().decode("utf-8").splitlines():
                path, _, reason = line.partition("\t")
                failures.append((path, reason))
    return BatchSummary(
        done=int(counters.get("files_done", 0)), skipped=int(counters.get("files_skipped", 0)),
        failed=int(counters.get("files_failed", 0)), failures=failures,
        audio_seconds=counters.get("audio_ms", 0) / 1000, separate_seconds=counters.get("separate_ms", 0) / 1000,
        dead_letter=dead_letter,
    )
