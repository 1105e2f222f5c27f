"""``stemtf train`` and ``stemtf evaluate``."""

from __future__ import annotations

import contextlib
import json
import pathlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Optional

import typer

from stemtf.cli.app import app, import_tensorflow_quietly, progress_bar, signals, stem_groups
from stemtf import options
from stemtf.errors import OptionError, StemtfError


@app.command()
def train(
    config_path: str = typer.Argument(..., metavar="CONFIG", help="Model config JSON (e.g. configs/4stems.json) or a preset name (4stems).", show_default=False),
    data: pathlib.Path = typer.Option(..., "--data", help="Folder of ROOT/<track>/<stem>.<ext>, a CSV manifest (a cell ? is an unknown stem, a drums+bass_path column a sum of stems), or a MUSDB18 folder.", show_default=False),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help=f"Model directory to write (default {options.DEFAULT_RUNS_DIR}/NAME).", show_default=False),
    steps: int = typer.Option(options.DEFAULT_STEPS, "--steps", help="Total optimizer steps (a resumed run counts those done)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=f"Examples per step (global: over all GPUs and workers); default {options.DEFAULT_BATCH_SIZE}, or with --resume the checkpoint's.", show_default=False),
    learning_rate: float = typer.Option(options.DEFAULT_LEARNING_RATE, "--learning-rate", help="Peak learning rate (Adam, cosine decay)."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="STFT frames per training example (default: the config's segment_frames).", show_default=False),
    checkpoint_every: int = typer.Option(options.DEFAULT_CHECKPOINT_EVERY, "--checkpoint-every", help="Steps between validation + checkpoint."),
    validation_track: Optional[list[str]] = typer.Option(None, "--validation-track", help="Hold out this track for validation (repeatable; default: 10% of tracks).", show_default=False),
    stem_group: Optional[list[str]] = typer.Option(None, "--stem-group", help="Merge files into a stem: STEM=FILE_STEM,FILE_STEM (repeatable), e.g. other=other,piano.", show_default=False),
    stem_weight: Optional[list[str]] = typer.Option(None, "--stem-weight", help="Weigh a stem's loss: STEM=WEIGHT (repeatable), e.g. vocals=2; others weigh 1.", show_default=False),
    layout: str = typer.Option("auto", "--layout", help="auto, folder, csv or musdb."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT_DIR/checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again in an OUTPUT_DIR that already holds a model or checkpoint."),
    from_model: Optional[str] = typer.Option(None, "--from", help="Start from a trained model (name or directory): fine-tuning.", show_default=False),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Keep the encoder's weights fixed (with --from)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data pipeline, split and initialisation."),
    speed_range: tuple[float, float] = typer.Option((1.0, 1.0), "--speed-range", metavar="LOW HIGH", help="Play each example faster or slower by a factor drawn from [LOW, HIGH], tempo and pitch together (e.g. 0.85 1.15); 1 1 is off."),
    eq_reverb_probability: float = typer.Option(0.0, "--eq-reverb-probability", metavar="P", help="Colour each stem with probability P like another recording: a random equaliser (up to +-6 dB) and a random room reverb (0.1-1.2 s); 0 is off."),
    remix_silent_stems: bool = typer.Option(True, "--remix-silent-stems/--no-remix-silent-stems", help="Whether remixing across tracks may take a stem from a track where it is silent (--no-remix-silent-stems: only from tracks with a file for it, for data of parts alone)."),
    strategy: str = typer.Option("auto", "--strategy", help="auto (this machine's GPUs) or multi-worker (one of the workers TF_CONFIG lists; run it on every worker)."),
    worker_timeout: float = typer.Option(options.DEFAULT_WORKER_TIMEOUT, "--worker-timeout", help="multi-worker: seconds to wait for the other workers before failing."),
    log_every: int = typer.Option(100, "--log-every", help="When stderr is not a terminal (a log, CI, nohup): a progress line every N steps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Train a model on your stems, or fine-tune one with --from; writes a loadable model at every checkpoint."""
    from stemtf.config import load_config

    config = load_config(config_path)
    output_dir = output_dir if output_dir is not None else pathlib.Path(options.DEFAULT_RUNS_DIR) / config.name
    batch_size = _batch_size(batch_size, output_dir, resume=resume)
    groups = stem_groups(stem_group)
    stem_weights = options.parse_stem_weights(stem_weight)
    options.check_stem_weights(stem_weights, config.stems)
    options.check_training(
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, checkpoint_every=checkpoint_every,
        from_model=from_model, freeze_encoder=freeze_encoder, num_frames=num_frames, config=config,
    )
    options.check_speed_range(speed_range)
    options.check_eq_reverb_probability(eq_reverb_probability)
    if log_every < 1:
        raise OptionError("log_every", f"{{option}} must be >= 1. Received {log_every}.")
    if not data.exists():
        raise StemtfError(f"--data {str(data)!r} does not exist.")

    import_tensorflow_quietly()
    from stemtf.data import Augmentation
    from stemtf.train import fit

    augmentation = Augmentation(speed_range=tuple(speed_range), remix_silent_stems=remix_silent_stems,
                                eq_reverb_probability=eq_reverb_probability)
    _wait_for_peers(strategy, worker_timeout)
    with training_progress(f"training {config.name}", steps, quiet=quiet, log_every=log_every) as report:
        result = fit(
            config, data, output_dir=output_dir, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
            num_frames=num_frames, layout=layout, stem_groups=groups, stem_weights=stem_weights, validation_tracks=validation_track or None,
            seed=seed, resume=resume, overwrite=overwrite, from_model=from_model, freeze_encoder=freeze_encoder,
            checkpoint_every=checkpoint_every, augmentation=augmentation, progress=report, strategy=strategy,
            worker_timeout=worker_timeout,
        )
    if not quiet:
        typer.echo(f"Trained {config.name!r} to step {result.step}; model written to {result.output_dir}")


def _wait_for_peers(strategy: str, worker_timeout: float) -> None:
    """multi-worker: wait for the other workers of TF_CONFIG here, before the stop signals are deferred to
    training steps, so that Ctrl-C or SIGTERM ends the wait at once."""
    if strategy != "multi-worker" or not 0 < worker_timeout < float("inf"):
        return  # fit reports a bad strategy or timeout
    from stemtf.train.distributed import read_tf_config, wait_for_workers, worker_addresses

    _, index, _ = read_tf_config()  # a missing or malformed TF_CONFIG is one line here
    wait_for_workers(worker_addresses(), index, timeout=worker_timeout)


@contextlib.contextmanager
def training_progress(title: str, steps: int, *, quiet: bool, log_every: int) -> Iterator[Callable]:
    """A progress bar titled ``title`` (or, when stderr is not a terminal, a line every ``log_every``
    steps) and the ``progress(step, steps, logs)`` function that drives it; stop signals end the run
    between two steps. ``stemtf train`` and ``stemtf distill`` both report through it."""
    from rich.progress import TextColumn

    progress = progress_bar(quiet, TextColumn("{task.fields[loss]}"))
    log_lines = not quiet and not sys.stderr.isatty()  # the bar shows nothing there: print lines
    started = time.monotonic()
    with progress, signals.at_callbacks():
        task = progress.add_task(title, total=steps, loss="")

        def report(step: int, total: int, logs) -> None:
            signals.check()  # a stop signal ends the run here, between two steps
            loss = logs.get("loss")
            progress.update(task, completed=step, total=total, loss="" if loss is None else f"loss {float(loss):.4f}")
            if log_lines and (step % log_every == 0 or step == total):
                shown = "" if loss is None else f"  loss {float(loss):.4f}"
                typer.echo(f"step {step}/{total}{shown}  {time.monotonic() - started:.0f} s", err=True)

        yield report


def _batch_size(given: Optional[int], output_dir: pathlib.Path, *, resume: bool) -> int:
    """The batch size of this run: as given, else the resumed checkpoint's, else the default; a resumed
    run that changes it says so (its later steps see a different number of examples each)."""
    saved = None
    state_file = output_dir / "checkpoint" / "state.json"  # stemtf.train.checkpoints' layout (read without TensorFlow)
    if resume and state_file.is_file():
        try:
            saved = json.loads(state_file.read_text(encoding="utf-8")).get("batch_size")
        except (OSError, ValueError, AttributeError):
            saved = None  # training reports a damaged checkpoint itself
    if given is None:
        return int(saved) if isinstance(saved, int) else options.DEFAULT_BATCH_SIZE
    if isinstance(saved, int) and given != saved:
        typer.echo(f"Warning: the checkpoint was trained with --batch-size {saved}; resuming with {given} "
                   f"changes the examples per step from here on (omit --batch-size to keep {saved}).", err=True)
    return given


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
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help="Write museval's per-track JSON here, and sdr_chart.png (cSDR per stem with the oracle and mixture baselines).", show_default=False),
    wiener_iterations: int = typer.Option(0, "--wiener-iterations", help="Wiener filter EM iterations for the model's estimates."),
    wiener: Optional[int] = typer.Option(None, "--wiener", hidden=True),  # the old spelling of --wiener-iterations
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score separation: the SDR of each whole track, then museval's SDR/SIR/ISR/SAR on 1 s windows."""
    from stemtf.config import load_model_config

    wiener_iterations = wiener_iterations if wiener is None else wiener
    if (data is None) == (musdb is None):
        raise StemtfError("Give exactly one of --data ROOT or --musdb ROOT.")
    options.check_baseline(baseline)
    options.check_duration(duration)
    options.check_wiener_iterations(wiener_iterations)
    config, _ = load_model_config(model)
    groups = stem_groups(stem_group)
    if output_dir is not None:
        from stemtf import plots

        plots.check_available()  # the chart needs matplotlib: fail before any work

    import_tensorflow_quietly()
    from stemtf import evaluate as evaluate_lib

    evaluate_lib.check_dependencies()
    tracks = evaluate_lib.load_tracks(
        data if musdb is None else musdb, musdb=musdb is not None, stems=config.stems, stem_groups=groups,
        subset=subset, names=track,
    )
    separator = None
    if baseline == "model":
        from stemtf.separator import Separator

        separator = Separator.from_pretrained(model, runtime="keras", wiener_iterations=wiener_iterations)  # TensorFlow is loaded for scoring anyway
    progress = progress_bar(quiet)
    with progress:
        task = progress.add_task(f"evaluating ({baseline})", total=len(tracks))
        results = evaluate_lib.evaluate_tracks(
            tracks, stems=config.stems, sample_rate=config.sample_rate, num_channels=config.num_channels,
            separator=separator, baseline=baseline, output_dir=output_dir, n_fft=config.n_fft,
            hop_length=config.hop_length, duration=duration,
            baseline_scores=("oracle", "mixture") if output_dir is not None else (),  # for the chart
            progress=lambda done, total, name: progress.update(task, completed=done, description=name),
        )
    system = config.name if baseline == "model" else baseline
    title = (f"{system} on {len(tracks)} track(s), dB: the SDR of each whole track (median over tracks), then "
             "museval's on 1 s windows (median over windows, then over tracks)")
    typer.echo(evaluate_lib.format_table(results.table(), title=title))
    typer.echo(results.coverage_note())
    if output_dir is not None:
        chart = evaluate_lib.plot_global_sdr(results, output_dir / "sdr_chart.png", name=system,
                                             title=f"{system}: whole-track SDR per stem, {len(tracks)} track(s)")
        typer.echo(f"Chart: {chart}")
