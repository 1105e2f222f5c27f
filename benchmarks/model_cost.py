"""Cost of stemtf's shared trunk with one mask head per stem against one U-Net per stem (Spleeter).

Prints parameters and the median time of one 512-frame (11.8 s) spectrogram chunk through each
layout on this machine, and the ratio. Random weights: the cost does not depend on their values.

Usage: python benchmarks/model_cost.py [--stems 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from stemtf.config import ModelConfig, UNetConfig  # noqa: E402
from stemtf.model import build_model  # noqa: E402
from stemtf.unet import build_unet  # noqa: E402


def median_seconds(function, argument, repeats: int) -> float:
    function(argument)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), function(argument))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stems", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    stems = tuple(f"stem{i}" for i in range(args.stems))
    magnitude = tf.constant(np.random.default_rng(0).uniform(0, 1, (1, 512, 1024, 2)).astype(np.float32))
    rows = []
    for head_filters in (1, 8, 16):
        model = build_model(ModelConfig(stems=stems, unet=UNetConfig(head_filters=head_filters)))
        seconds = median_seconds(tf.function(lambda x, m=model: m(x, training=False)), magnitude, args.repeats)
        rows.append((f"shared trunk + {args.stems} heads (head_filters={head_filters})", model.count_params(), seconds))
    # Spleeter: one full U-Net (ending in a 2-channel sigmoid mask) per stem.
    unets = [build_unet(num_bins=1024, num_channels=2, output_filters=2, name=f"unet_{i}") for i in range(args.stems)]
    seconds = median_seconds(tf.function(lambda x: [u(x, training=False) for u in unets]), magnitude, args.repeats)
    rows.append((f"one U-Net per stem (x{args.stems}, Spleeter)", sum(u.count_params() for u in unets), seconds))
    baseline = rows[-1][2]
    print(f"{'layout':50s} {'params':>10s} {'s/chunk':>8s} {'vs per-stem':>12s}")
    for name, params, seconds in rows:
        print(f"{name:50s} {params / 1e6:9.2f}M {seconds:8.3f} {seconds / baseline:11.2f}x")


if __name__ == "__main__":
    main()
