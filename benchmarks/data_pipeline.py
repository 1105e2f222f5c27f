"""Throughput of the training input pipeline against the training step it feeds.

Measures, on the same machine and in the same run:
1. examples/s of ``stemtf.data.training_dataset`` (partial reads, augmentation, STFT) on real
   multitrack files (default: ``../shared/data/everything-is-free``, 4 stems, piano into other);
2. examples/s of training steps of the model on in-memory batches (no input pipeline);
and prints the ratio. Input is not the bottleneck when the ratio (pipeline / training) is > 1.

Usage: python benchmarks/data_pipeline.py [DATA_ROOT] [--num-frames 256] [--batch-size 4] [--batches 20]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from stemtf import data, spectral  # noqa: E402
from stemtf.config import load_config  # noqa: E402
from stemtf.model import build_model  # noqa: E402
from stemtf.train import training_model  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", nargs="?", default=REPO.parent / "shared" / "data" / "everything-is-free")
    parser.add_argument("--config", default=REPO / "configs" / "4stems.json")
    parser.add_argument("--num-frames", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.config)
    groups = {"other": ["other", "piano"]} if "piano" not in config.stems and "other" in config.stems else None
    tracks = data.folder_tracks(args.data_root, stems=config.stems, stem_groups=groups)
    dataset = data.training_dataset(
        tracks, stems=config.stems, sample_rate=config.sample_rate, num_channels=config.num_channels,
        n_fft=config.n_fft, hop_length=config.hop_length, max_bins=config.max_bins, num_frames=args.num_frames,
        batch_size=args.batch_size, seed=0,
    )
    iterator = iter(dataset)
    batch = next(iterator)  # start-up (tracing, first reads) is not throughput
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(iterator)
    pipeline = args.batches * args.batch_size / (time.perf_counter() - start)

    model = training_model(build_model(config), config.stems)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss={s: "mae" for s in config.stems})
    inputs, targets = np.asarray(batch[0]), {k: np.asarray(v) for k, v in batch[1].items()}
    model.train_on_batch(inputs, targets)
    start = time.perf_counter()
    for _ in range(args.train_steps):
        model.train_on_batch(inputs, targets)
    training = args.train_steps * args.batch_size / (time.perf_counter() - start)

    seconds = spectral.segment_samples(args.num_frames, n_fft=config.n_fft, hop_length=config.hop_length) / config.sample_rate
    print(f"examples of {args.num_frames} frames ({seconds:.1f} s), batch {args.batch_size}, {os.cpu_count()} CPUs")
    print(f"  input pipeline  {pipeline:7.2f} examples/s")
    print(f"  training steps  {training:7.2f} examples/s ({config.name}, {model.count_params() / 1e6:.1f} M params)")
    print(f"  pipeline / training = {pipeline / training:.1f}x  ({'input is not' if pipeline > training else 'input IS'} the bottleneck)")


if __name__ == "__main__":
    main()
