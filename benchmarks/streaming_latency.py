"""Streaming: separation quality and real-time factor against the declared latency.

Two plans: the chunk plan, whose latency is its chunk length (``--frames``), and the sliding plan
of ``stemtf.sliding`` for latencies below a chunk (``--latencies`` in seconds). For each, the held-out
song Caesium (``../shared/data/everything-is-free``, never trained on) is separated with the shipped
model by the offline twin of the stream (``Separator`` with that chunk plan, or
``sliding.separate_sliding`` with that window plan, which the tests prove equal to the stream), and
scored per stem (cSDR against the true stems); the real-time factor is that of ``StreamingSeparator``
fed 4096-sample blocks (processing seconds / audio seconds; < 1 keeps up with a live signal).
Writes a table, optionally JSON and a PNG of the curve. Nothing is asserted; it exits 0.

Usage::

    .venv/bin/python benchmarks/streaming_latency.py [--model 4stems] [--frames 128 192 256 384 512] \
        [--latencies 0.25 0.4 0.65 1.0] [--png docs/streaming-latency.png]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
CAESIUM = ROOT.parent / "shared" / "data" / "everything-is-free" / "Caesium"


def plot(rows: list[dict], stems, model: str, path: pathlib.Path) -> None:
    """cSDR per stem and their mean against the latency, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.2, 3.6), dpi=100)
    rows = sorted(rows, key=lambda row: row["latency_s"])
    latencies = [row["latency_s"] for row in rows]
    for stem in stems:
        axis.plot(latencies, [row["csdr"][stem] for row in rows], marker="o", label=stem)
    axis.plot(latencies, [row["mean"] for row in rows], marker="s", color="black", linewidth=2, label="mean")
    sliding_end = max((row["latency_s"] for row in rows if row["plan"] == "sliding"), default=None)
    if sliding_end is not None:
        axis.axvspan(0, sliding_end * 1.05, color="0.9", zorder=0, label="sliding window")
    axis.set_xscale("log")
    axis.set_xlabel("latency (s): sliding window below, chunk plan above")
    axis.set_ylabel("cSDR on Caesium (dB)")
    axis.set_title(f"stemtf stream, {model}: quality against latency")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="4stems")
    parser.add_argument("--frames", type=int, nargs="+", default=[128, 192, 256, 384, 512])
    parser.add_argument("--latencies", type=float, nargs="*", default=[0.25, 0.4, 0.65, 1.0], help="seconds, sliding plan")
    parser.add_argument("--runtime", default="litert", choices=["keras", "litert"], help="runtime of the real-time factor (default litert)")
    parser.add_argument("--rtf-seconds", type=float, default=30.0, help="audio streamed for the real-time factor")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--png", type=pathlib.Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("STEMTF_CACHE", tempfile.mkdtemp(prefix="stemtf-stream-cache-"))

    from stemtf.config import load_model_config
    from stemtf.evaluate import sdr
    from stemtf.separator import Separator
    from stemtf.sliding import separate_sliding
    from stemtf.streaming import StreamingSeparator

    config, _ = load_model_config(args.model)
    files = {path.stem: sf.read(path, dtype="float32", always_2d=True)[0] for path in sorted(CAESIUM.glob("*.ogg"))}
    groups = {"other": ["other", "piano"]} if "piano" not in config.stems else {}
    references = {stem: sum(files[name] for name in groups.get(stem, [stem]) if name in files) for stem in config.stems}
    mixture = sum(files.values())
    rows = []
    print(f"{args.model} on Caesium ({mixture.shape[0] / 44100:.0f} s), cSDR in dB; RTF with {args.runtime}; "
          f"load average {os.getloadavg()[0]:.1f}")

    def real_time_factor(streamer) -> float:
        clip = mixture[: int(args.rtf_seconds * 44100)]
        start = time.perf_counter()
        for position in range(0, clip.shape[0], 4096):
            streamer.process(clip[position : position + 4096])
        streamer.flush()
        return (time.perf_counter() - start) / (clip.shape[0] / 44100)

    def report(row: dict) -> None:
        rows.append(row)
        print(f"latency {row['latency_s']:5.2f} s ({row['plan']}: {row['detail']}): "
              + " ".join(f"{s} {v:5.2f}" for s, v in row["csdr"].items()) + f" | mean {row['mean']:5.2f} | RTF {row['rtf']:.2f}",
              flush=True)

    keras_separator = Separator.from_pretrained(args.model, runtime="keras", segment_frames=None)
    for latency in args.latencies:
        streamer = StreamingSeparator(Separator.from_pretrained(args.model, runtime=args.runtime), latency=latency)
        plan = {"window_frames": streamer.window_frames, "step_frames": streamer.step_frames,
                "lookahead_frames": streamer.lookahead_frames}
        stems = separate_sliding(keras_separator.masks_for(streamer.window_frames), config, mixture, **plan)
        scores = {stem: float(sdr(references[stem][None], stems[i][None])[0]) for i, stem in enumerate(config.stems)}
        detail = f"window {plan['window_frames']}, step {plan['step_frames']}, lookahead {plan['lookahead_frames']} frames"
        report({"plan": "sliding", **plan, "detail": detail, "latency_s": streamer.latency, "csdr": scores,
                "mean": float(np.mean(list(scores.values()))), "rtf": real_time_factor(streamer)})
    for frames in args.frames:
        separator = Separator.from_pretrained(args.model, runtime="keras", segment_frames=frames)
        estimates = separator.separate(mixture, 44100)
        scores = {stem: float(sdr(references[stem][None], estimates[stem][None])[0]) for stem in config.stems}
        streamer = StreamingSeparator(Separator.from_pretrained(args.model, runtime=args.runtime, segment_frames=frames))
        report({"plan": "chunk", "segment_frames": frames, "detail": f"{frames} frames", "latency_s": streamer.latency,
                "csdr": scores, "mean": float(np.mean(list(scores.values()))), "rtf": real_time_factor(streamer)})
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")
    if args.png:
        plot(rows, config.stems, args.model, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
