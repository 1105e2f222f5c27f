"""``stemtf distill``."""

from __future__ import annotations

import pathlib
from typing import Optional

import typer

from stemtf.cli.app import app, import_tensorflow_quietly, names, stem_groups
from stemtf import options
from stemtf.errors import OptionError, StemtfError


@app.command()
def distill(
    teacher: str = typer.Argument(..., help="The model to imitate: a name (see `stemtf models`) or a model directory.", show_default=False),
    audio: list[str] = typer.Option(..., "--audio", help="Unlabelled music to learn from: a file, a folder (searched recursively) or a glob such as 'music/**/*.mp3' (repeatable).", show_default=False),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help=f"The student's model directory (default {options.DEFAULT_RUNS_DIR}/TEACHER-lite).", show_default=False),
    trunk_width: float = typer.Option(0.5, "--trunk-width", help="The student's share of the teacher's filters per U-Net level (0.5: about a quarter of the cost)."),
    filters: Optional[str] = typer.Option(None, "--filters", help="The student's filters per U-Net level instead, e.g. 8,16,32,64,128,256.", show_default=False),
    head_filters: Optional[int] = typer.Option(None, "--head-filters", help="Feature maps the student's trunk hands to its mask heads (default: the teacher's, 8). They run at full resolution: 4 makes a half-width student about a fifth cheaper.", show_default=False),
    kernel_size: Optional[int] = typer.Option(None, "--kernel-size", help="The student's trunk kernel (default: the teacher's, 5); 3 is about 2.8x fewer multiply-adds, and prunes from the teacher's central taps.", show_default=False),
    dropout_rate: Optional[float] = typer.Option(None, "--dropout-rate", help="The student's dropout while training (default: the teacher's, 0.5). 0 leaves all of a small student's capacity to the teacher's masks.", show_default=False),
    init: str = typer.Option("auto", "--init", help="How the student starts: prune (the teacher's most important channels), scratch (random), or auto (prune where the teacher has one shared stemtf trunk)."),
    prune_from: Optional[pathlib.Path] = typer.Option(None, "--prune-from", help="Start by pruning this model instead of the teacher, e.g. an earlier, wider student (implies --init prune).", show_default=False),
    teacher_targets: str = typer.Option("online", "--teacher-targets", help="online: the teacher labels every augmented example as it trains (a teacher pass per step); cached: the teacher separates each recording once (cached in OUTPUT_DIR/teacher-stems) and the student trains on those stems: no teacher pass per step (~1.7x the steps per hour measured for the recipe)."),
    name: Optional[str] = typer.Option(None, "--name", help="The student's name (default TEACHER-lite).", show_default=False),
    validation_data: Optional[pathlib.Path] = typer.Option(None, "--validation-data", help="Labelled tracks (a stems folder, CSV or MUSDB18) scored against their real stems at every checkpoint.", show_default=False),
    stem_group: Optional[list[str]] = typer.Option(None, "--stem-group", help="How the validation files make a stem: STEM=FILE_STEM,FILE_STEM (repeatable), e.g. other=other,piano.", show_default=False),
    steps: int = typer.Option(20_000, "--steps", help="Total optimizer steps (a resumed run counts those done)."),
    batch_size: int = typer.Option(options.DEFAULT_BATCH_SIZE, "--batch-size", help="Examples per step."),
    learning_rate: float = typer.Option(3e-4, "--learning-rate", help="Peak learning rate (Adam, cosine decay)."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="STFT frames per training example (default: the teacher's segment_frames; 256 is ~6 s).", show_default=False),
    checkpoint_every: int = typer.Option(options.DEFAULT_CHECKPOINT_EVERY, "--checkpoint-every", help="Steps between validation + checkpoint."),
    speed_range: tuple[float, float] = typer.Option((1.0, 1.0), "--speed-range", metavar="LOW HIGH", help="Play each example faster or slower by a factor drawn from [LOW, HIGH] (e.g. 0.85 1.15); 1 1 is off."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data pipeline and initialisation."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT_DIR/checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again in an OUTPUT_DIR that already holds a model or checkpoint."),
    log_every: int = typer.Option(100, "--log-every", help="When stderr is not a terminal (a log, CI, nohup): a progress line every N steps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Train a smaller, faster model to reproduce a teacher's stems on unlabelled music (no stems needed)."""
    from stemtf.config import load_model_config

    teacher_config, _ = load_model_config(teacher)  # an unknown teacher fails before the TensorFlow import
    groups = stem_groups(stem_group)
    student_filters = _checked_numbers(
        teacher_config, filters=filters, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
        checkpoint_every=checkpoint_every, num_frames=num_frames, speed_range=speed_range, log_every=log_every,
        validation_data=validation_data,
    )
    config = _checked_student(
        teacher_config, audio, trunk_width=trunk_width, filters=student_filters, head_filters=head_filters,
        kernel_size=kernel_size, dropout_rate=dropout_rate, name=name, init=init, teacher_targets=teacher_targets,
        prune_from=prune_from,
    )
    output_dir = output_dir if output_dir is not None else pathlib.Path(options.DEFAULT_RUNS_DIR) / config.name

    from stemtf.cli.training import training_progress
    from stemtf.data import Augmentation
    from stemtf.train.distill import distill as run_distillation

    title = f"distilling {teacher_config.name} into {config.name}"
    with training_progress(title, steps, quiet=quiet, log_every=log_every) as report:
        result = run_distillation(
            teacher, audio, output_dir=output_dir, trunk_width=trunk_width, filters=student_filters, head_filters=head_filters,
            kernel_size=kernel_size, dropout_rate=dropout_rate, name=name, init=init, prune_from=prune_from, targets=teacher_targets,
            validation_data=validation_data, stem_groups=groups, steps=steps, batch_size=batch_size,
            learning_rate=learning_rate, num_frames=num_frames, checkpoint_every=checkpoint_every, seed=seed, resume=resume,
            overwrite=overwrite, progress=report,
            augmentation=Augmentation(speed_range=tuple(speed_range), remix_probability=0.0 if teacher_targets == "cached" else 0.5),
        )
    if not quiet:
        typer.echo(f"Distilled {teacher_config.name!r} into {config.name!r} (filters {list(config.unet.filters)}) "
                   f"to step {result.step}; model written to {result.output_dir}")


def _checked_numbers(teacher_config, *, filters: str | None, steps: int, batch_size: int, learning_rate: float,
                     checkpoint_every: int, num_frames: int | None, speed_range, log_every: int,
                     validation_data: pathlib.Path | None) -> list[int] | None:
    """Check the options that need no TensorFlow; the student's filters parsed from ``--filters``."""
    student_filters = None
    if filters is not None:
        try:
            student_filters = [int(value) for value in names(filters)]
        except ValueError:
            raise OptionError("filters", f"{{option}} must be integers separated by commas, e.g. 8,16,32. Received {filters!r}.") from None
    options.check_training(
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, checkpoint_every=checkpoint_every,
        from_model=None, freeze_encoder=False, num_frames=num_frames, config=teacher_config,
    )
    options.check_speed_range(speed_range)
    if log_every < 1:
        raise OptionError("log_every", f"{{option}} must be >= 1. Received {log_every}.")
    if validation_data is not None and not validation_data.exists():
        raise StemtfError(f"--validation-data {str(validation_data)!r} does not exist.")
    return student_filters


def _checked_student(teacher_config, audio: list[str], *, trunk_width: float, filters: list[int] | None,
                     head_filters: int | None, kernel_size: int | None, dropout_rate: float | None, name: str | None, init: str,
                     teacher_targets: str, prune_from: pathlib.Path | None):
    """The student's config, once its options and the audio are checked (before the teacher loads)."""
    import_tensorflow_quietly()  # stemtf.train imports TensorFlow: keep its start-up lines off stderr, even for bad input
    from stemtf.train.distill import audio_tracks, student_plan

    config, _, _ = student_plan(teacher_config, init=init, targets=teacher_targets, prune_from=prune_from, geometry=dict(
        trunk_width=trunk_width, filters=filters, head_filters=head_filters, kernel_size=kernel_size,
        dropout_rate=dropout_rate, name=name))
    audio_tracks(audio, stems=config.stems)  # no audio, or a file that cannot be read: fail before the teacher loads
    return config
