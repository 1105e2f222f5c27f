"""Recipe: train (or fine-tune) a 4-stem model on ../shared/data/everything-is-free.

Usage (from the repository root)::

    .venv/bin/python training/train_everything_is_free.py --output-dir saved_models/4stems-eif --steps 2000
    .venv/bin/python training/train_everything_is_free.py --output-dir saved_models/4stems-eif --steps 4000 --resume
    .venv/bin/python training/train_everything_is_free.py --output-dir runs/guitar --from saved_models/4stems-eif

The folder layout is ROOT/<song>/<stem>.ogg with no mixture file (the mixture is the sum of the
stems). Hydrogen has no bass (a silent bass stem); piano, where a song has one, is merged into
`other` for 4 stems. Four songs are far too few for a model that generalises: use this as a
smoke-scale recipe and to fine-tune, and report which data a shipped model saw.
This script is a recipe, not part of the package; it only calls the public API.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from stemtf import train
from stemtf.config import load_config

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "everything-is-free"
STEM_GROUPS = {"other": ["other", "piano"]}  # 4 stems; for configs/5stems.json use {} (piano is a stem)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "4stems.json"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--num-frames", type=int, default=256, help="STFT frames per example (256 ~ 6 s)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--validation-track", action="append", default=None, help="default: Potassium")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--from", dest="from_model", default=None)
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = load_config(args.config)
    stem_groups = {k: v for k, v in STEM_GROUPS.items() if k in config.stems and "piano" not in config.stems}

    def progress(step: int, steps: int, logs) -> None:
        if step % 10 == 0 or step == steps:
            print(f"\rstep {step}/{steps} loss {logs.get('loss', float('nan')):.4f}", end="", file=sys.stderr, flush=True)

    result = train.fit(
        config,
        args.data,
        output_dir=args.output_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        num_frames=args.num_frames,
        stem_groups=stem_groups,
        validation_tracks=args.validation_track or ["Potassium"],
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        from_model=args.from_model,
        freeze_encoder=args.freeze_encoder,
        seed=args.seed,
        progress=progress,
    )
    print(f"\nwrote {result.output_dir} at step {result.step}", file=sys.stderr)
    for entry in result.history[-1:]:
        print({k: round(v, 4) for k, v in entry.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
