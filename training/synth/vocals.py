"""Sung vocals: Festival's singing mode (kal_diphone voice) + formant scaling + vibrato + "air".

How a vocal line is made (see README.md):

1. Every phrase of the composed melody becomes a Festival SINGING XML score (one ``PITCH``/``DURATION``
   per syllable, ``REST`` for gaps); Festival's singing mode sets every syllable's F0 and duration and
   resynthesises the recorded diphones (real human consonants and vowels, 16 kHz).
2. Formant scaling without changing pitch or timing: Festival sings at ``f0 / k`` with durations
   ``* k`` and the result is played back ``k`` times faster (resampled from ``16000 * k`` Hz), which
   moves the formants (vocal-tract size) by ``k`` while pitch and timing land where the score says.
   ``k < 1`` deeper/bigger, ``k > 1`` smaller/brighter (female-like range).
3. Vibrato (4.6-6.4 Hz, 25-70 cents, fading in over each held note) and a slow random pitch drift are
   added with a modulated delay line; an exciter adds a little "air" above 7 kHz (the diphones stop at
   8 kHz).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr
from scipy import ndimage, signal

FESTIVAL_RATE = 16000
MAX_FESTIVAL_F0 = 470.0  # Hz; festival (kal_diphone) segfaults at ~550 Hz
MAX_K = 1.35


def _score(phrase, song, k: float) -> str:
    """Festival SINGING XML for one phrase (times relative to its first note)."""
    t0 = song.seconds(phrase[0].start)
    tokens = []  # [word, [freq], [dur], rest]
    for i, n in enumerate(phrase):
        start = song.seconds(n.start) - t0
        end = start + song.seconds(n.dur)
        nxt = song.seconds(phrase[i + 1].start) - t0 if i + 1 < len(phrase) else end
        gap = nxt - end
        if gap < 0.12:  # legato: sing up to the next note
            end, gap = nxt, 0.0
        dur = max(0.08, end - start)
        freq = 440.0 * 2 ** ((n.pitch - 69) / 12) / k
        word, _, part = n.syllable.partition("+")
        if part == "2" and tokens and tokens[-1][0] == word and len(tokens[-1][1]) == 1:
            tokens[-1][1].append(freq)
            tokens[-1][2].append(dur)
            tokens[-1][3] = gap
        else:
            tokens.append([word, [freq], [dur], gap])
    out = ['<?xml version="1.0"?>',
           '<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" "Singing.v0_1.dtd" []>',
           '<SINGING BPM="120">']
    for word, freqs, durs, gap in tokens:
        if len(freqs) != 2 and "+" in word:
            word = word.split("+")[0]
        f = ",".join(f"{x:.2f}" for x in freqs)
        d = ",".join(f"{x * k:.4f}" for x in durs)
        out.append(f'<PITCH FREQ="{f}"><DURATION SECONDS="{d}">{escape(word)}</DURATION></PITCH>')
        if gap > 0:
            out.append(f'<REST SECONDS="{gap * k:.4f}"></REST>')
    out.append("</SINGING>")
    return "\n".join(out) + "\n"


def festival_sing(phrases, song, k: float, workdir: pathlib.Path, tag: str) -> list[np.ndarray]:
    """Render every phrase with one Festival process; returns 16 kHz float waves (time base * k)."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = [
        "(define (sing_to in out)",
        "  (set! sing_n 0)",
        "  (set! tts_hooks (list utt.synth (lambda (utt)",
        '     (utt.save.wave utt (format nil "%s.%d.wav" out sing_n) \'riff)',
        "     (set! sing_n (+ sing_n 1)))))",
        "  (tts_file in 'singing))",
    ]
    for i, phrase in enumerate(phrases):
        xml = workdir / f"{tag}{i:03d}.xml"
        xml.write_text(_score(phrase, song, k))
        script.append(f'(sing_to "{xml}" "{workdir / f"{tag}{i:03d}"}")')
    scm = workdir / f"{tag}.scm"
    scm.write_text("\n".join(script) + "\n")
    env = dict(os.environ, AUDIODEV="null")
    proc = subprocess.run(["festival", "--batch", str(scm)], capture_output=True, text=True, env=env, timeout=600, check=False)
    waves = []
    for i in range(len(phrases)):
        parts = sorted(workdir.glob(f"{tag}{i:03d}.*.wav"), key=lambda p: int(p.suffixes[-2][1:]))
        if not parts:  # festival crashed on this phrase: leave it silent (the stem stays exact)
            print(f"warning: festival produced no audio for phrase {i} of {tag} ({proc.returncode}); "
                  "the phrase is left silent", file=sys.stderr)
            waves.append(np.zeros(1, np.float32))
            continue
        chunks = []
        for p in parts:
            x, rate = sf.read(p, dtype="float32")
            assert rate == FESTIVAL_RATE, rate
            chunks.append(x if x.ndim == 1 else x.mean(1))
        waves.append(np.concatenate(chunks))
    return waves


def _highshelf(freq: float, sr: int, gain_db: float) -> np.ndarray:
    from mixing import _biquad

    return _biquad("highshelf", freq, sr, gain_db)


def _biquad_highpass(x, sr, freq, q=0.707):
    sos = signal.butter(4, freq, "highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def vibrato(x: np.ndarray, sr: int, notes_s, rate_hz: float, depth_cents: float, rng) -> np.ndarray:
    """Pitch modulation by a delay line: depth fades in over each note; plus slow random drift."""
    n = len(x)
    depth = np.zeros(n)
    for start, dur in notes_s:
        a, b = int(start * sr), min(n, int((start + dur) * sr))
        if b <= a:
            continue
        tt = np.arange(b - a) / sr
        full = depth_cents * (1.0 if dur > 0.35 else 0.35)
        ramp = np.clip((tt - 0.12) / 0.3, 0, 1)
        depth[a:b] = np.maximum(depth[a:b], full * ramp)
    depth = ndimage.uniform_filter1d(depth, int(0.05 * sr))
    rate = rate_hz * (1 + 0.06 * ndimage.gaussian_filter1d(rng.standard_normal(n // 512 + 2), 4)[np.arange(n) // 512] * 8)
    phase = 2 * np.pi * np.cumsum(rate) / sr
    drift = ndimage.gaussian_filter1d(rng.standard_normal(n // 256 + 2), 30)[np.arange(n) // 256]
    drift = drift / (np.abs(drift).max() + 1e-9) * float(rng.uniform(4, 12))  # cents
    cents = depth * np.sin(phase) + drift
    ratio_minus_1 = 2 ** (cents / 1200) - 1
    offset = np.cumsum(ratio_minus_1) / sr  # seconds the read head runs ahead
    offset -= ndimage.uniform_filter1d(offset, int(0.8 * sr))  # no long-term timing drift
    pos = np.arange(n) + offset * sr
    return np.interp(pos, np.arange(n), x).astype(np.float32)


def air(x: np.ndarray, sr: int, amount_db: float) -> np.ndarray:
    """Exciter: harmonics of the 2.5-8 kHz band folded above 7 kHz, to give the 16 kHz voice some air."""
    band = _biquad_highpass(x, sr, 2500)
    peak = np.abs(band).max() + 1e-9
    excited = np.tanh(4 * band / peak) * peak
    high = _biquad_highpass(excited, sr, 7000)
    return (x + 10 ** (amount_db / 20) * high).astype(np.float32)


def add_breaths(out: np.ndarray, sr: int, phrase_starts, rng) -> None:
    """In-place: a short band-passed noise inhalation before phrases that follow a rest."""
    voiced = out[np.abs(out) > 1e-4]
    level = np.sqrt(np.mean(voiced ** 2)) * 10 ** (float(rng.uniform(-30, -18)) / 20) if voiced.size else 0.0
    sos = signal.butter(2, [float(rng.uniform(600, 1200)), float(rng.uniform(3000, 6000))], "bandpass", fs=sr, output="sos")
    prev_end = -1.0
    for start in phrase_starts:
        dur = float(rng.uniform(0.18, 0.35))
        a = int((start - dur - 0.05) * sr)
        if a <= 0 or start - prev_end < 0.5 or rng.random() < 0.3:
            prev_end = start
            continue
        n = int(dur * sr)
        noise = signal.sosfilt(sos, rng.standard_normal(n)) * np.sin(np.linspace(0, np.pi, n)) ** 2
        out[a:a + n] += (level * noise / (np.sqrt(np.mean(noise ** 2)) + 1e-9)).astype(np.float32)[: len(out) - a]
        prev_end = start


def sing_line(phrases, song, k: float, vib_hz: float, vib_cents: float, rng, workdir, tag: str,
              num_samples: int, sr: int = 44100, timing_jitter: float = 0.0, breaths: bool = False) -> np.ndarray:
    """One mono vocal line (lead, double or harmony), num_samples long at sr."""
    out = np.zeros(num_samples, np.float32)
    if not phrases:
        return out
    # Festival's LPC resynthesis crashes above ~500 Hz: raise k (brighter) for a high line, and as a
    # last resort sing the highest notes an octave lower.
    top = max(440.0 * 2 ** ((n.pitch - 69) / 12) for ph in phrases for n in ph)
    k = min(MAX_K, max(k, top / MAX_FESTIVAL_F0))
    for ph in phrases:
        for n in ph:
            while 440.0 * 2 ** ((n.pitch - 69) / 12) / k > MAX_FESTIVAL_F0:
                n.pitch -= 12
    waves = festival_sing(phrases, song, k, pathlib.Path(workdir), tag)
    notes_s = []
    for phrase, wave in zip(phrases, waves):
        y = soxr.resample(wave.astype(np.float32), FESTIVAL_RATE * k, sr, quality="HQ")
        start = song.seconds(phrase[0].start) + (rng.normal(0, timing_jitter) if timing_jitter else 0.0)
        # Festival stretches vowels to the note; the consonant onset lands ~30 ms early
        a = max(0, int(round((start - 0.03) * sr)))
        b = min(num_samples, a + len(y))
        if b > a:
            fade = np.ones(b - a, np.float32)
            m = min(len(fade) // 4, int(0.02 * sr))
            if m > 0:
                fade[-m:] = np.linspace(1, 0, m)
            out[a:b] += y[: b - a] * fade
        for n in phrase:
            notes_s.append((song.seconds(n.start), song.seconds(n.dur)))
    if breaths:
        add_breaths(out, sr, [song.seconds(ph[0].start) for ph in phrases], rng)
    out = vibrato(out, sr, notes_s, vib_hz, vib_cents, rng)
    # the diphones are dull next to a produced vocal: presence shelf, then air
    sos = np.vstack([_highshelf(float(rng.uniform(2000, 3500)), sr, float(rng.uniform(2, 7)))])
    out = signal.sosfilt(sos, out).astype(np.float32)
    out = air(out, sr, float(rng.uniform(-24, -14)))
    return out
