"""A one-shot sampler that plays the composer's drum part with recorded Hydrogen drum kits.

Only the kits of Debian's ``hydrogen-drumkits`` whose licence allows it (see
``training/DATA_SOURCES.md``): **rumpf_kit_z01_h2** (Emanuel Rumpf, CC BY 3.0; acoustic kit
recorded at 48 kHz) and **Audiophob** (CC0; a lo-fi kit of Freesound one-shots). Hydrogen kits are
folders of WAV/FLAC one-shots, not SoundFonts, so FluidSynth cannot play them; this sampler adds
one sample per note, scaled by velocity, with open hi-hats choked by the next closed/pedal hi-hat.
"""

from __future__ import annotations

import functools
import os
import pathlib

import numpy as np
import soundfile as sf
import soxr

HYDROGEN_ROOT = pathlib.Path(os.environ.get("SYNTH_HYDROGEN_KITS", "/usr/share/hydrogen/data/drumkits"))

# The composer writes General-MIDI percussion notes; each maps to a role every kit fills. Notes
# with no role here (tambourine 54, cabasa 69, maracas 70) are left out: the stem stays exact.
GM_ROLES = {
    35: "kick", 36: "kick", 37: "stick", 38: "snare", 40: "snare", 39: "clap",
    42: "hh_closed", 44: "hh_pedal", 46: "hh_open",
    41: "tom_low", 43: "tom_low", 45: "tom_mid", 47: "tom_mid", 48: "tom_high", 50: "tom_high",
    49: "crash", 52: "crash", 55: "crash", 57: "crash", 51: "ride", 59: "ride", 53: "ride_bell", 56: "cowbell",
}
# Role -> sample file, from each kit's drumkit.xml instrument names.
KITS = {
    "rumpf_kit_z01_h2": {
        "licence": "CC BY 3.0 (Emanuel Rumpf, rumpf_kit_z01, sf.net/projects/rumpf-kit)",
        "roles": {
            "kick": "beats_06-38.flac", "stick": "beats_09-12.flac", "snare": "beats_01-21.flac",
            "clap": "beats_01-26.flac", "hh_closed": "beats_09-10.flac", "hh_pedal": "beats_06-28.flac",
            "hh_open": "beats_08-31.flac", "tom_low": "beats_08-17.flac", "tom_mid": "beats_08-18.flac",
            "tom_high": "beats_08-19.flac", "crash": "beats_06-43.flac", "ride": "beats_08-20.flac",
            "ride_bell": "beats_06-40.flac", "cowbell": "beats_08-32.flac",
        },
    },
    "Audiophob": {
        "licence": "CC0 1.0 (Audiophob kit of Freesound one-shots)",
        "roles": {
            "kick": "86335__zgump__tom-0105.wav", "stick": "16336__sstokes__ss-ht-crunchtime.wav",
            "snare": "25671__walter-odington__garage-city-snare-snappy.wav", "clap": "29800__stomachache__3.wav",
            "hh_closed": "116973__cbeeching__hat-light.wav", "hh_pedal": "156272__dayvonjersen__fxshake5.wav",
            "hh_open": "104227__minorr__hhat-paiste-302-14-open-p.wav", "tom_low": "99930__menegass__noise-tom0.wav",
            "tom_mid": "99931__menegass__noise-tom1.wav", "tom_high": "101450__menegass__tomh.wav",
            "crash": "124101__connersaw8__crash.wav", "ride": "15590__lewis__sabmute.wav",
            "ride_bell": "15590__lewis__sabmute.wav", "cowbell": "122557__anillogic__trimo-c3.wav",
        },
    },
}
# Where each role sits in the stereo image (-1 left .. 1 right, drummer's view); mixing.py then
# places the whole stem.
ROLE_PAN = {"hh_closed": -0.35, "hh_pedal": -0.35, "hh_open": -0.35, "tom_high": -0.2, "tom_mid": 0.1,
            "tom_low": 0.35, "crash": -0.5, "ride": 0.45, "ride_bell": 0.45, "cowbell": 0.2}
HATS = ("hh_closed", "hh_pedal", "hh_open")


def kit_paths(kit: str, root: pathlib.Path = HYDROGEN_ROOT) -> dict[str, pathlib.Path]:
    """``{role: sample file}`` of a kit.

    Raises:
        SystemExit: the kit is not installed (one line naming the install script).
    """
    paths = {role: root / kit / name for role, name in KITS[kit]["roles"].items()}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]} not found: install hydrogen-drumkits with `sudo training/real/install-data.sh`.")
    return paths


@functools.lru_cache(maxsize=64)
def load_sample(path: pathlib.Path, sample_rate: int) -> np.ndarray:
    """A one-shot as float64 ``(num_samples, 2)`` at ``sample_rate``, peak-normalised to 1."""
    waveform, rate = sf.read(path, dtype="float64", always_2d=True)
    if waveform.shape[1] == 1:
        waveform = np.repeat(waveform, 2, axis=1)
    waveform = waveform[:, :2]
    if rate != sample_rate:
        waveform = soxr.resample(waveform, rate, sample_rate)
    return waveform / max(float(np.abs(waveform).max()), 1e-9)


def render(notes, seconds_per_beat: float, kit: str, num_samples: int, sample_rate: int,
           root: pathlib.Path = HYDROGEN_ROOT) -> np.ndarray:
    """Play drum notes with a Hydrogen kit.

    Args:
        notes: Objects with ``pitch`` (GM percussion note), ``start`` (beats) and ``vel`` (0-127).
        seconds_per_beat: 60 / tempo.
        kit: A key of ``KITS``.
        num_samples: Length of the result.
        sample_rate: In Hz.

    Returns:
        ``(num_samples, 2)`` float64.
    """
    paths = kit_paths(kit, root)
    hits = sorted((round(n.start * seconds_per_beat * sample_rate), GM_ROLES[n.pitch], n.vel)
                  for n in notes if n.pitch in GM_ROLES)
    hat_times = [start for start, role, _ in hits if role in ("hh_closed", "hh_pedal")]
    out = np.zeros((num_samples, 2))
    fade = int(0.015 * sample_rate)
    for start, role, velocity in hits:
        if start >= num_samples:
            continue
        sample = load_sample(paths[role], sample_rate).copy()
        if role == "hh_open":  # a closed or pedal hi-hat after an open one chokes it
            later = [t for t in hat_times if t > start]
            if later and later[0] - start < len(sample):
                cut = later[0] - start
                sample = sample[: cut + fade]
                sample[cut:] *= np.linspace(1, 0, len(sample) - cut)[:, None]
        pan = ROLE_PAN.get(role, 0.0)
        gain = (max(int(velocity), 1) / 127) ** 1.6  # perceptually even velocity steps
        end = min(num_samples, start + len(sample))
        out[start:end, 0] += gain * np.sqrt((1 - pan) / 2) * 2**0.5 * sample[: end - start, 0]
        out[start:end, 1] += gain * np.sqrt((1 + pan) / 2) * 2**0.5 * sample[: end - start, 1]
    return out
