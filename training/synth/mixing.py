"""Seeded per-stem mixing in numpy/scipy: level, EQ, compression, stereo placement, reverb.

Each effect is applied to one stem only, so every stem file holds exactly what that instrument group
contributes to the mixture (its reverb included) and the mixture is the plain sum of the stem files.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

# typical level of each stem relative to the vocals (dB), before a random spread
STEM_LEVEL_DB = {"vocals": 0.0, "drums": -1.0, "bass": -2.5, "piano": -4.0, "other": -4.0}


def _biquad(kind: str, freq: float, sr: int, gain_db: float = 0.0, q: float = 0.707) -> np.ndarray:
    """RBJ audio-EQ-cookbook biquad as an SOS row."""
    a_gain = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sr
    cos, sin = np.cos(w0), np.sin(w0)
    alpha = sin / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a_gain, -2 * cos, 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * cos, 1 - alpha / a_gain]
    elif kind in ("lowshelf", "highshelf"):
        sq = 2 * np.sqrt(a_gain) * alpha
        sign = 1 if kind == "lowshelf" else -1
        b = [a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos + sq),
             sign * 2 * a_gain * ((a_gain - 1) - sign * (a_gain + 1) * cos),
             a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos - sq)]
        a = [(a_gain + 1) + sign * (a_gain - 1) * cos + sq,
             -sign * 2 * ((a_gain - 1) + sign * (a_gain + 1) * cos),
             (a_gain + 1) + sign * (a_gain - 1) * cos - sq]
    else:
        raise ValueError(kind)
    b, a = np.array(b) / a[0], np.array(a) / a[0]
    return np.concatenate([b, a])


def active_rms(x: np.ndarray, sr: int) -> float:
    """RMS over the 100 ms frames that are within 40 dB of the loudest one (0 for silence)."""
    frame = int(0.1 * sr)
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
    e = np.mean(x[: n * frame].reshape(n, frame, -1) ** 2, axis=(1, 2))
    if e.max() <= 1e-12:
        return 0.0
    keep = e > e.max() * 1e-4
    return float(np.sqrt(e[keep].mean()))


def equalize(x: np.ndarray, sr: int, rng, stem: str) -> tuple[np.ndarray, dict]:
    hp = {"bass": 25, "drums": 30, "vocals": 90, "piano": 40, "other": 60}[stem] * float(rng.uniform(0.8, 1.6))
    low_f, low_g = float(rng.uniform(80, 250)), float(rng.uniform(-4, 4))
    high_f, high_g = float(rng.uniform(3500, 10000)), float(rng.uniform(-5, 4))
    peak_f, peak_g, peak_q = float(np.exp(rng.uniform(np.log(250), np.log(5000)))), float(rng.uniform(-5, 5)), float(rng.uniform(0.6, 2.5))
    sos = np.vstack([
        signal.butter(2, hp, "highpass", fs=sr, output="sos"),
        _biquad("lowshelf", low_f, sr, low_g),
        _biquad("highshelf", high_f, sr, high_g),
        _biquad("peak", peak_f, sr, peak_g, peak_q),
    ])
    y = signal.sosfilt(sos, x, axis=0)
    return y, {"highpass_hz": round(hp), "low_shelf": [round(low_f), round(low_g, 1)],
               "high_shelf": [round(high_f), round(high_g, 1)], "peak": [round(peak_f), round(peak_g, 1), round(peak_q, 2)]}


def compress(x: np.ndarray, sr: int, threshold_db: float, ratio: float, attack_ms: float, release_ms: float) -> np.ndarray:
    """Feed-forward RMS compressor (stereo-linked), smoothed gain; no make-up (levels are set later)."""
    power = np.mean(x ** 2, axis=1)
    a = np.exp(-1 / (attack_ms * 1e-3 * sr))
    env = signal.lfilter([1 - a], [1, -a], power)
    level_db = 10 * np.log10(env + 1e-12)
    peak_db = 10 * np.log10(np.max(env) + 1e-12)
    over = np.maximum(0, level_db - (peak_db + threshold_db))
    gain_db = -over * (1 - 1 / ratio)
    r = np.exp(-1 / (release_ms * 1e-3 * sr))
    gain_db = signal.lfilter([1 - r], [1, -r], gain_db)
    return x * (10 ** (gain_db / 20))[:, None]


def place(x: np.ndarray, pan: float, width: float) -> np.ndarray:
    """Mid/side width (0 = mono, 1 = as is) and constant-power balance (pan in [-1, 1])."""
    mid = 0.5 * (x[:, 0] + x[:, 1])
    side = 0.5 * (x[:, 0] - x[:, 1]) * width
    left, right = mid + side, mid - side
    angle = (pan + 1) * np.pi / 4
    return np.stack([left * np.cos(angle) * np.sqrt(2), right * np.sin(angle) * np.sqrt(2)], axis=1)


def reverb_ir(sr: int, rng, t60: float, damping_hz: float, predelay_ms: float) -> np.ndarray:
    """Stereo room impulse response: early reflections + exponentially decaying, darkening noise."""
    n = int(sr * min(4.0, t60 * 1.1)) + 1
    t = np.arange(n) / sr
    env = np.exp(-6.91 * t / t60)
    ir = np.zeros((n, 2))
    for ch in range(2):
        noise = rng.standard_normal(n)
        dark = signal.sosfilt(signal.butter(2, damping_hz, "lowpass", fs=sr, output="sos"), noise)
        mix = np.exp(-t / (0.3 * t60))
        ir[:, ch] = env * (mix * noise + (1 - mix) * dark * 1.5)
        ir[: int(0.005 * sr), ch] *= np.linspace(0, 1, int(0.005 * sr))
        for _ in range(8):  # early reflections
            k = int(rng.uniform(0.004, 0.06) * sr)
            ir[k, ch] += rng.choice([-1, 1]) * rng.uniform(0.3, 0.8) * np.abs(ir[:, ch]).max()
    ir /= np.sqrt(np.sum(ir ** 2) / 2)
    pre = int(predelay_ms * 1e-3 * sr)
    return np.concatenate([np.zeros((pre, 2)), ir])


def add_reverb(x: np.ndarray, ir: np.ndarray, wet: float) -> np.ndarray:
    if wet <= 0:
        return x
    mono = x.mean(axis=1)
    n = len(x)
    wet_sig = np.stack([signal.oaconvolve(mono, ir[:, ch])[:n] for ch in range(2)], axis=1)
    return x + wet * wet_sig


def mix_stem(x: np.ndarray, sr: int, rng, stem: str, ir: np.ndarray, ir_vocal: np.ndarray) -> tuple[np.ndarray, dict]:
    """Normalise, EQ, compress, place, reverb and set the level of one stereo stem."""
    rms = active_rms(x, sr)
    if rms == 0:
        return x, {}
    x = x * (0.1 / rms)
    x, eq = equalize(x, sr, rng, stem)
    comp = None
    if rng.random() < {"drums": 0.8, "bass": 0.7, "vocals": 0.85}.get(stem, 0.45):
        comp = [round(float(rng.uniform(-24, -8)), 1), round(float(rng.uniform(1.5, 6)), 2),
                round(float(rng.uniform(3, 30)), 1), round(float(rng.uniform(60, 300)), 1)]
        x = compress(x, sr, *comp)
    pan = float(np.clip(rng.normal(0, 0.25 if stem in ("piano", "other") else 0.07), -0.8, 0.8))
    width = float(rng.uniform(0.3, 1.0) if stem in ("vocals", "bass") else rng.uniform(0.6, 1.2))
    x = place(x, pan, width)
    wet = float(rng.uniform(*{"vocals": (0.08, 0.45), "drums": (0.02, 0.25), "bass": (0.0, 0.06),
                              "piano": (0.05, 0.4), "other": (0.05, 0.5)}[stem]))
    x = add_reverb(x, ir_vocal if stem == "vocals" else ir, wet)
    level = STEM_LEVEL_DB[stem] + float(rng.normal(0, 2.5))
    rms = active_rms(x, sr)
    x = x * (0.1 / max(rms, 1e-9)) * 10 ** (level / 20)
    return x, {"eq": eq, "compressor": comp, "pan": round(pan, 3), "width": round(width, 3),
               "reverb_send": round(wet, 3), "level_db": round(level, 2)}
