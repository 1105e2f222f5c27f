"""The synthetic multitrack renderer (training/synth): one tiny song, rendered twice.

Needs the Debian packages in training/synth/apt-packages.txt (fluidsynth, fluid-soundfont-gm,
festival); install them with ``sudo training/synth/install-deps.sh``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
RENDER = ROOT / "training" / "synth" / "render.py"
SOUNDFONT = os.environ.get("SYNTH_SOUNDFONT", "/usr/share/sounds/sf2/FluidR3_GM.sf2")
STEMS = ("vocals", "drums", "bass", "piano", "other")
SECONDS = 4.0
SEED = 7
RATE = 44100

_missing = [tool for tool in ("fluidsynth", "festival") if shutil.which(tool) is None]
if not os.path.isfile(SOUNDFONT):
    _missing.append(f"the SoundFont {SOUNDFONT}")
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"synthetic renderer needs {', '.join(_missing)} (Debian packages; run: sudo training/synth/install-deps.sh)",
)


def _render(out: pathlib.Path) -> pathlib.Path:
    cmd = [sys.executable, str(RENDER), "--out", str(out), "--num-songs", "1", "--seconds", str(SECONDS),
           "--seed", str(SEED), "--absent-scale", "0", "--mixture"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    tracks = [p for p in out.iterdir() if p.is_dir()]
    assert len(tracks) == 1, tracks
    return tracks[0]


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    first = _render(tmp_path_factory.mktemp("synth_a"))
    second = _render(tmp_path_factory.mktemp("synth_b"))
    return first, second


def _read(track: pathlib.Path, stem: str) -> np.ndarray:
    audio, rate = sf.read(track / f"{stem}.flac", dtype="float64", always_2d=True)
    assert rate == RATE
    return audio


def test_every_stem_written_with_one_length(renders):
    track, _ = renders
    for stem in STEMS + ("mixture",):
        audio = _read(track, stem)
        assert audio.shape == (int(SECONDS * RATE), 2), (stem, audio.shape)
    info = json.loads((track / "song.json").read_text())
    assert info["stems_written"] == list(STEMS)
    assert (track / "midi").is_dir()


def test_stems_play_and_sum_to_the_mixture(renders):
    track, _ = renders
    total = 0
    for stem in STEMS:
        audio = _read(track, stem)
        total = total + audio
        frames = audio[: len(audio) // 4410 * 4410].reshape(-1, 4410, 2)
        level = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=(1, 2))) + 1e-12)
        # every stem is given a part for the whole of a one-section song (vocals breathe between phrases)
        assert np.mean(level > -50) >= (0.4 if stem == "vocals" else 0.6), (stem, level.round(1))
        assert np.abs(audio).max() < 1.0
    mixture = _read(track, "mixture")
    assert np.abs(mixture - total).max() < 10 / 32768  # 16-bit rounding of six files


def test_same_seed_same_samples(renders):
    first, second = renders
    for stem in STEMS:
        np.testing.assert_array_equal(_read(first, stem), _read(second, stem), err_msg=stem)
    assert (first / "song.json").read_text() == (second / "song.json").read_text()


def test_vocals_are_voice_like(renders):
    track, _ = renders
    voice = _read(track, "vocals").mean(axis=1)
    n = 4096
    frames = voice[: len(voice) // n * n].reshape(-1, n) * np.hanning(n)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    total = power.sum()
    band = power[(freqs >= 100) & (freqs <= 4000)].sum() / total
    low = power[freqs < 80].sum() / total
    assert band > 0.85, f"only {band:.0%} of the vocal energy lies in 100-4000 Hz"
    assert low < 0.02
    # voiced frames: strongly periodic with a sung fundamental between 80 and 800 Hz
    win, periodic, loud = 2048, 0, 0
    frame_level = []
    for start in range(0, len(voice) - win, win):
        frame_level.append(np.sqrt(np.mean(voice[start:start + win] ** 2)))
    threshold = 0.3 * max(frame_level)
    for i, start in enumerate(range(0, len(voice) - win, win)):
        if frame_level[i] < threshold:
            continue
        frame = voice[start:start + win] - voice[start:start + win].mean()
        ac = np.correlate(frame, frame, "full")[win - 1:]
        lo, hi = RATE // 800, RATE // 80
        loud += 1
        periodic += ac[lo:hi].max() / ac[0] > 0.5
    assert loud >= 5 and periodic / loud > 0.6, (periodic, loud)
