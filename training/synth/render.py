#!/usr/bin/env python3
"""Render procedurally composed multitrack songs, one FLAC per stem (exact ground truth).

    python training/synth/render.py --out DIR --num-songs N --seconds S --seed K [--jobs J]

Writes ``DIR/<track>/{vocals,drums,bass,piano,other}.flac`` (44.1 kHz stereo, 16-bit, all the same
length; a stem a song does not have is left out, as in ../shared/data) plus ``song.json`` (tempo, key,
sections, instruments, lyrics, mix settings) and ``midi/`` (the per-stem MIDI files and Festival
scores). The mixture is the sum of the stem files (``--mixture`` also writes ``mixture.flac``).
Same seed -> identical files. Needs fluidsynth, fluid-soundfont-gm and festival (install-deps.sh).

``--drums avl`` renders the drum stem with one of the two recorded acoustic kits of
``avldrums.lv2-soundfont`` (CC BY-SA 3.0), ``--drums hydrogen`` with the CC BY / CC0 kits of
``hydrogen-drumkits`` (``drumkits.py``; both packages: ``training/real/install-data.sh``) instead of
FluidR3's General-MIDI kits; the default ``--drums gm`` renders exactly what it did before the
option existed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import drumkits  # noqa: E402
import mixing  # noqa: E402
import vocals as vocals_mod  # noqa: E402
from compose import STEMS, Composer  # noqa: E402
from smf import MidiTrack  # noqa: E402

SAMPLE_RATE = 44100
SOUNDFONT = os.environ.get("SYNTH_SOUNDFONT", "/usr/share/sounds/sf2/FluidR3_GM.sf2")
# Recorded acoustic kits (avldrums.lv2-soundfont, CC BY-SA 3.0, Glen MacArthur): one preset (bank 0,
# program 0) each, keys 36-61 laid out like General MIDI percussion (kick 36, snare 38, hi-hats
# 42/44/46, toms, crash 49/57, ride 51, splash 55, cowbell 56); the composer's few notes outside
# that range (cabasa, maracas) stay silent, which keeps the stem's label exact.
AVL_KITS = {
    "Black Pearl": "/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2",
    "Red Zeppelin": "/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2",
}
DRUM_SOURCES = ("gm", "avl", "hydrogen")


@contextlib.contextmanager
def workdir(name: str):
    """Scratch folder for one song (kept for debugging when SYNTH_KEEP_TMP is set)."""
    path = tempfile.mkdtemp(prefix=f"{name}_")
    try:
        yield path
    finally:
        if not os.environ.get("SYNTH_KEEP_TMP"):
            shutil.rmtree(path, ignore_errors=True)


def check_tools(drums: str = "gm") -> None:
    missing = [tool for tool in ("fluidsynth", "festival") if shutil.which(tool) is None]
    if not os.path.isfile(SOUNDFONT):
        missing.append(f"SoundFont {SOUNDFONT} (fluid-soundfont-gm)")
    if missing:
        raise SystemExit(f"Missing: {', '.join(missing)}. Run: sudo training/synth/install-deps.sh")
    if drums == "avl" and not all(os.path.isfile(path) for path in AVL_KITS.values()):
        raise SystemExit("Missing the avldrums SoundFonts for --drums avl. Run: sudo training/real/install-data.sh")
    if drums == "hydrogen":
        for kit in drumkits.KITS:
            drumkits.kit_paths(kit)  # exits with the install hint when a kit is missing


def write_midi(parts, song, path: pathlib.Path) -> None:
    track = MidiTrack(song.bpm)
    for part in parts:
        track.program(part.channel, part.program, 0.0, bank=part.bank)
        track.control(part.channel, 7, part.volume)
        track.control(part.channel, 10, part.pan)
        track.control(part.channel, 91, 0)  # SoundFont reverb/chorus sends off: mixing.py adds reverb
        track.control(part.channel, 93, 0)
        for beat, cc, value in part.controls:
            track.control(part.channel, cc, value, beat)
        for n in part.notes:
            track.note(part.channel, n.pitch, n.start, n.dur, n.vel)
    track.save(path, song.total_beats + 2 * song.beats_per_bar)


def fluidsynth_render(midi: pathlib.Path, wav: pathlib.Path, num_samples: int, soundfont: str = SOUNDFONT) -> np.ndarray:
    cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(SAMPLE_RATE),
           "-o", "synth.polyphony=512", "-O", "float", "-T", "wav", "-F", str(wav), soundfont, str(midi)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    x, rate = sf.read(wav, dtype="float64", always_2d=True)
    assert rate == SAMPLE_RATE, rate
    out = np.zeros((num_samples, 2))
    n = min(num_samples, len(x))
    out[:n] = x[:n, :2]
    return out


def avl_parts(parts: list) -> list:
    """The drum parts moved onto a melodic channel playing the AVL kit's only preset.

    FluidSynth's channel 10 (index 9) asks for bank 128, which the AVL SoundFonts do not have; on
    channel 1 with bank 0 / program 0 the same keys play the kit's samples.
    """
    return [dataclasses.replace(part, channel=0, bank=0, program=0) for part in parts]


def render_song(out_root: str, index: int, seconds: float, seed: int, absent_scale: float = 1.0,
                mixture: bool = False, keep_midi: bool = True, drums: str = "gm") -> dict:
    t_start = time.time()
    name = f"synth{seed:04d}_{index:05d}"
    root = pathlib.Path(out_root) / name
    seq = np.random.SeedSequence([seed, index])
    comp_rng, voc_rng, mix_rng = (np.random.default_rng(s) for s in seq.spawn(3))
    song = Composer(comp_rng, seconds, absent_scale).compose()
    num_samples = int(round(seconds * SAMPLE_RATE))
    info = {"track": name, "seed": seed, "index": index, "seconds": seconds, "sample_rate": SAMPLE_RATE,
            **song.describe(), "mix": {}}
    stems: dict[str, np.ndarray] = {}
    with workdir(name) as tmp:
        tmp = pathlib.Path(tmp)
        midi_dir = tmp / "midi"
        midi_dir.mkdir()
        for stem in STEMS:
            parts = [p for p in song.parts if p.stem == stem and p.notes]
            if stem == "vocals":
                if not song.stems_present["vocals"] or not song.vocal_phrases:
                    continue
                voice = song.voice
                lead = vocals_mod.sing_line(song.vocal_phrases, song, voice["formant_scale"], voice["vibrato_hz"],
                                            voice["vibrato_cents"], voc_rng, midi_dir, "lead", num_samples,
                                            breaths=voice["breaths"])
                x = np.stack([lead, lead], axis=1).astype(np.float64)
                lead_rms = mixing.active_rms(x, SAMPLE_RATE)
                layers = []
                if voice["double"]:
                    layers.append(("double", song.vocal_phrases, voice["formant_scale"] * voc_rng.uniform(0.97, 1.03), 0.5, 0.015))
                if voice["harmony"] and song.harmony_phrases:
                    layers.append(("harmony", song.harmony_phrases, voice["harmony_formant_scale"], 0.45, 0.01))
                for tag, phrases, k, level, jitter in layers:
                    y = vocals_mod.sing_line(phrases, song, k, voice["vibrato_hz"] * voc_rng.uniform(0.9, 1.1),
                                             voice["vibrato_cents"] * voc_rng.uniform(0.7, 1.1), voc_rng, midi_dir, tag,
                                             num_samples, timing_jitter=jitter)
                    pan = float(voc_rng.uniform(0.3, 0.8)) * (1 if tag == "double" else -1)
                    g = level * lead_rms / max(mixing.active_rms(np.stack([y, y], 1), SAMPLE_RATE), 1e-9)
                    x += g * np.stack([y * np.sqrt(1 - pan), y * np.sqrt(1 + pan)], axis=1)
                if parts:  # SoundFont choir backing
                    write_midi(parts, song, midi_dir / "vocals-choir.mid")
                    choir = fluidsynth_render(midi_dir / "vocals-choir.mid", tmp / "choir.wav", num_samples)
                    c_rms = mixing.active_rms(choir, SAMPLE_RATE)
                    if c_rms > 0:
                        x += choir * (float(voc_rng.uniform(0.25, 0.5)) * lead_rms / c_rms)
                stems["vocals"] = x
                continue
            if not parts:
                continue
            soundfont = SOUNDFONT
            if stem == "drums" and drums == "hydrogen":
                # Its own generator, as for avl below: the song and its mix stay those of --drums gm.
                kit = str(np.random.default_rng([seed, index, 11]).choice(sorted(drumkits.KITS)))
                notes = [n for part in parts for n in part.notes]
                stems[stem] = drumkits.render(notes, song.seconds(1.0), kit, num_samples, SAMPLE_RATE)
                info["drum_kit"] = f"hydrogen {kit}"
                continue
            if stem == "drums" and drums == "avl":
                # Its own generator, so the composition and the mix draw exactly what they draw with
                # --drums gm: the same seed gives the same song with another drummer.
                kit = str(np.random.default_rng([seed, index, 11]).choice(sorted(AVL_KITS)))
                parts, soundfont = avl_parts(parts), AVL_KITS[kit]
                info["drum_kit"] = f"avldrums {kit}"
            write_midi(parts, song, midi_dir / f"{stem}.mid")
            stems[stem] = fluidsynth_render(midi_dir / f"{stem}.mid", tmp / f"{stem}.wav", num_samples, soundfont)
        # ---- mixing: song-level rooms, per-stem processing
        t60 = float(mix_rng.uniform(0.4, 2.6))
        ir = mixing.reverb_ir(SAMPLE_RATE, mix_rng, t60, float(mix_rng.uniform(2500, 9000)), float(mix_rng.uniform(0, 30)))
        ir_vocal = mixing.reverb_ir(SAMPLE_RATE, mix_rng, float(mix_rng.uniform(0.8, 3.0)), float(mix_rng.uniform(3000, 10000)),
                                    float(mix_rng.uniform(10, 80)))
        info["mix"]["room_t60_s"] = round(t60, 2)
        for stem in STEMS:
            if stem in stems:
                stems[stem], info["mix"][stem] = mixing.mix_stem(stems[stem], SAMPLE_RATE, mix_rng, stem, ir, ir_vocal)
        # ---- whole-track envelope (same on every stem: the sum stays the mixture) and level
        env = np.ones(num_samples)
        fade_out = float(mix_rng.uniform(1.5, 5.0)) if seconds > 12 else min(0.5, seconds / 8)
        m = int(fade_out * SAMPLE_RATE)
        env[-m:] = np.linspace(1, 0, m) ** 2
        m = int(0.01 * SAMPLE_RATE)
        env[:m] = np.linspace(0, 1, m)
        mix = sum(stems.values()) if stems else np.zeros((num_samples, 2))
        peak = max([np.abs(mix).max()] + [np.abs(x).max() for x in stems.values()]) + 1e-9
        target = 10 ** (float(mix_rng.uniform(-6, -1)) / 20)
        scale = env[:, None] * (target / peak)
        info["mix"]["peak_dbfs"] = round(20 * np.log10(target), 2)
        info["mix"]["fade_out_s"] = round(fade_out, 2)
        final, root = root, root.with_name(f".{root.name}.partial")  # hidden until complete, then renamed
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        written = []
        for stem in STEMS:
            if stem in stems:
                y = (stems[stem] * scale).astype(np.float32)
                if np.abs(y).max() < 1e-4:
                    continue
                sf.write(root / f"{stem}.flac", y, SAMPLE_RATE, subtype="PCM_16")
                written.append(stem)
        if mixture:
            sf.write(root / "mixture.flac", (mix * scale).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        info["stems_written"] = written
        if keep_midi:
            dest = root / "midi"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            for f in sorted(midi_dir.iterdir()):
                if f.suffix in (".mid", ".xml"):
                    shutil.copy(f, dest / f.name)
    (root / "song.json").write_text(json.dumps(info, indent=1) + "\n")  # deterministic: no timings
    shutil.rmtree(final, ignore_errors=True)
    os.replace(root, final)
    info["render_seconds"] = round(time.time() - t_start, 2)
    return info


def song_seconds(args, index: int) -> float:
    if args.seconds_max is None or args.seconds_max <= args.seconds:
        return float(args.seconds)
    draw = np.random.default_rng([args.seed, index, 7]).uniform(args.seconds, args.seconds_max)
    return float(round(draw, 1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per track)")
    parser.add_argument("--num-songs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=45.0, help="length of every song (30-90 recommended)")
    parser.add_argument("--seconds-max", type=float, default=None,
                        help="if given, every song's length is drawn (seeded) from [--seconds, --seconds-max]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-index", type=int, default=0, help="first song index (to extend a dataset)")
    parser.add_argument("--jobs", type=int, default=1, help="songs rendered in parallel (processes)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget: start no new song after this many minutes (songs in flight finish)")
    parser.add_argument("--absent-scale", type=float, default=1.0,
                        help="scales the chance that a song lacks a stem (0: every stem always present)")
    parser.add_argument("--mixture", action="store_true", help="also write mixture.flac (sum of the stems)")
    parser.add_argument("--no-midi", action="store_true", help="do not keep midi/ (MIDI + Festival scores)")
    parser.add_argument("--drums", choices=DRUM_SOURCES, default="gm",
                        help="drum sounds: gm = FluidR3's General-MIDI kits (default, as before); "
                             "avl = the recorded acoustic kits of avldrums.lv2-soundfont (CC BY-SA 3.0); "
                             "hydrogen = the CC BY / CC0 kits of hydrogen-drumkits (drumkits.py)")
    args = parser.parse_args(argv)
    check_tools(args.drums)
    os.makedirs(args.out, exist_ok=True)
    indices = range(args.start_index, args.start_index + args.num_songs)
    kwargs = dict(absent_scale=args.absent_scale, mixture=args.mixture, keep_midi=not args.no_midi, drums=args.drums)
    t0 = time.time()
    audio_s, done = 0.0, 0
    budget = args.max_minutes * 60 if args.max_minutes else None
    pending = iter(indices)
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        running = set()
        while True:
            # keep `jobs` songs in flight; with --max-minutes, start no new song once the budget is spent
            while len(running) < max(1, args.jobs) and (budget is None or time.time() - t0 < budget):
                index = next(pending, None)
                if index is None:
                    break
                running.add(pool.submit(render_song, args.out, index, song_seconds(args, index), args.seed, **kwargs))
            if not running:
                break
            finished, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: f.result()["index"]):
                info = fut.result()
                audio_s += info["seconds"]
                done += 1
                print(f"{info['track']}: {info['seconds']:5.1f}s {info['style']:8s} {info['key']:14s} {info['bpm']:6.1f} bpm  "
                      f"stems={','.join(info['stems_written'])}  rendered in {info['render_seconds']:.1f}s", flush=True)
    wall = time.time() - t0
    print(f"{done} songs, {audio_s:.0f} s of audio in {wall:.0f} s ({audio_s / max(wall, 1e-9):.2f} x real time)")


if __name__ == "__main__":
    main()
