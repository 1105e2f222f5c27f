"""LiteRT against Keras with the shipped (trained) weights on real music: parity per precision, and speed.

For every shipped model and LiteRT precision (float32, float16, int8) this separates the same real
clip with ``Separator(runtime="keras")`` and ``Separator(runtime="litert", precision=...)`` and
prints, per stem, the SNR of the LiteRT stems against the Keras ones (how faithful the runtime is;
not a quality score), the masks model's time per second of audio, and the cached ``.tflite`` size.
Random weights flatter int8 (the README once quoted 43 dB from them); this uses the real weights.

Usage::

    .venv/bin/python benchmarks/runtime_parity.py [--models 2stems 4stems 5stems] [--seconds 30] [--json out.json]

The clip is the middle of the held-out song Caesium (``../shared/data/everything-is-free``) when
present, else the bundled example. Nothing is asserted; it always exits 0.
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
EXAMPLE = ROOT / "examples" / "caesium_excerpt.ogg"


def real_clip(seconds: float) -> tuple[np.ndarray, int, str]:
    """A real stereo clip: the middle of Caesium (sum of its stems) or the bundled excerpt."""
    if CAESIUM.is_dir():
        stems = [sf.read(path, dtype="float32", always_2d=True) for path in sorted(CAESIUM.glob("*.ogg"))]
        rate = stems[0][1]
        mixture = sum(waveform for waveform, _ in stems)
        start = max(0, mixture.shape[0] // 2 - int(seconds * rate) // 2)
        return mixture[start : start + int(seconds * rate)], rate, f"Caesium, {seconds:g} s from the middle"
    waveform, rate = sf.read(EXAMPLE, dtype="float32", always_2d=True)
    return waveform[: int(seconds * rate)], rate, f"{EXAMPLE.name}, first {seconds:g} s"


def snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """``10 log10(|ref|^2 / |ref - est|^2)`` in dB."""
    noise = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-30)))


def masks_seconds(separator, seconds_of_audio: float, repeats: int = 3) -> float:
    """Median seconds of the mask predictor per second of audio (one chunk, repeated)."""
    config = separator.config
    magnitude = np.random.default_rng(0).uniform(0, 1, (1, config.segment_frames, config.max_bins, config.num_channels)).astype(np.float32)
    separator.masks(magnitude)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        separator.masks(magnitude)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / seconds_of_audio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["2stems", "4stems", "5stems"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "float16", "int8"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("STEMTF_CACHE", tempfile.mkdtemp(prefix="stemtf-parity-cache-"))

    from stemtf.separator import Separator

    waveform, rate, label = real_clip(args.seconds)
    print(f"clip: {label}; LiteRT cache {os.environ['STEMTF_CACHE']}; load average {os.getloadavg()[0]:.1f}")
    results = []
    for name in args.models:
        keras_separator = Separator.from_pretrained(name, runtime="keras")
        chunk_seconds = keras_separator.chunk_samples / keras_separator.sample_rate
        reference = keras_separator.separate(waveform, rate)
        row = {"model": name, "runtime": "keras", "masks_ms_per_s": 1000 * masks_seconds(keras_separator, chunk_seconds)}
        results.append(row)
        print(f"{name:7} keras            masks {row['masks_ms_per_s']:6.1f} ms per s of audio")
        for precision in args.precisions:
            litert = Separator.from_pretrained(name, runtime="litert", precision=precision)
            stems = litert.separate(waveform, rate)
            row = {
                "model": name, "runtime": "litert", "precision": precision,
                "snr_db": {stem: snr(reference[stem], stems[stem]) for stem in reference},
                "masks_ms_per_s": 1000 * masks_seconds(litert, chunk_seconds),
                "tflite_mb": litert.masks.path.stat().st_size / 1e6,
            }
            results.append(row)
            snrs = " ".join(f"{stem} {value:5.1f}" for stem, value in row["snr_db"].items())
            print(f"{name:7} litert {precision:8}  masks {row['masks_ms_per_s']:6.1f} ms per s, {row['tflite_mb']:5.1f} MB; "
                  f"SNR vs Keras (dB): {snrs}")
    if args.json:
        args.json.write_text(json.dumps({"clip": label, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
