"""Recipe: average the weights of several trained models of one lineage (checkpoint averaging).

Models saved at different points of one training run (or a run and its continuation) sit in the same
basin; their weight average is often better than either end point (Izmailov et al. 2018, "Averaging
Weights Leads to Wider Optima"). The result is a loadable model directory::

    .venv/bin/python training/average_weights.py data-work/runs/4stems-at1800 data-work/runs/4stems \
        --output-dir data-work/runs/4stems-avg
"""

from __future__ import annotations

import argparse

import numpy as np

from stemtf.model import load_model, save_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+",
                        help="two or more model directories with the same config (mask_exponent: the first one's)")
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args()
    if len(args.model_dirs) < 2:
        parser.error("give at least two model directories")
    models = [load_model(d) for d in args.model_dirs]
    first, config = models[0]
    for (_, other), name in zip(models[1:], args.model_dirs[1:]):
        # The mask calibration is an inference setting, not part of the weights: the first model's is kept.
        if other.replace(mask_exponent=config.mask_exponent) != config:
            parser.error(f"{name} has a different config from {args.model_dirs[0]}; only one lineage can be averaged")
    weights = [m.get_weights() for m, _ in models]
    first.set_weights([np.mean(group, axis=0).astype(group[0].dtype) for group in zip(*weights)])
    save_model(first, config, args.output_dir)
    print(f"averaged {len(models)} models into {args.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
