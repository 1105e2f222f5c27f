"""Streaming: separation quality and real-time factor against the declared latency.

A stream's latency is its chunk length (``segment_frames``), so this separates the held-out song
Caesium (``../shared/data/everything-is-free``, never trained on) with the shipped model at each
chunk length — ``Separator`` with that chunk plan, which the tests prove equal to the stream — and
reports cSDR per stem against the true stems, and the real-time factor of ``StreamingSeparator``
fed 4096-sample blocks (processing seconds / audio seconds; < 1 keeps up with a live signal).
Writes a table, optionally JSON and a PNG of the curve. Nothing is asserted; it exits 0.

Usage::

    .venv/bin/python benchmarks/streaming_latency.py [--model 4stems] [--frames 128 192 256 384 512] [--png docs/streaming-latency.png]
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
    latencies = [row["latency_s"] for row in rows]
    for stem in stems:
        axis.plot(latencies, [row["csdr"][stem] for row in rows], marker="o", label=stem)
    axis.plot(latencies, [row["mean"] for row in rows], marker="s", color="black", linewidth=2, label="mean")
    axis.set_xlabel("latency (s) = chunk length")
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
    parser.add_argument("--runtime", default="litert", choices=["keras", "litert"], help="runtime of the real-time factor (default litert)")
    parser.add_argument("--rtf-seconds", type=float, default=30.0, help="audio streamed for the real-time factor")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--png", type=pathlib.Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("STEMTF_CACHE", tempfile.mkdtemp(prefix="stemtf-stream-cache-"))

    from stemtf.config import load_model_config
    from stemtf.evaluate import sdr
    from stemtf.separator import Separator
    from stemtf.streaming import StreamingSeparator

    config, _ = load_model_config(args.model)
    files = {path.stem: sf.read(path, dtype="float32", always_2d=True)[0] for path in sorted(CAESIUM.glob("*.ogg"))}
    groups = {"other": ["other", "piano"]} if "piano" not in config.stems else {}
    references = {stem: sum(files[name] for name in groups.get(stem, [stem]) if name in files) for stem in config.stems}
    mixture = sum(files.values())
    rows = []
    print(f"{args.model} on Caesium ({mixture.shape[0] / 44100:.0f} s), cSDR in dB; RTF with {args.runtime}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for frames in args.frames:
        separator = Separator.from_pretrained(args.model, runtime="keras", segment_frames=frames)
        estimates = separator.separate(mixture, 44100)
        scores = {stem: float(sdr(references[stem][None], estimates[stem][None])[0]) for stem in config.stems}
        streamer = StreamingSeparator(Separator.from_pretrained(args.model, runtime=args.runtime, segment_frames=frames))
        clip = mixture[: int(args.rtf_seconds * 44100)]
        start = time.perf_counter()
        for position in range(0, clip.shape[0], 4096):
            streamer.process(clip[position : position + 4096])
        streamer.flush()
        rtf = (time.perf_counter() - start) / (clip.shape[0] / 44100)
        row = {"segment_frames": frames, "latency_s": streamer.latency, "csdr": scores, "mean": float(np.mean(list(scores.values()))), "rtf": rtf}
        rows.append(row)
        print(f"latency {streamer.latency:5.2f} s ({frames} frames): " + " ".join(f"{s} {v:5.2f}" for s, v in scores.items())
              + f" | mean {row['mean']:5.2f} | RTF {rtf:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")
    if args.png:
        plot(rows, config.stems, args.model, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
