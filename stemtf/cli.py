"""The ``stemtf`` command line. Every command parses, calls one library function and reports.

TensorFlow is imported inside the commands that need it, so ``stemtf --help`` is instant.
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import threading
import time
from typing import Optional

import typer

from stemtf import __version__, options
from stemtf.errors import OptionError, StemtfError
from stemtf.interrupts import STOP_SIGNALS, Interrupted, Signals

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


_signals = Signals()


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
    model: str = typer.Option(options.DEFAULT_MODEL, "--model", "-m", help="Model name (see `stemtf models`) or model directory."),
    output_dir: pathlib.Path = typer.Option(pathlib.Path(options.DEFAULT_OUTPUT_DIR), "--output-dir", "-o", help="Root folder of the outputs."),
    fmt: str = typer.Option(options.DEFAULT_FORMAT, "--format", "-f", help="Output format: wav, flac, ogg or mp3."),
    bit_depth: int = typer.Option(options.DEFAULT_BIT_DEPTH, "--bit-depth", help="WAV/FLAC sample format: 16, 24 or 32 (float, WAV only)."),
    bitrate: Optional[int] = typer.Option(None, "--bitrate", help="MP3/OGG bitrate in kbps (32-320)."),
    filename: str = typer.Option(options.DEFAULT_FILENAME, "--filename", help="Output path template under --output-dir; fields {track} {stem} {ext} {model}."),
    offset: float = typer.Option(0.0, "--offset", help="Seconds to skip at the start of each input."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds to separate (default: to the end)."),
    wiener_iterations: int = typer.Option(0, "--wiener-iterations", help="Multichannel Wiener filter EM iterations after masking (0: off; 1-2 typical)."),
    wiener: Optional[int] = typer.Option(None, "--wiener", hidden=True),  # the old spelling of --wiener-iterations
    overlap: Optional[float] = typer.Option(None, "--overlap", help="Overlap of neighbouring chunks in seconds, cross-faded (default 1).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    group: Optional[list[str]] = typer.Option(None, "--group", help="Sum stems into one output: NAME=STEM,STEM (repeatable), e.g. accompaniment=drums,bass,other.", show_default=False),
    two_stems: Optional[str] = typer.Option(None, "--two-stems", help="Only STEM and no_STEM (everything else), e.g. --two-stems vocals for karaoke.", show_default=False),
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

    from rich.progress import TextColumn

    from stemtf.separator import Separator

    _import_tensorflow_quietly()
    separator = Separator.from_pretrained(model, overlap=overlap, wiener_iterations=wiener_iterations)
    planned: dict[pathlib.Path, pathlib.Path] = {}
    written, failed = 0, 0
    progress = _progress_bar(quiet, TextColumn("chunks"))
    with progress, _signals.at_callbacks():
        for path in inputs:
            task = progress.add_task(path.name, total=None)

            def report(done: int, total: int | None, task=task) -> None:
                _signals.check()  # a stop signal ends the run here, between two chunks
                progress.update(task, completed=done, total=total)

            try:
                targets = separator.output_paths(path, output_dir=output_dir, filename=filename, fmt=fmt, groups=groups)
                clash = next((planned[t] for t in targets.values() if t in planned), None)
                if clash is not None:
                    raise StemtfError(
                        f"{str(path)!r} would write the same files as {str(clash)!r}; "
                        "use --filename with a distinct pattern or separate them apart."
                    )
                paths = separator.separate_file(
                    path, output_dir=output_dir, filename=filename, fmt=fmt, bit_depth=bit_depth, bitrate=bitrate,
                    offset=offset, duration=duration, overwrite=overwrite, groups=groups, progress=report,
                )
            except StemtfError as error:
                progress.remove_task(task)
                _error(error.for_cli() if isinstance(error, OptionError) else str(error))
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


def _stem_groups(values: list[str] | None) -> dict[str, list[str]] | None:
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


def _progress_bar(quiet: bool, *columns):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    # A bar only on a terminal: in a log (CI, nohup, a pipe) Rich would print stray blank lines.
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *columns, TimeElapsedColumn(),
        TimeRemainingColumn(), transient=True, disable=quiet or not sys.stderr.isatty(),
    )
    progress.console.stderr = True
    return progress


@app.command()
def train(
    config_path: str = typer.Argument(..., metavar="CONFIG", help="Model config JSON (e.g. configs/4stems.json) or a preset name (4stems).", show_default=False),
    data: pathlib.Path = typer.Option(..., "--data", help="Folder of ROOT/<track>/<stem>.<ext>, a CSV manifest, or a MUSDB18 folder.", show_default=False),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help=f"Model directory to write (default {options.DEFAULT_RUNS_DIR}/NAME).", show_default=False),
    steps: int = typer.Option(options.DEFAULT_STEPS, "--steps", help="Total optimizer steps (a resumed run counts those done)."),
    batch_size: int = typer.Option(options.DEFAULT_BATCH_SIZE, "--batch-size", help="Examples per step."),
    learning_rate: float = typer.Option(options.DEFAULT_LEARNING_RATE, "--learning-rate", help="Peak learning rate (Adam, cosine decay)."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="STFT frames per training example (default: the config's segment_frames).", show_default=False),
    checkpoint_every: int = typer.Option(options.DEFAULT_CHECKPOINT_EVERY, "--checkpoint-every", help="Steps between validation + checkpoint."),
    validation_track: Optional[list[str]] = typer.Option(None, "--validation-track", help="Hold out this track for validation (repeatable; default: 10% of tracks).", show_default=False),
    stem_group: Optional[list[str]] = typer.Option(None, "--stem-group", help="Merge files into a stem: STEM=FILE_STEM,FILE_STEM (repeatable), e.g. other=other,piano.", show_default=False),
    layout: str = typer.Option("auto", "--layout", help="auto, folder, csv or musdb."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT_DIR/checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again in an OUTPUT_DIR that already holds a model or checkpoint."),
    from_model: Optional[str] = typer.Option(None, "--from", help="Start from a trained model (name or directory): fine-tuning.", show_default=False),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Keep the encoder's weights fixed (with --from)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data pipeline, split and initialisation."),
    speed_range: tuple[float, float] = typer.Option((1.0, 1.0), "--speed-range", metavar="LOW HIGH", help="Play each example faster or slower by a factor drawn from [LOW, HIGH], tempo and pitch together (e.g. 0.85 1.15); 1 1 is off."),
    log_every: int = typer.Option(100, "--log-every", help="When stderr is not a terminal (a log, CI, nohup): a progress line every N steps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Train a model on your stems, or fine-tune one with --from; writes a loadable model at every checkpoint."""
    from stemtf.config import load_config

    config = load_config(config_path)
    groups = _stem_groups(stem_group)
    options.check_training(
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, checkpoint_every=checkpoint_every,
        from_model=from_model, freeze_encoder=freeze_encoder, num_frames=num_frames, config=config,
    )
    options.check_speed_range(speed_range)
    if log_every < 1:
        raise OptionError("log_every", f"{{option}} must be >= 1. Received {log_every}.")
    if not data.exists():
        raise StemtfError(f"--data {str(data)!r} does not exist.")
    output_dir = output_dir if output_dir is not None else pathlib.Path(options.DEFAULT_RUNS_DIR) / config.name

    _import_tensorflow_quietly()
    from rich.progress import TextColumn

    from stemtf.data import Augmentation
    from stemtf.train import fit

    augmentation = Augmentation(speed_range=tuple(speed_range))
    progress = _progress_bar(quiet, TextColumn("{task.fields[loss]}"))
    with progress, _signals.at_callbacks():
        task = progress.add_task(f"training {config.name}", total=steps, loss="")

        def report(step: int, total: int, logs) -> None:
            _signals.check()  # a stop signal ends the run here, between two steps
            loss = logs.get("loss")
            progress.update(task, completed=step, total=total, loss="" if loss is None else f"loss {float(loss):.4f}")
            if log_lines and (step % log_every == 0 or step == total):
                elapsed = time.monotonic() - started
                shown = "" if loss is None else f"  loss {float(loss):.4f}"
                typer.echo(f"step {step}/{total}{shown}  {elapsed:.0f} s", err=True)

        log_lines = not quiet and not sys.stderr.isatty()  # the bar shows nothing there: print lines
        started = time.monotonic()

        result = fit(
            config, data, output_dir=output_dir, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
            num_frames=num_frames, layout=layout, stem_groups=groups, validation_tracks=validation_track or None,
            seed=seed, resume=resume, overwrite=overwrite, from_model=from_model, freeze_encoder=freeze_encoder,
            checkpoint_every=checkpoint_every, augmentation=augmentation, progress=report,
        )
    if not quiet:
        typer.echo(f"Trained {config.name!r} to step {result.step}; model written to {result.output_dir}")


@app.command()
def evaluate(
    model: str = typer.Argument(options.DEFAULT_MODEL, help="Model name or directory (ignored for --baseline oracle/mixture)."),
    data: Optional[pathlib.Path] = typer.Option(None, "--data", help="Folder of ROOT/<track>/<stem>.<ext> or a CSV manifest.", show_default=False),
    musdb: Optional[pathlib.Path] = typer.Option(None, "--musdb", help="A local MUSDB18 folder (official splits).", show_default=False),
    subset: str = typer.Option("test", "--subset", help="MUSDB18 subset: test or train."),
    track: Optional[list[str]] = typer.Option(None, "--track", help="Evaluate only this track (repeatable).", show_default=False),
    stem_group: Optional[list[str]] = typer.Option(None, "--stem-group", help="Merge files into a stem: STEM=FILE_STEM,FILE_STEM (repeatable).", show_default=False),
    baseline: str = typer.Option("model", "--baseline", help="model, oracle (ideal ratio masks: the ceiling) or mixture (the floor)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Score only the first S seconds of each track.", show_default=False),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help="Write museval's per-track JSON here.", show_default=False),
    wiener_iterations: int = typer.Option(0, "--wiener-iterations", help="Wiener filter EM iterations for the model's estimates."),
    wiener: Optional[int] = typer.Option(None, "--wiener", hidden=True),  # the old spelling of --wiener-iterations
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score separation with museval (SDR/SIR/ISR/SAR, 1 s windows) and print SiSEC's median table."""
    from stemtf.config import load_model_config

    wiener_iterations = wiener_iterations if wiener is None else wiener
    if (data is None) == (musdb is None):
        raise StemtfError("Give exactly one of --data ROOT or --musdb ROOT.")
    options.check_baseline(baseline)
    options.check_duration(duration)
    options.check_wiener_iterations(wiener_iterations)
    config, _ = load_model_config(model)
    groups = _stem_groups(stem_group)

    _import_tensorflow_quietly()
    from stemtf import evaluate as evaluate_lib

    evaluate_lib.check_dependencies()
    tracks = evaluate_lib.load_tracks(
        data if musdb is None else musdb, musdb=musdb is not None, stems=config.stems, stem_groups=groups,
        subset=subset, names=track,
    )
    separator = None
    if baseline == "model":
        from stemtf.separator import Separator

        separator = Separator.from_pretrained(model, wiener_iterations=wiener_iterations)
    progress = _progress_bar(quiet)
    with progress:
        task = progress.add_task(f"evaluating ({baseline})", total=len(tracks))
        results = evaluate_lib.evaluate_tracks(
            tracks, stems=config.stems, sample_rate=config.sample_rate, num_channels=config.num_channels,
            separator=separator, baseline=baseline, output_dir=output_dir, n_fft=config.n_fft,
            hop_length=config.hop_length, duration=duration,
            progress=lambda done, total, name: progress.update(task, completed=done, description=name),
        )
    title = f"{config.name if baseline == 'model' else baseline} — median over frames, then over {len(tracks)} track(s)"
    typer.echo(evaluate_lib.format_table(results.table(), title=title))
    typer.echo(f"museval scored {results.coverage():.0%} of the 1 s windows (BSS-eval skips windows where a stem "
               "is silent); cSDR is the MDX global SDR over whole tracks.")


def _export_name(name: str, directory: pathlib.Path) -> str:
    """The default export folder's name: the model's, unless a model of that name lives elsewhere.

    A model fine-tuned from ``configs/4stems.json`` is also called ``4stems``; exporting it to
    ``exported/4stems`` would mix it up with the shipped model's export, so it gets
    ``PARENT-FOLDER`` of its directory instead (``runs/4stems`` -> ``exported/runs-4stems``).
    """
    from stemtf.config import available_models

    same_name = available_models().get(name)
    if same_name is None or same_name.resolve() == directory.resolve():
        return name
    return f"{directory.resolve().parent.name}-{directory.resolve().name}"


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="Model name (see `stemtf models`) or model directory.", show_default=False),
    fmt: str = typer.Option("savedmodel", "--format", "-f", help="savedmodel (TF Serving), tflite (phones) or onnx."),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help=f"Output folder (default: {options.DEFAULT_EXPORT_DIR}/MODEL_NAME).", show_default=False),
    output: Optional[pathlib.Path] = typer.Option(None, "--output", hidden=True),  # the old spelling of --output-dir
    quantize: str = typer.Option("none", "--quantize", help="TFLite weights: none (float32), float16 or int8 (dynamic range)."),
    chunk_seconds: Optional[float] = typer.Option(None, "--chunk-seconds", help="Chunk length of the exported models in seconds (default: the model's, ~11.8 s).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing exported files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Export a model: a SavedModel for TF Serving, TFLite chunk + masks models, or ONNX; each with a .json."""
    from stemtf.config import load_model_config
    from stemtf.export.artifacts import check_options  # no TensorFlow: bad options fail before it loads

    check_options(fmt, quantize)
    options.check_chunk_seconds(chunk_seconds)
    config, directory = load_model_config(model)  # unknown model: fail before the TensorFlow import
    output_dir = output_dir or output or pathlib.Path(options.DEFAULT_EXPORT_DIR) / _export_name(config.name, directory)

    _import_tensorflow_quietly()
    from stemtf.export import export

    written = export(model, fmt=fmt, output_dir=output_dir, quantize=quantize, chunk_seconds=chunk_seconds, overwrite=overwrite)
    if not quiet:
        for path in written:
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
            typer.echo(f"{path} ({size / 1e6:.1f} MB) + {path.name}.json")
        typer.echo(f"Exported model {config.name!r} as {fmt}" + (f" ({quantize})." if quantize != "none" else "."))


@app.command("serve")
def serve_command(
    model: str = typer.Argument(options.DEFAULT_MODEL, help="Model for TF Serving's REST API and the page: an exported SavedModel (folder or TF Serving base path), or a model name/directory."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated models the page offers, e.g. 2stems,4stems,5stems (default: MODEL).", show_default=False),
    host: str = typer.Option(options.DEFAULT_HOST, "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(options.DEFAULT_PORT, "--port", "-p", help="TCP port (TF Serving's REST port by default)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in URLs (default: the model's name).", show_default=False),
    max_upload_mb: float = typer.Option(options.DEFAULT_MAX_UPLOAD_MB, "--max-upload-mb", help="Largest request body or upload in MB."),
    max_duration: float = typer.Option(options.DEFAULT_MAX_DURATION, "--max-duration", help="Longest audio accepted, in seconds."),
    max_concurrency: int = typer.Option(options.DEFAULT_MAX_CONCURRENCY, "--max-concurrency", help="TF Serving API separations run at the same time."),
    cache_dir: Optional[pathlib.Path] = typer.Option(None, "--cache-dir", help="Folder for the page's uploads and stems (default: ~/.cache/stemtf/web).", show_default=False),
    cache_quota_mb: float = typer.Option(2000.0, "--cache-quota-mb", help="Most MB of stems kept; the oldest are deleted first."),
    expiry_minutes: float = typer.Option(60.0, "--expiry-minutes", help="Minutes the stems of a job are kept."),
    queue_length: int = typer.Option(8, "--queue-length", help="Uploads that may wait; more get 'busy' (503)."),
    workers: int = typer.Option(1, "--workers", help="Page jobs separated at the same time."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing, not even the URL."),
) -> None:
    """Serve the web page (upload a song, listen to its stems), its job API, and TF Serving's REST API; prints the URL to open."""
    from stemtf.config import load_model_config
    from stemtf.serve.jobs import check_options
    from stemtf.serve.served_model import find_savedmodel

    options.check_serving(port=port, max_upload_mb=max_upload_mb, max_duration=max_duration, max_concurrency=max_concurrency)
    check_options(max_queue=queue_length, workers=workers, quota_mb=cache_quota_mb, expiry=expiry_minutes * 60, max_duration=max_duration)
    page_models = None
    if models is not None:
        page_models = [item.strip() for item in models.split(",") if item.strip()]
        if not page_models:
            raise StemtfError("--models must name at least one model, e.g. --models 2stems,4stems.")
        for item in page_models:
            load_model_config(item)
    if find_savedmodel(model) is None:
        load_model_config(model)  # neither an export nor a model: fail before the TensorFlow import
    if cache_dir is not None and cache_dir.exists() and not cache_dir.is_dir():
        raise StemtfError(f"--cache-dir {str(cache_dir)!r} is a file; give a folder.")

    _import_tensorflow_quietly()
    from stemtf.serve import serve

    def status(line: str) -> None:
        if not quiet:
            typer.echo(line)

    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGINT/SIGTERM only: a hang-up is turned into a SIGTERM.
        signal.signal(signal.SIGHUP, lambda signum, frame: signal.raise_signal(signal.SIGTERM))
    try:
        serve(model, models=page_models, host=host, port=port, name=name, max_upload_mb=max_upload_mb,
              max_duration=max_duration, max_concurrency=max_concurrency, cache_dir=cache_dir,
              quota_mb=cache_quota_mb, expiry=expiry_minutes * 60, max_queue=queue_length, workers=workers,
              on_status=status)
    except (KeyboardInterrupt, Interrupted):  # how a server is stopped; uvicorn has already shut down cleanly
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code.

    Ctrl-C, SIGTERM and SIGHUP all unwind the command the same way (temporary files deleted, no
    partial output kept) and end with one line saying so and exit code 128 + the signal number.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info lines are not for users
    previous = {}
    _signals.pending, _signals.deferred = None, False
    if threading.current_thread() is threading.main_thread():  # handlers can only be set there
        previous = {signum: signal.signal(signum, _signals.handle) for signum in STOP_SIGNALS}
    try:
        return _run(argv)
    except (Interrupted, KeyboardInterrupt) as error:
        signum = getattr(error, "signum", signal.SIGINT)
        _error(f"interrupted ({signal.Signals(signum).name}); no partial output was kept.")
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, standalone_mode=False, prog_name="stemtf")
    except OptionError as error:  # the library names the keyword; the CLI user typed the flag
        _error(error.for_cli())
        return 1
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
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
