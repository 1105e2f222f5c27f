"""The Typer app and what its commands share: quiet TensorFlow import, one-line errors, progress bars."""

from __future__ import annotations

import pathlib
import sys

import typer

from stemtf import __version__, options, runtimes
from stemtf.errors import StemtfError
from stemtf.interrupts import Signals

app = typer.Typer(
    name="stemtf",
    help="Split songs into stems (vocals, drums, bass, ...) with TensorFlow.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up chatter (oneDNN, CPU features) kept off stderr.

    Those lines are written by C++ before any log level applies, so file descriptor 2 itself is
    pointed at /dev/null for the duration of the import.
    """
    if "tensorflow" in sys.modules:
        return
    from stemtf.interpreters import quiet_native_stderr

    with quiet_native_stderr():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


# Stop signals (Ctrl-C, SIGTERM, SIGHUP) of the running command; see stemtf.interrupts.
signals = Signals()


def report_error(message: str) -> None:
    typer.echo(f"stemtf: error: {message}", err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stemtf {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Split songs into stems (vocals, drums, bass, ...) with TensorFlow."""


def readable_inputs(inputs: list[pathlib.Path]) -> tuple[list[pathlib.Path], int]:
    """The inputs that exist and can be read, and how many cannot (each reported in one line).

    Checked before any model is loaded: a mistyped path fails in a fraction of a second.
    """
    readable = []
    for path in inputs:
        try:
            readable.append(options.check_input_file(path))
        except StemtfError as error:
            report_error(str(error))
    if not readable:
        raise typer.Exit(1)
    return readable, len(inputs) - len(readable)


def load_status(runtime: str, quiet: bool):
    """Import TensorFlow quietly when the model will need it, and a status callback for a LiteRT conversion."""
    if runtimes.resolve_runtime(runtime) == "keras":
        import_tensorflow_quietly()

    def converting(line: str) -> None:  # the one time a model is converted to LiteRT, with TensorFlow
        if not quiet:
            typer.echo(line, err=True)
        import_tensorflow_quietly()

    return converting


def names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def stem_groups(values: list[str] | None) -> dict[str, list[str]] | None:
    """``["other=other,piano"]`` -> ``{"other": ["other", "piano"]}``."""
    if not values:
        return None
    groups: dict[str, list[str]] = {}
    for value in values:
        stem, sep, files = value.partition("=")
        names = [name.strip() for name in files.split(",") if name.strip()]
        if not sep or not stem.strip() or not names:
            raise StemtfError(f"--stem-group {value!r} must look like STEM=FILE_STEM[,FILE_STEM...], e.g. other=other,piano.")
        groups[stem.strip()] = names
    return groups


def progress_bar(quiet: bool, *columns):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    # A bar only on a terminal: in a log (CI, nohup, a pipe) Rich would print stray blank lines.
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *columns, TimeElapsedColumn(),
        TimeRemainingColumn(), transient=True, disable=quiet or not sys.stderr.isatty(),
    )
    progress.console.stderr = True
    return progress
