"""Lay out the real recordings of training/real as exactly labelled stem files under one folder.

    sudo training/real/install-data.sh                       # the Debian packages (once)
    .venv/bin/python training/real/prepare.py --out data-work/real

Writes, from the installed packages and ``../shared/data/vocadito``:

* ``drum-loops/<loop>_x<speed>/drums.flac``: each real drum break/loop of ``sonic-pi-samples``
  (CC0) played at three speeds and repeated to ``--seconds`` (a 2 s break is too short for a 6 s
  training crop); only loops that are drums and nothing else (see ``DRUM_LOOPS``).
* ``vocadito/vocadito_x<speed>/vocals.flac``: the 33 s of solo singing of vocadito (CC BY 4.0) at
  three tape speeds (about -2, 0 and +2 semitones), stereo. Placed over other songs' accompaniment
  by the pipeline's cross-track remix.
* ``manifest.json``: every file written, from what, under which licence.

The Frets on Fire songs need no copy: the recipe (``train_presets.py``) reads their ``guitar.ogg``
and ``song.ogg`` where Debian installed them (``sources.py``). Same arguments give the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from sources import SONIC_PI_LOOPS, VOCADITO  # noqa: E402

# Sonic Pi loops that hold drums or hand percussion only (from their Freesound pages, README.md of
# the package, and their spectra: no sustained pitched part). Left out: loop_garzul, loop_mika,
# loop_safari, loop_electric, loop_weirdo, loop_mehackit*, loop_3d_printer, loop_drone_g_97 (pitched
# synths, guitars, drones or machine noises that a `drums` label would make wrong).
DRUM_LOOPS = ("loop_amen", "loop_amen_full", "loop_breakbeat", "loop_compus", "loop_industrial",
              "loop_perc1", "loop_perc2", "loop_tabla")
SPEEDS = (0.89, 1.0, 1.12)  # about -2, 0, +2 semitones, tempo with them (tape-style resampling)
SAMPLE_RATE = 44100


def play_at(waveform: np.ndarray, speed: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``waveform`` played ``speed`` times faster (pitch and tempo together).

    Args:
        waveform: ``(num_samples, num_channels)`` float32.
        speed: > 1 is faster and higher.
    """
    if speed == 1.0:
        return waveform
    return soxr.resample(waveform, sample_rate * speed, sample_rate).astype(np.float32)


def tile(waveform: np.ndarray, num_samples: int) -> np.ndarray:
    """Repeat a loop end to end until it is ``num_samples`` long (loops are cut to repeat seamlessly)."""
    repeats = -(-num_samples // len(waveform))
    return np.concatenate([waveform] * repeats)[:num_samples]


def stereo(waveform: np.ndarray) -> np.ndarray:
    """``(num_samples, 2)``: mono duplicated, stereo kept, more channels refused."""
    if waveform.shape[1] == 1:
        return np.repeat(waveform, 2, axis=1)
    if waveform.shape[1] != 2:
        raise SystemExit(f"Expected mono or stereo audio, got {waveform.shape[1]} channels.")
    return waveform


def write(path: pathlib.Path, waveform: np.ndarray) -> None:
    """16-bit FLAC via a temporary name, so an interrupted run never leaves a half-written stem."""
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.abs(waveform).max())
    if peak > 0.99:  # resampling can overshoot a full-scale loop; a clipped stem would be a wrong label
        waveform = waveform * (0.99 / peak)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, waveform, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


def read(path: pathlib.Path) -> np.ndarray:
    waveform, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        waveform = soxr.resample(waveform, rate, SAMPLE_RATE).astype(np.float32)
    return stereo(waveform)


def prepare_drum_loops(out: pathlib.Path, seconds: float, loops_root: pathlib.Path = SONIC_PI_LOOPS) -> list[dict]:
    """Write ``out/drum-loops/<loop>_x<speed>/drums.flac`` for every loop and speed."""
    written = []
    for name in DRUM_LOOPS:
        source = loops_root / f"{name}.flac"
        if not source.is_file():
            raise SystemExit(f"{source} not found: install the data with `sudo training/real/install-data.sh`.")
        loop = read(source)
        for speed in SPEEDS:
            path = out / "drum-loops" / f"{name}_x{speed:.2f}" / "drums.flac"
            write(path, tile(play_at(loop, speed), int(seconds * SAMPLE_RATE)))
            written.append({"file": str(path.relative_to(out)), "from": str(source), "speed": speed,
                            "package": "sonic-pi-samples", "licence": "CC0 1.0"})
    return written


def prepare_vocadito(out: pathlib.Path, source: pathlib.Path = VOCADITO) -> list[dict]:
    """Write ``out/vocadito/vocadito_x<speed>/vocals.flac`` for every speed."""
    if not source.is_file():
        raise SystemExit(f"{source} not found: vocadito is expected in ../shared/data/vocadito (or set STEMTF_VOCADITO).")
    voice = read(source)
    written = []
    for speed in SPEEDS:
        path = out / "vocadito" / f"vocadito_x{speed:.2f}" / "vocals.flac"
        write(path, play_at(voice, speed))
        written.append({"file": str(path.relative_to(out)), "from": str(source), "speed": speed,
                        "package": "vocadito (../shared/data)", "licence": "CC BY 4.0"})
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder, e.g. data-work/real")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of every tiled drum-loop stem")
    parser.add_argument("--loops-root", default=str(SONIC_PI_LOOPS), help="sonic-pi-samples' samples folder")
    parser.add_argument("--vocadito", default=str(VOCADITO), help="vocadito_1.wav")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    written = prepare_drum_loops(out, args.seconds, pathlib.Path(args.loops_root))
    written += prepare_vocadito(out, pathlib.Path(args.vocadito))
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps({"files": written}, indent=1) + "\n")
    print(f"wrote {len(written)} stems under {out} (list: {manifest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
