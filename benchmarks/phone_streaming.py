"""Phones: time per block and real-time factor of the exported streaming step, sliding plan against chunk plan.

Exports the model (the shipped 4stems by default) into a temporary folder as a phone app gets it:
the TFLite waveform chunk model with ``--chunk-seconds`` (default 3, the shortest chunk: the chunk
plan's lowest latency, 2.9 s) and, for every ``--latencies`` value, the sliding window's masks model
(``stemtf export MODEL --format tflite --latency SECONDS``). Then it streams the first ``--seconds``
of the held-out song Caesium (``../shared/data/everything-is-free``, the sum of its stems) in
``--block-size`` blocks through :class:`stemtf.litert_runner.StreamingRunner` (chunk plan) and
:class:`stemtf.litert_runner.SlidingRunner` (sliding plan) — numpy + ai-edge-litert, the code a
phone app ports — and prints for each: the latency, mean, p95 and largest milliseconds per
``process(block)`` call (a block must take less than its own duration, printed with them, or the
app needs a deeper output buffer), the real-time factor (processing seconds, flush included / audio
seconds; < 1 keeps up with a live signal) and the ratios of each to the chunk plan's measured in the
same run (> 1: the sliding plan costs more). The chunk plan runs its model in fewer than one block
in 20, so its p95 is a block that only buffers and the ratio of p95s is large; the largest block
compares model runs. Nothing is asserted; it exits 0.

Usage::

    .venv/bin/python benchmarks/phone_streaming.py [--model 4stems] [--latencies 0.4 0.65 1.0] [--seconds 30]
        [--block-size 4096] [--threads 2] [--quantize none] [--json phone.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
CAESIUM = ROOT.parent / "shared" / "data" / "everything-is-free" / "Caesium"


def stream(runner, clip: np.ndarray, block_size: int, sample_rate: int) -> dict:
    """Feed ``clip`` block by block; time every ``process`` call and the whole stream."""
    times = []
    start = time.perf_counter()
    for position in range(0, clip.shape[0], block_size):
        before = time.perf_counter()
        runner.process(clip[position : position + block_size])
        times.append(time.perf_counter() - before)
    runner.flush()
    total = time.perf_counter() - start
    ms = np.asarray(times) * 1000
    return {
        "latency_s": runner.latency_samples / sample_rate, "mean_ms": float(ms.mean()), "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()), "rtf": total / (clip.shape[0] / sample_rate),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="4stems", help="model name or directory (default 4stems)")
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.4, 0.65, 1.0], help="sliding plan latencies, seconds")
    parser.add_argument("--chunk-seconds", type=float, default=3.0, help="chunk of the chunk plan's waveform model (default 3)")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio streamed (default 30)")
    parser.add_argument("--block-size", type=int, default=4096, help="samples per process() call (default 4096)")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads (default 2, a phone's big cores)")
    parser.add_argument("--quantize", default="none", choices=["none", "float16", "int8"], help="TFLite weights (default none)")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args()

    from stemtf import litert_runner, runtimes
    from stemtf.export import export_tflite
    from stemtf.model import load_model

    model, config = load_model(args.model)
    rate = config.sample_rate
    files = [sf.read(path, dtype="float32", always_2d=True) for path in sorted(CAESIUM.glob("*.ogg"))]
    if not files or any(file_rate != rate for _, file_rate in files):
        raise SystemExit(f"Needs the stems of Caesium at {rate} Hz in {CAESIUM}.")
    mixture = sum(waveform for waveform, _ in files)
    clip = np.ascontiguousarray(mixture[: int(args.seconds * rate)])
    if config.num_channels == 1:
        clip = clip.mean(axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="stemtf-phone-") as work:
        work = pathlib.Path(work)
        print(f"exporting {args.model} ({args.quantize}) to TFLite ...", flush=True)
        with runtimes.quiet_native_stderr():
            chunk_path = export_tflite(model, config, work / "chunk.tflite", kind="waveform", quantize=args.quantize,
                                       segment_frames=config.segment_frames_for(args.chunk_seconds))
            sliding_paths = {latency: export_tflite(model, config, work / f"sliding_{latency:g}.tflite", kind="masks",
                                                    quantize=args.quantize, latency=latency) for latency in args.latencies}
        print(f"{args.model} on {clip.shape[0] / rate:.1f} s of Caesium, {args.block_size}-sample blocks, "
              f"{args.threads} threads; load average {os.getloadavg()[0]:.1f}", flush=True)
        chunk_model = litert_runner.ChunkModel(chunk_path, num_threads=args.threads)
        with runtimes.quiet_native_stderr():  # warm-up: tensor allocation (and the delegate's announcement)
            chunk_model(np.zeros((chunk_model.chunk_samples, chunk_model.num_channels), np.float32))
        runner = litert_runner.StreamingRunner(
            chunk_model, num_stems=len(chunk_model.stems), num_channels=chunk_model.num_channels,
            chunk_samples=chunk_model.chunk_samples, overlap_samples=chunk_model.overlap_samples,
        )
        chunk = {"plan": "chunk", "chunk_samples": chunk_model.chunk_samples, **stream(runner, clip, args.block_size, rate)}
        rows = [chunk]
        for latency, path in sliding_paths.items():
            masks_model = litert_runner.MasksModel(path, num_threads=args.threads)
            runner = litert_runner.SlidingRunner.from_model(masks_model)
            with runtimes.quiet_native_stderr():
                masks_model(np.zeros((1, runner.window_frames, config.max_bins, config.num_channels), np.float32))
            row = {"plan": "sliding", "requested_s": latency, "window_frames": runner.window_frames,
                   "step_frames": runner.step_frames, "lookahead_frames": runner.lookahead_frames,
                   **stream(runner, clip, args.block_size, rate)}
            rows.append(row)
    print(f"a block is {args.block_size / rate * 1000:.1f} ms of audio; sliding plans as window/step/lookahead frames; "
          "x: ratio to the chunk plan")
    keys = ("mean_ms", "p95_ms", "max_ms", "rtf")
    print(f"{'plan':<20} {'latency':>9} {'mean ms':>8} {'p95 ms':>8} {'max ms':>8} {'RTF':>6} "
          + " ".join(f"{'x ' + key.split('_')[0]:>7}" for key in keys))
    for row in rows:
        name = f"chunk {row['chunk_samples']}" if row["plan"] == "chunk" else (
            f"sliding {row['window_frames']}/{row['step_frames']}/{row['lookahead_frames']}")
        print(f"{name:<20} {row['latency_s']:7.3f} s {row['mean_ms']:8.2f} {row['p95_ms']:8.2f} {row['max_ms']:8.1f} "
              f"{row['rtf']:6.3f} " + " ".join(f"{row[key] / max(chunk[key], 1e-9):7.2f}" for key in keys))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "block_size": args.block_size, "threads": args.threads,
                                         "quantize": args.quantize, "seconds": clip.shape[0] / rate, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
