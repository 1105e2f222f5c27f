"""The ``stemtf`` command line. Every command parses, calls one library function and reports.

TensorFlow is imported inside the commands that need it, so ``stemtf --help`` is instant.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Optional

import typer

from stemtf import __version__
from stemtf.errors import StemtfError

app = typer.Typer(
    name="stemtf",
    help="Split songs into stems (vocals, drums, bass, ...) with TensorFlow.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up chatter (oneDNN, CPU features) kept off stderr.

    Those lines are written by C++ before any log level applies, so file descriptor 2 itself is
    pointed at /dev/null for the duration of the import.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _error(message: str) -> None:
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


@app.command()
def separate(
    inputs: list[pathlib.Path] = typer.Argument(..., help="Audio files (WAV, FLAC, OGG, MP3; m4a/aac/... with ffmpeg).", show_default=False),
    model: str = typer.Option("4stems", "--model", "-m", help="Model name (see `stemtf models`) or model directory."),
    output_dir: pathlib.Path = typer.Option(pathlib.Path("separated"), "--output-dir", "-o", help="Root folder of the outputs."),
    fmt: str = typer.Option("wav", "--format", "-f", help="Output format: wav, flac, ogg or mp3."),
    bit_depth: int = typer.Option(16, "--bit-depth", help="WAV/FLAC sample format: 16, 24 or 32 (float, WAV only)."),
    bitrate: Optional[int] = typer.Option(None, "--bitrate", help="MP3/OGG bitrate in kbps (32-320)."),
    filename: str = typer.Option("{track}/{stem}.{ext}", "--filename", help="Output path template under --output-dir; fields {track} {stem} {ext} {model}."),
    offset: float = typer.Option(0.0, "--offset", help="Seconds to skip at the start of each input."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds to separate (default: to the end)."),
    wiener: int = typer.Option(0, "--wiener", help="Multichannel Wiener filter EM iterations after masking (0: off; 1-2 typical)."),
    overlap: Optional[float] = typer.Option(None, "--overlap", help="Overlap of neighbouring chunks in seconds, cross-faded (default 1).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Separate audio files into one file per stem: OUTPUT_DIR/TRACK/STEM.EXT."""
    from stemtf.audio import BIT_DEPTHS, FORMATS
    from stemtf.config import load_model_config
    from stemtf.separator import check_filename_template

    # Validate everything cheap before loading TensorFlow and the model.
    if fmt not in FORMATS:
        raise StemtfError(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}.")
    if bit_depth not in BIT_DEPTHS:
        raise StemtfError(f"--bit-depth must be 16, 24 or 32. Received {bit_depth}.")
    if bitrate is not None and not 32 <= bitrate <= 320:
        raise StemtfError(f"--bitrate must be between 32 and 320 kbps. Received {bitrate}.")
    if offset < 0:
        raise StemtfError(f"--offset must be >= 0 seconds. Received {offset:g}.")
    if duration is not None and duration <= 0:
        raise StemtfError(f"--duration must be > 0 seconds. Received {duration:g}.")
    if wiener < 0:
        raise StemtfError(f"--wiener must be >= 0 iterations. Received {wiener}.")
    check_filename_template(filename)
    load_model_config(model)  # unknown model: fail before the TensorFlow import

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from stemtf.separator import Separator

    _import_tensorflow_quietly()
    separator = Separator.from_pretrained(model, overlap=overlap, wiener_iterations=wiener)
    planned: dict[pathlib.Path, pathlib.Path] = {}
    written, failed = 0, 0
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"), TimeElapsedColumn(),
        console=None, transient=True, disable=quiet,
    )
    progress.console.stderr = True
    with progress:
        for path in inputs:
            task = progress.add_task(path.name, total=None)

            def report(done: int, total: int | None, task=task) -> None:
                progress.update(task, completed=done, total=total)

            try:
                targets = separator.output_paths(path, output_dir=output_dir, filename=filename, fmt=fmt)
                clash = next((planned[t] for t in targets.values() if t in planned), None)
                if clash is not None:
                    raise StemtfError(
                        f"{str(path)!r} would write the same files as {str(clash)!r}; "
                        "use --filename with a distinct pattern or separate them apart."
                    )
                paths = separator.separate_file(
                    path, output_dir=output_dir, filename=filename, fmt=fmt, bit_depth=bit_depth, bitrate=bitrate,
                    offset=offset, duration=duration, overwrite=overwrite, progress=report,
                )
            except StemtfError as error:
                progress.remove_task(task)
                _error(str(error))
                failed += 1
                continue
            progress.remove_task(task)
            planned.update({t: path for t in paths.values()})
            written += 1
            if not quiet:
                folders = sorted({str(p.parent) for p in paths.values()})
                typer.echo(f"{path.name}: {len(paths)} stems ({', '.join(paths)}) -> {', '.join(folders)}")
    if not quiet:
        typer.echo(f"Separated {written} of {len(inputs)} file(s) with model {separator.config.name!r}"
                   + (f"; {failed} failed." if failed else "."))
    if failed:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the models: name, stems, weights size, and where they are."""
    import json

    from stemtf.config import CONFIG_FILE, WEIGHTS_FILE, available_models

    found = available_models()
    if not found:
        typer.echo("No models found.")
        return
    rows = [("NAME", "STEMS", "WEIGHTS", "PATH")]
    for name, directory in found.items():
        try:
            stems = ",".join(json.loads((directory / CONFIG_FILE).read_text()).get("stems", []))
        except (OSError, ValueError):
            stems = "(unreadable config)"
        weights = directory / WEIGHTS_FILE
        size = f"{weights.stat().st_size / 1e6:.1f} MB" if weights.is_file() else "missing"
        rows.append((name, stems, size, str(directory)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info lines are not for users
    try:
        result = app(args=argv, standalone_mode=False, prog_name="stemtf")
    except StemtfError as error:
        _error(str(error))
        return 1
    except typer.TyperException as error:  # usage errors: unknown option, missing argument, bad type
        context = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and context is not None:
            typer.echo(context.get_help())
            return 2
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _error(f"{error.format_message()}{hint}")
        return getattr(error, "exit_code", 2)
    except typer.Abort:
        _error("interrupted.")
        return 130
    except KeyboardInterrupt:
        _error("interrupted; no partial output was kept.")
        return 130
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
