"""Import a Spleeter 4stems checkpoint and distil it into a one-trunk stemtf student on about an hour of music.

Issue 28's Spleeter target: a Spleeter model, imported with ``stemtf import spleeter``, taught to a
student with stemtf's own layout (one shared U-Net trunk and a mask head per stem instead of
Spleeter's four U-Nets), which should then be >= 6x faster than ``spleeter separate`` on the same
checkpoint and within 1 dB of its teacher on held-out audio (``benchmarks/distill_spleeter_report.py``).

The checkpoint used here is Spleeter-layout with RANDOM weights (``/work/shared/peers/
spleeter_make_ckpt.py --all-random``): Spleeter's trained weights cannot be downloaded on this
machine. Random weights show the mechanism (import, teacher labels, student training, resume) and
the cost, not the quality a trained Spleeter student would reach; the same commands with
``spleeter:4stems`` as the checkpoint distil the released model.

Audio (about 51 minutes; each file is listed with its licence in ``WORK/audio/SOURCES.json``):

- the three training songs of "Everything is Free" (Hydrogen, Sodium, Potassium; CC0): each song's
  mixture (the sum of its stems) and its instrumental (the sum of its stems without vocals; Hydrogen,
  which has no bass stem, too);
- the songs of Debian's ``fretsonfire-songs-sectoid`` (MIT) but "Metal madness", which is in the
  validation collection (``training/heldout.json``): each song (backing + guitar) and its backing
  track alone;
- any further folders given with ``--extra-audio``.

Half of it is therefore sub-mixes of the other half: about 26 minutes of distinct songs. The teacher
labels sub-mixes differently from full mixes (a mix without vocals is a different input), so they
are further examples, but not new music. Caesium, the fourth song, is held out: it is the
validation track (scored against its real stems at every checkpoint) and the report's held-out audio.

The student (default): filters 8..256 (half the width of Spleeter's 16..512), 3x3 kernels, 4 head
feature maps, one shared trunk, from scratch (a four-U-Net teacher has no shared trunk to prune).
The teacher labels every recording once (``--teacher-targets cached``: Spleeter-exact separation,
cached under ``OUTPUT_DIR/teacher-stems``), so each training step runs the student only.

Run from the repository root (detached, at low priority: the CPU is shared)::

    setsid nohup nice -n 19 .venv/bin/python training/distill_spleeter.py \\
        --output-dir ../data-work/runs/spleeter-4stems-student --steps 3000 \\
        > ../data-work/runs/spleeter-4stems-student.log 2>&1 &
    # continue it later (the cached teacher stems are reused):
    ... training/distill_spleeter.py --output-dir ../data-work/runs/spleeter-4stems-student --steps 6000 --resume
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import soundfile as sf
from distill_lite import held_out_sectoid, sum_files  # training/ is on the path: this script's folder

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT.parent / "peers-work" / "spleeter-parity" / "4stems"
EIF = ROOT.parent / "shared" / "data" / "everything-is-free"
SECTOID = pathlib.Path("/usr/share/games/fretsonfire/data/songs/sectoid")
TRAIN_SONGS = ("Hydrogen", "Sodium", "Potassium")
VALIDATION_SONG = "Caesium"
EIF_LICENCE = "CC0 1.0 ('Everything is Free', Software-Entwicklungskit)"
SECTOID_LICENCE = "MIT (Debian fretsonfire-songs-sectoid, Sectoid)"


def recordings(eif: pathlib.Path = EIF, sectoid: pathlib.Path = SECTOID) -> dict[str, tuple[list[pathlib.Path], str, str]]:
    """The recordings to make: ``{file name: (files summed, what it is, licence)}``.

    Never the validation collection's songs (``training/heldout.json``): Caesium, and sectoid's
    "Metal madness".
    """
    plan: dict[str, tuple[list[pathlib.Path], str, str]] = {}
    for song in TRAIN_SONGS:
        stems = sorted((eif / song).glob("*.ogg"))
        if not stems:
            continue
        plan[f"eif-{song}.flac"] = (stems, f"{song}: the mixture (sum of its stems)", EIF_LICENCE)
        backing = [s for s in stems if s.stem != "vocals"]
        if backing and len(backing) < len(stems):
            plan[f"eif-{song}-instrumental.flac"] = (backing, f"{song}: the stems without vocals", EIF_LICENCE)
    if sectoid.is_dir():
        held_out = held_out_sectoid()
        for folder in sorted(p for p in sectoid.iterdir() if (p / "song.ogg").is_file() and p.name not in held_out):
            label = folder.name.replace(" ", "_")
            guitar = [folder / "guitar.ogg"] if (folder / "guitar.ogg").is_file() else []
            plan[f"sectoid-{label}.flac"] = ([folder / "song.ogg", *guitar], f"{folder.name}: backing + guitar", SECTOID_LICENCE)
            if guitar:
                plan[f"sectoid-{label}-backing.flac"] = ([folder / "song.ogg"], f"{folder.name}: the backing track alone", SECTOID_LICENCE)
    return plan


def prepare_audio(work: pathlib.Path, *, eif: pathlib.Path = EIF, sectoid: pathlib.Path = SECTOID) -> tuple[pathlib.Path, pathlib.Path]:
    """The folder of unlabelled recordings (with ``SOURCES.json``) and the validation folder (Caesium), made once in ``work``."""
    audio = work / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    plan = recordings(eif, sectoid)
    if not plan:
        raise SystemExit(f"No training audio: neither {eif} nor {sectoid} holds songs.")
    if not sectoid.is_dir():
        print(f"{sectoid} is missing (apt-get install fretsonfire-songs-sectoid): distilling on the CC0 songs alone")
    sources = []
    for name, (files, what, licence) in plan.items():
        sum_files(files, audio / name)
        sources.append({"file": name, "what": what, "licence": licence, "seconds": round(sf.info(str(audio / name)).duration, 1),
                        "from": [str(f) for f in files]})
    total = sum(s["seconds"] for s in sources)
    (audio / "SOURCES.json").write_text(json.dumps({"total_minutes": round(total / 60, 1), "recordings": sources}, indent=1))
    print(f"{len(sources)} recordings, {total / 60:.1f} min of audio in {audio}")
    validation = work / "validation"
    validation.mkdir(exist_ok=True)
    link = validation / VALIDATION_SONG
    if not link.exists() and (eif / VALIDATION_SONG).is_dir():
        link.symlink_to((eif / VALIDATION_SONG).resolve(), target_is_directory=True)
    return audio, validation


def import_teacher(checkpoint: pathlib.Path, models_dir: pathlib.Path, name: str, *, release: str | None = "4stems",
                   spleeter_config: pathlib.Path | None = None) -> pathlib.Path:
    """The imported teacher's model folder, ``models_dir/name``, imported once as ``stemtf import spleeter`` does.

    ``release`` names the Spleeter config of the checkpoint; ``spleeter_config`` is a Spleeter JSON
    config instead (a model trained with Spleeter, or the tests' tiny one).
    """
    target = models_dir / name
    if (target / "config.json").is_file():
        return target
    from stemtf.spleeter_import import import_spleeter

    models_dir.mkdir(parents=True, exist_ok=True)
    return import_spleeter(str(checkpoint), name=name, output_dir=target, release=None if spleeter_config else release,
                           spleeter_config=spleeter_config, on_status=print)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=CHECKPOINT, help="a Spleeter 4stems model folder or .tar.gz")
    parser.add_argument("--models-dir", type=pathlib.Path, default=ROOT.parent / "data-work" / "models",
                        help="the model store the teacher is imported into (its folder: MODELS_DIR/spleeter-4stems)")
    parser.add_argument("--release", default="4stems", help="the checkpoint's Spleeter config (2stems, 4stems, 5stems)")
    parser.add_argument("--spleeter-config", type=pathlib.Path, help="a Spleeter JSON config instead of --release")
    parser.add_argument("--teacher-name", default="spleeter-4stems")
    parser.add_argument("--output-dir", required=True, type=pathlib.Path, help="the student's model directory")
    parser.add_argument("--work-dir", type=pathlib.Path, default=ROOT.parent / "data-work" / "distill-spleeter",
                        help="where the recordings and the validation link are made")
    parser.add_argument("--eif", type=pathlib.Path, default=EIF, help=argparse.SUPPRESS)
    parser.add_argument("--sectoid", type=pathlib.Path, default=SECTOID, help=argparse.SUPPRESS)
    parser.add_argument("--extra-audio", action="append", default=[], help="more unlabelled music (repeatable)")
    parser.add_argument("--filters", default="8,16,32,64,128,256", help="the student's filters per level")
    parser.add_argument("--head-filters", type=int, default=4)
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--teacher-targets", choices=("cached", "online"), default="cached")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--num-frames", type=int, default=256, help="STFT frames per example (256 ~ 6 s)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--validation-crops", type=int, default=4)
    parser.add_argument("--name", default="spleeter-4stems-student")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    teacher = import_teacher(args.checkpoint, args.models_dir, args.teacher_name, release=args.release,
                             spleeter_config=args.spleeter_config)
    audio, validation = prepare_audio(args.work_dir, eif=args.eif, sectoid=args.sectoid)
    from stemtf.train.distill import distill

    started = time.monotonic()

    def progress(step: int, steps: int, logs) -> None:
        if step % 10 == 0 or step == steps:
            print(f"step {step}/{steps} loss {logs.get('loss', float('nan')):.4f} {time.monotonic() - started:.0f} s", flush=True)

    has_validation = (validation / VALIDATION_SONG).exists()
    print(f"teacher {teacher}; student {args.output_dir} (filters {args.filters}, {args.kernel_size}x{args.kernel_size} "
          f"kernels, {args.head_filters} head maps; teacher targets {args.teacher_targets})", flush=True)
    result = distill(
        teacher, [audio, *args.extra_audio], output_dir=args.output_dir, name=args.name,
        filters=[int(f) for f in args.filters.split(",")], head_filters=args.head_filters, kernel_size=args.kernel_size,
        init="scratch", targets=args.teacher_targets,
        validation_data=validation if has_validation else None, stem_groups={"other": ["other", "piano"]},
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
        num_frames=args.num_frames, checkpoint_every=args.checkpoint_every, validation_crops=args.validation_crops,
        resume=args.resume, progress=progress,
    )
    for entry in result.history:
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in entry.items()}, flush=True)


if __name__ == "__main__":
    main()
