"""``stemtf separate`` and ``stemtf models``."""

from __future__ import annotations

import pathlib
from typing import Optional

import typer

from stemtf.cli.app import app, load_status, progress_bar, readable_inputs, report_error, signals
from stemtf import options, runtimes
from stemtf.errors import StemtfError
from stemtf.runtimes import DEFAULT_PRECISION


@app.command()
def separate(
    inputs: list[pathlib.Path] = typer.Argument(..., help="Audio files (WAV, FLAC, OGG, MP3; m4a/aac/... with ffmpeg).", show_default=False),
    model: str = typer.Option(options.DEFAULT_MODEL, "--model", "-m", help="Model name (see `stemtf models`) or model directory."),
    output_dir: pathlib.Path = typer.Option(pathlib.Path(options.DEFAULT_OUTPUT_DIR), "--output-dir", "-o", help="Root folder of the outputs."),
    fmt: str = typer.Option(options.DEFAULT_FORMAT, "--format", "-f", help="Output format: wav, flac, ogg or mp3."),
    bit_depth: int = typer.Option(options.DEFAULT_BIT_DEPTH, "--bit-depth", help="WAV/FLAC sample format: 16, 24 or 32 (float, WAV only)."),
    bitrate: Optional[int] = typer.Option(None, "--bitrate", help="MP3/OGG bitrate in kbps (32-320)."),
    filename: str = typer.Option(options.DEFAULT_FILENAME, "--filename", help="Output path template under --output-dir; fields {track} {stem} {ext} {model}."),
    offset: float = typer.Option(options.DEFAULT_OFFSET, "--offset", help="Seconds to skip at the start of each input."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds to separate (default: to the end)."),
    wiener_iterations: int = typer.Option(options.DEFAULT_WIENER_ITERATIONS, "--wiener-iterations", help="Multichannel Wiener filter EM iterations after masking (0: off; 1-2 typical)."),
    wiener: Optional[int] = typer.Option(None, "--wiener", hidden=True),  # the old spelling of --wiener-iterations
    overlap: Optional[float] = typer.Option(None, "--overlap", help="Overlap of neighbouring chunks in seconds, cross-faded (default 1).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    group: Optional[list[str]] = typer.Option(None, "--group", help="Sum stems into one output: NAME=STEM,STEM (repeatable), e.g. accompaniment=drums,bass,other.", show_default=False),
    two_stems: Optional[str] = typer.Option(None, "--two-stems", help="Only STEM and no_STEM (everything else), e.g. --two-stems vocals for karaoke.", show_default=False),
    runtime: str = typer.Option(options.DEFAULT_RUNTIME, "--runtime", help="Where the masks are computed: litert (no TensorFlow; converted once and cached), keras, or auto (litert when installed)."),
    precision: str = typer.Option(DEFAULT_PRECISION, "--precision", help="LiteRT weights: float32, float16 or int8 (faster, less faithful)."),
    plot: bool = typer.Option(False, "--plot", help="Also write TRACK_spectrograms.png next to the stems (mixture and stem spectrograms; needs matplotlib)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Separate audio files into one file per stem: OUTPUT_DIR/TRACK/STEM.EXT."""
    from stemtf.config import load_model_config

    wiener_iterations = wiener_iterations if wiener is None else wiener
    # Every option is checked before TensorFlow and the model load, with the library's own checks.
    config, _ = load_model_config(model)
    options.check_output(fmt, bit_depth, bitrate)
    options.check_offset(offset)
    options.check_duration(duration)
    options.check_wiener_iterations(wiener_iterations)
    options.check_filename(filename)
    options.check_overlap(overlap, config)
    groups = options.parse_groups(group, two_stems=two_stems)
    options.check_groups(groups, config.stems)
    runtimes.check_runtime(runtime, precision)
    if plot:
        from stemtf import plots

        plots.check_available()  # a missing matplotlib fails before any work
    readable, failed = readable_inputs(inputs)

    from stemtf.separator import Separator

    separator = Separator.from_pretrained(
        model, runtime=runtime, precision=precision, overlap=overlap, wiener_iterations=wiener_iterations,
        on_status=load_status(runtime, quiet),
    )
    file_options = dict(output_dir=output_dir, filename=filename, fmt=fmt, bit_depth=bit_depth, bitrate=bitrate,
                        offset=offset, duration=duration, overwrite=overwrite, groups=groups)
    written, more_failed = _separate_all(separator, readable, file_options, plot=plot, quiet=quiet)
    failed += more_failed
    if not quiet:
        typer.echo(f"Separated {written} of {len(inputs)} file(s) with model {separator.config.name!r}"
                   + (f"; {failed} failed." if failed else "."))
    if failed:
        raise typer.Exit(1)


def _separate_all(separator, paths: list[pathlib.Path], file_options: dict, *, plot: bool, quiet: bool) -> tuple[int, int]:
    """Separate every input with a progress bar; one line per failed file, and per file that clipped. ``(written, failed)``."""
    from rich.progress import TextColumn

    from stemtf import audio

    planned: dict[pathlib.Path, pathlib.Path] = {}
    written = failed = 0
    progress = progress_bar(quiet, TextColumn("chunks"))
    with progress, signals.at_callbacks():
        for path in paths:
            task = progress.add_task(path.name, total=None)

            def report(done: int, total: int | None, task=task) -> None:
                signals.check()  # a stop signal ends the run here, between two chunks
                progress.update(task, completed=done, total=total)

            try:
                with audio.clipping_report() as clipped:
                    written_paths = _separate_one(separator, path, planned, file_options, report, plot=plot)
            except StemtfError as error:
                progress.remove_task(task)
                report_error(error.for_cli())
                failed += 1
                continue
            progress.remove_task(task)
            written += 1
            if clipped:
                typer.echo(f"stemtf: warning: {clipping_warning(path, written_paths, clipped)}", err=True)
            if not quiet:
                folders = sorted({str(p.parent) for p in written_paths.values()})
                typer.echo(f"{path.name}: {len(written_paths)} stems ({', '.join(written_paths)}) -> {', '.join(folders)}")
    return written, failed


def clipping_warning(path: pathlib.Path, written: dict[str, pathlib.Path], clipped: list) -> str:
    """One line on the samples beyond full scale that the stems of ``path`` lost (``audio.Clipped``), and how to keep them."""
    import math

    lost = {item.path: item for item in clipped}
    over_db = math.ceil(200 * math.log10(max(item.peak for item in clipped))) / 10  # rounded up to 0.1 dB
    return (f"{path.name}: {sum(item.samples for item in clipped)} samples clipped in "
            f"{', '.join(stem for stem, target in written.items() if target in lost)} (peak {over_db:+.1f} dBFS); "
            f"write float WAV (--format wav --bit-depth 32) to keep them, or lower the input's level by "
            f"{over_db:.1f} dB or more.")


def _separate_one(separator, path: pathlib.Path, planned: dict, file_options: dict, report, *, plot: bool) -> dict:
    """One input's stems, refused when an earlier input of this run wrote the same files."""
    targets = separator.output_paths(path, output_dir=file_options["output_dir"], filename=file_options["filename"],
                                     fmt=file_options["fmt"], groups=file_options["groups"])
    clash = next((planned[t] for t in targets.values() if t in planned), None)
    if clash is not None:
        raise StemtfError(
            f"{str(path)!r} would write the same files as {str(clash)!r}; "
            "use --filename with a distinct pattern or separate them apart."
        )
    paths = separator.separate_file(path, progress=report, **file_options)
    if plot:
        from stemtf import plots

        plots.plot_track(path, paths, offset=file_options["offset"])
    planned.update({t: path for t in paths.values()})
    return paths


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
