"""``stemtf separate-batch``: many files on Apache Beam."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Optional

import typer

from stemtf.cli.app import app, import_tensorflow_quietly, report_error
from stemtf import options, runtimes
from stemtf.runtimes import DEFAULT_PRECISION


# What Beam, TensorFlow/LiteRT and libmpg123 write to stderr on every healthy run, not meant for the user:
# Beam's optional GCP clients and resource module, its note that it replaces the previous run's
# failed.tsv, absl's start-up lines and C++ info lines (oneDNN, CPU features), and libmpg123's
# complaints about ID3 tags and junk before the first frame of an MP3 it then decodes.
NOISE = re.compile(
    r"^(WARNING:root:apitools not found"
    r"|WARNING:root:Resource module is not available"
    r"|WARNING:apache_beam\.io\.filebasedsink:Deleting \d+ existing files"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ "
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|\[src/libmpg123/[^\]]*\] (warning|error|note): )"
)


@contextlib.contextmanager
def filtered_stderr():
    """Collect everything written to file descriptor 2 (this process and its workers), then print
    all but the known :data:`NOISE` lines once the block ends."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


@app.command("separate-batch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def separate_batch(
    context: typer.Context,
    inputs: str = typer.Argument(..., metavar="INPUT_GLOB_OR_LIST", help="A glob (songs/*.mp3, gs://bucket/in/*.flac) or a .txt/.lst file of paths.", show_default=False),
    output_dir: str = typer.Option(..., "--output-dir", "-o", help="Root of the outputs (local or any Beam filesystem).", show_default=False),
    model: str = typer.Option(options.DEFAULT_MODEL, "--model", "-m", help="Model name or directory."),
    fmt: str = typer.Option(options.DEFAULT_FORMAT, "--format", "-f", help="Output format: wav, flac, ogg or mp3."),
    bit_depth: int = typer.Option(options.DEFAULT_BIT_DEPTH, "--bit-depth", help="WAV/FLAC sample format: 16, 24 or 32."),
    bitrate: Optional[int] = typer.Option(None, "--bitrate", help="MP3/OGG bitrate in kbps (32-320)."),
    filename: str = typer.Option(options.DEFAULT_FILENAME, "--filename", help="Output path template; fields {track} {stem} {ext} {model}."),
    runtime: str = typer.Option(options.DEFAULT_RUNTIME, "--runtime", help="Mask runtime on the workers: auto, keras or litert."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Separate every file again, replacing its stem files (without it: files whose stems all exist are skipped, and a stem file in the way fails that file)."),
    runner: str = typer.Option("DirectRunner", "--runner", help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ..."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the failures."),
) -> None:
    """Separate many files on Apache Beam (one model per worker); pass Beam options after `--`."""
    from stemtf.config import load_model_config

    options.check_output(fmt, bit_depth, bitrate)
    options.check_filename(filename)
    runtimes.check_runtime(runtime, DEFAULT_PRECISION)
    load_model_config(model)

    with filtered_stderr():
        import_tensorflow_quietly()
        logging.getLogger("apache_beam").setLevel(logging.ERROR)  # its progress notes are not the user's business
        from stemtf import beam

        summary = beam.run(
            inputs, output_dir=output_dir, model=model, runtime=runtime, filename=filename, fmt=fmt, bit_depth=bit_depth,
            bitrate=bitrate, overwrite=overwrite, pipeline_args=[f"--runner={runner}", *context.args], flags=True,
        )
    for path, reason in summary.failures:
        report_error(f"{path}: {reason}")
    if not quiet:
        speed = f"; {summary.separate_seconds / summary.audio_seconds:.2f} s per second of audio" if summary.audio_seconds else ""
        typer.echo(f"Separated {summary.done} file(s), skipped {summary.skipped} already done, {summary.failed} failed{speed}."
                   + (f" Failures are listed in {summary.dead_letter}." if summary.failed else ""))
    if summary.failed:
        raise typer.Exit(1)
