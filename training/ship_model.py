"""Recipe: copy a trained model (a training run's output directory) into saved_models/ for shipping.

Writes only ``config.json`` and float16 ``model.weights.h5`` (half the size; cast back to float32 on
load), never the run's ``checkpoint/`` or ``logs/``::

    .venv/bin/python training/ship_model.py data-work/runs/4stems saved_models/4stems
"""

from __future__ import annotations

import argparse

from stemtf.model import load_model, save_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("target_dir")
    args = parser.parse_args()
    model, config = load_model(args.run_dir)
    save_model(model, config, args.target_dir, weights_dtype="float16")
    print(f"shipped {config.name} ({model.count_params() / 1e6:.1f} M parameters) to {args.target_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
