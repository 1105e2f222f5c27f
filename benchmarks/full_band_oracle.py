"""Measure how much each full-band strategy can lose, with oracle (ideal ratio) masks.

stemtf's network sees the lowest ``max_bins`` STFT bins; the masks for the bins above are an
extension of the predicted ones. This script measures, on real multitrack music, the SDR that
each extension reaches when the low-band masks are perfect, against ideal masks on every bin
(what a network over the full band could reach at twice the cost). It decides ``mask_extension``.

Usage: python benchmarks/full_band_oracle.py [DATA_ROOT] [--seconds 60]
DATA_ROOT holds ``<track>/<stem>.ogg`` folders; default ``../shared/data/everything-is-free``.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import scipy.signal
import soundfile as sf

N_FFT, HOP = 4096, 1024


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR in dB (the MDX challenge definition)."""
    num = np.sum(reference**2) + 1e-9
    den = np.sum((reference - estimate) ** 2) + 1e-9
    return float(10 * np.log10(num / den))


def stft(x: np.ndarray) -> np.ndarray:
    """(num_samples, C) -> (C, bins, frames)."""
    return scipy.signal.stft(x.T, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary="zeros")[2]


def istft(spec: np.ndarray, num_samples: int) -> np.ndarray:
    return scipy.signal.istft(spec, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=True)[1][:, :num_samples].T


def extend(mask: np.ndarray, max_bins: int, how: str) -> np.ndarray:
    """Replace bins >= max_bins of a (stems, C, bins, frames) mask by an extension."""
    out = mask.copy()
    if how == "zeros":
        out[:, :, max_bins:] = 0.0
    elif how == "edge":
        out[:, :, max_bins:] = mask[:, :, max_bins - 1 : max_bins]
    elif how.startswith("average"):
        top = int(how.split("-")[1]) if "-" in how else max_bins
        out[:, :, max_bins:] = mask[:, :, max_bins - top : max_bins].mean(axis=2, keepdims=True)
    elif how != "full":
        raise ValueError(how)
    return out


def main() -> None:
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", nargs="?", default=here.parent.parent / "shared/data/everything-is-free")
    parser.add_argument("--seconds", type=float, default=60.0, help="excerpt length per song (from 60 s in)")
    args = parser.parse_args()
    stems = ["vocals", "drums", "bass", "other"]
    strategies = ["full", "zeros", "edge", "average", "average-256", "average-64"]
    results: dict[str, list[float]] = {s: [] for s in strategies}
    high: dict[str, list[float]] = {s: [] for s in strategies}
    for track in sorted(pathlib.Path(args.data_root).iterdir()):
        if not track.is_dir():
            continue
        waves = {}
        for stem in stems:
            path = track / f"{stem}.ogg"
            extra = [track / "piano.ogg"] if stem == "other" and (track / "piano.ogg").exists() else []
            total = None
            for p in ([path] if path.exists() else []) + extra:
                with sf.SoundFile(p) as f:
                    f.seek(int(60 * f.samplerate))
                    x = f.read(int(args.seconds * f.samplerate), dtype="float32", always_2d=True)
                total = x if total is None else total + x
            waves[stem] = total
        length = min(w.shape[0] for w in waves.values() if w is not None)
        for stem in stems:
            waves[stem] = np.zeros((length, 2), np.float32) if waves[stem] is None else waves[stem][:length]
        mixture = sum(waves.values())
        mix_spec = stft(mixture)
        specs = np.stack([stft(waves[s]) for s in stems])
        mags = np.abs(specs)
        irm = mags / (mags.sum(axis=0, keepdims=True) + 1e-10)
        for how in strategies:
            mask = extend(irm, 1024, how)
            scores, high_scores = [], []
            for i, stem in enumerate(stems):
                if np.sum(waves[stem] ** 2) < 1e-6:
                    continue  # a stem the track lacks has no defined SDR
                scores.append(sdr(waves[stem], istft(mix_spec * mask[i], length)))
                # SDR of the band above 11 kHz alone, in the STFT domain: where the cliff is heard.
                if np.sum(np.abs(specs[i, :, 1024:]) ** 2) > 1e-3:
                    high_scores.append(sdr(specs[i, :, 1024:], mix_spec[:, 1024:] * mask[i, :, 1024:]))
            results[how].append(float(np.mean(scores)))
            high[how].append(float(np.mean(high_scores)) if high_scores else float("nan"))
        print(track.name, {k: (round(v[-1], 2), round(high[k][-1], 2)) for k, v in results.items()}, flush=True)
    print("\nmean oracle SDR over songs (dB); the network sees bins 0-1023 (0-11 kHz)")
    print(f"  {'strategy':12s} {'full signal':>12s} {'> 11 kHz only':>14s}")
    for how in strategies:
        print(f"  {how:12s} {np.mean(results[how]):12.2f} {np.nanmean(high[how]):14.2f}")


if __name__ == "__main__":
    main()
