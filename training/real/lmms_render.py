"""Render the LMMS demo songs of Debian ``lmms-common`` one stem per file, exactly labelled.

    sudo training/real/install-data.sh                  # lmms + lmms-common (once)
    .venv/bin/python training/real/lmms_render.py --list                     # the licence table
    .venv/bin/python training/real/lmms_render.py --out data-work/lmms-songs --jobs 1 --max-minutes 15

Writes ``OUT/<project>/{drums,bass,piano,other}.flac`` (only the stems a song has; no song has
vocals) and ``OUT/<project>/mapping.json`` (every LMMS track: its stem and why, the tracks left
out, the licence, the residual), the layout of ``../shared/data/everything-is-free``.

How a song is rendered (measured in ``training/DATA_SOURCES.md``):

* Only projects whose licence allows training are rendered (``PROJECTS``): Artistic 2.0 and BSD;
  ``--share-alike`` adds the CC BY-SA ones. Unstated licences, covers and GPL-by-default files are
  never rendered.
* Tracks that play one of LMMS's stock recordings (``samples/drums/*.ogg`` and the like) are left
  out (silent in every render) unless ``--stock-samples``: upstream does not know where those recordings
  come from. DrumSynth presets (``*.ds``) and single-cycle waveforms are synthesis settings and kept.
* The master channel's dynamics effects (limiters, compressors, distortion) are switched off: they
  act on the whole mix and cannot be split into stems. Everything else (the master's EQ, reverb and
  delay, instrument and mixer-channel effects, automation) is kept.
* Every kept track is rendered alone (all others silenced) by its own ``lmms render`` process, and the
  whole song once more with every kept track on. Songs whose kept tracks share a non-linear effect
  (a compressor on a mixer channel two of them feed, a side-chain peak controller) are not rendered.
  A song is written when its tracks sum to the whole render: exactly (residual at most
  ``--max-residual-db``), or, for tracks that draw random numbers (DrumSynth noise, ZynAddSubFX
  phases: LMMS renders another take of them every time, the whole song included), when the sum
  follows the song's level in every octave band and half second (``--max-envelope-db``). The
  stems are then exact parts of their sum, which is a take of the song. (``lmms rendertracks`` is
  not used: in LMMS 1.2.2 its files are 19-20 samples late and carry state over from one track
  to the next.)
* Each track goes to a stem by its plugin, sample and name (``classify``); tracks no rule names are
  ``bass`` when most of their energy is below 150 Hz, else ``other`` (the rule of the
  everything-is-free mappings).

Songs without noise and with at most one ZynAddSubFX track give the same files at every run; the
others are another take of their random parts every time (the whole song included).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import soundfile as sf

PROJECTS_ROOT = pathlib.Path(os.environ.get("STEMTF_LMMS_PROJECTS", "/usr/share/lmms/projects"))
SAMPLE_RATE = 44100
STEMS = ("drums", "bass", "piano", "other")  # no LMMS demo song has a recorded voice
LOW_HZ = 150.0  # energy below this is "bass" energy
BASS_SHARE = 0.5  # tracks no rule names are bass when at least this share of their energy is < LOW_HZ
SILENT_PEAK = 1e-4  # a track whose render never reaches this is not played in the song

USE = "use"  # the licence allows training
SHARE_ALIKE = "share-alike"  # allows it with credit, and the cautious reading puts weights under BY-SA
NEVER = "never"


@dataclasses.dataclass(frozen=True)
class Licence:
    """Who made a demo project and under which terms (``debian/copyright`` of lmms-common, upstream
    ``data/projects/*/LICENSES.TXT`` and the project's own notes)."""

    author: str
    licence: str
    use: str  # USE, SHARE_ALIKE or NEVER
    note: str = ""


# Every project lmms-common 1.2.2 ships, by its path under PROJECTS_ROOT.
PROJECTS = {
    "demos/CapDan/CapDan-ReggaeTry.mmpz": Licence("Der Daniel (CapDan), 2011", "Artistic-2.0", USE),
    "demos/CapDan/CapDan-ReggaetonTry.mmpz": Licence("Der Daniel (CapDan), 2011", "Artistic-2.0", USE),
    "demos/CapDan/CapDan-ZeroSumGame-OriginalByZakarra.mmpz": Licence(
        "Der Daniel (CapDan), 2011, after Zakarra", "Artistic-2.0", USE,
        "a remix of Zakarra's song; Zakarra's own LMMS songs are Artistic 2.0 too (upstream LICENSES.TXT)"),
    "demos/EsoXLB-CPU.mmpz": Licence("E.SoX (lowbudget), 2010", "Artistic-2.0", USE),
    "demos/Impulslogik-Zen.mmpz": Licence("Impulslogik, 2010", "Artistic-2.0", USE),
    "demos/Momo64-esp.mmpz": Licence("mauro (momo64), 2011", "Artistic-2.0", USE),
    "demos/Oglsdl-Dr8v2.mmpz": Licence("Ümit (oglsdl), 2011", "Artistic-2.0", USE),
    "demos/Oglsdl-PpTrip.mmpz": Licence("Ümit (oglsdl), 2011", "Artistic-2.0", USE),
    "demos/Saber-FinalStep.mmpz": Licence("Saber Rastikerdar", "BSD-2-Clause", USE),
    "demos/Settel-InnerRecreation.mmpz": Licence("Achim Settelmeier, 2009", "Artistic-2.0", USE),
    "demos/Socceroos-Progress.mmpz": Licence("Sam (socceroos), 2011", "Artistic-2.0", USE),
    "demos/TameAnderson-MakeMe.mmpz": Licence("tame anderson, 2011", "Artistic-2.0", USE),
    "shorties/Crunk(Demo).mmp": Licence("not named", "Artistic-2.0", USE),
    "shorties/Greshz-CoolSnip.mmpz": Licence("Greshz", "Artistic-2.0", USE),
    "shorties/Surrender-Main.mmpz": Licence("Peter Asplund (Surrender), 2009", "Artistic-2.0", USE),
    "demos/Alf42red-Mauiwowi.mmpz": Licence("Armin Heller (Alf42red), 2010", "CC BY-SA 3.0 DE", SHARE_ALIKE),
    "demos/CapDan/CapDan-TwilightArea-OriginalByAlf42red.mmpz": Licence(
        "Der Daniel (CapDan), 2011, remix of Armin Heller's \"Twilight Area\"", "CC BY-SA 3.0 DE", SHARE_ALIKE),
    "demos/Jousboxx-BuzzerBeater.mmpz": Licence("Jousboxx, 2017", "CC BY-SA 4.0", SHARE_ALIKE),
    "demos/Skiessi/Skiessi-C64.mmpz": Licence("Skiessi", "CC BY-SA 4.0", SHARE_ALIKE),
    "demos/Skiessi/Skiessi-Onion.mmpz": Licence("Skiessi", "CC BY-SA 4.0", SHARE_ALIKE),
    "demos/Thomasso-AxeFromThe80s.mmpz": Licence(
        "Thomasso, 2009", "Artistic-2.0", NEVER,
        "a cover: its notes say the main riff and drum beat are taken from another song"),
    "demos/Shovon-ProgressiveHousePluckDemo.mmpz": Licence(
        "Shovon", "GPL-2+ (debian/copyright's default for files it does not name)", NEVER, "no licence of its own"),
    "demos/StrictProduction-DearJonDoe.mmp": Licence(
        "StrictProduction", "GPL-2+ (debian/copyright's default)", NEVER, "no licence of its own"),
    "shorties/DirtyLove.mmpz": Licence(
        "mamins1376, 2016", "GPL-2+ (debian/copyright's default)", NEVER,
        "its notes say CC-BY-SA without a version; Debian's file says otherwise"),
    "shorties/Skiessi-222.mmpz": Licence(
        "Skiessi", "GPL-2+ (debian/copyright's default)", NEVER,
        "upstream's Shorties/LICENSES.TXT says CC BY-SA; Debian's file says otherwise"),
    "tutorials/editing_note_volumes.mmp": Licence("LMMS developers", "GPL-2+", NEVER, "a tutorial, not a song"),
}

# Effects that are not linear (limiters, compressors, distortion, level followers): switched off
# on the master channel, where they would act on the sum of every part at once.
NONLINEAR_EFFECTS = re.compile(r"limit|compress|clip|shaper|wrapper|dynamics|maximi|peakcontroller|bitcrush|"
                               r"overdrive|satan|declip|gate", re.IGNORECASE)

# LMMS stock files that are synthesis settings, not recordings: DrumSynth presets (MIT or GPL-2+,
# from the DrumSynth project) and single-cycle waveforms.
SYNTHESIS_FILES = re.compile(r"(\.ds$)|(^|/)(shapes|waveforms)/", re.IGNORECASE)

# Stem rules on a track's name and sample path, tried in order (whole words, case-insensitive).
DRUM_WORDS = ("kick", "kik", "bd", "bassdrum", "snare", "snarre", "snr", "sd", "rim", "rimshot", "sidestick",
              "hat", "hihat", "hh", "clap", "handclap", "crash", "ride", "cymbal", "tom", "toms", "drum", "drums",
              "perc", "shaker", "tamb", "cowbell", "conga", "bongo", "timbale", "clave", "cga", "kix")
BASS_WORDS = ("bass", "bassline", "sub", "basses", "bassslap")
PIANO_WORDS = ("piano", "epiano", "rhodes")


@dataclasses.dataclass(frozen=True)
class Part:
    """One LMMS instrument or sample track (in the song editor or the beat+bassline editor).

    Attributes:
        index: Position among the project's instrument and sample tracks, in file order.
        name: The track's name in LMMS.
        plugin: The instrument plugin (``sampletrack`` for a sample track).
        sample: The sample file an AudioFileProcessor plays ('' for synthesizers).
        muted: Muted in the project as shipped (such a track is not part of the song).
    """

    index: int
    name: str
    plugin: str
    sample: str
    muted: bool

    @property
    def key(self) -> str:
        """``<index> <name>``: names repeat within a project, indices do not."""
        return f"{self.index:02d} {self.name}"

    @property
    def stock_recording(self) -> bool:
        """True when the track plays a recorded sample (not a DrumSynth preset or a waveform)."""
        return bool(self.sample) and not SYNTHESIS_FILES.search(self.sample)


def read_project(path: pathlib.Path) -> ET.Element:
    """The XML root of an ``.mmp`` file or an ``.mmpz`` (Qt's qCompress: 4-byte length + zlib)."""
    data = path.read_bytes()
    if path.suffix == ".mmpz":
        data = zlib.decompress(data[4:])
    root = ET.fromstring(data)
    if root.tag not in ("lmms-project", "multimedia-project"):  # the second: LMMS 0.4 files
        raise SystemExit(f"{path} is not an LMMS project (root element {root.tag!r}).")
    return root


def _part_tracks(root: ET.Element) -> list[ET.Element]:
    """Instrument (type 0) and sample (type 2) tracks, in file order, at any depth."""
    return [t for t in root.iter("track") if t.get("type") in ("0", "2")]


def parts(root: ET.Element) -> list[Part]:
    """Every instrument and sample track of a project, in file order."""
    found = []
    for index, track in enumerate(_part_tracks(root)):
        instrument = track.find("instrumenttrack/instrument")
        plugin = instrument.get("name", "") if instrument is not None else "sampletrack"
        sample = ""
        if instrument is not None and instrument.find("audiofileprocessor") is not None:
            sample = instrument.find("audiofileprocessor").get("src", "")
        found.append(Part(index, track.get("name", ""), plugin, sample, track.get("muted") == "1"))
    return found


def _words(text: str) -> set[str]:
    """Lower-case words of a name or path; digits split off (``kick01`` -> ``kick``)."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    return words | {w[:-1] for w in words if w.endswith("s")}  # hats -> hat


def classify(part: Part) -> tuple[str | None, str]:
    """The stem a track belongs to from what LMMS says about it, and the rule; ``None``: decide by audio.

    Sample folders first (LMMS files its samples by kind), then words of the track's name and
    sample file name. A synthesizer named by none of them is decided by its spectrum
    (:func:`stem_by_audio`); so is ``kicker`` (a drum synthesizer that songs also play tunes on)
    unless its name says drums.
    """
    sample = part.sample.lower()
    folder = sample.split("/")[0] if "/" in sample else ""
    if folder == "drumsynth":
        if "/instrument/" in sample:  # E_Piano.ds, mute_bass.ds: pitched presets played as instruments
            pass
        elif re.search(r"/(misc_fx|effects)/", sample):
            return "other", "DrumSynth sound effect"
        else:
            return "drums", "DrumSynth drum preset"
    if folder in ("drums", "beats"):
        return "drums", f"sample in {folder}/"
    if folder in ("basses", "bassloops"):
        return "bass", f"sample in {folder}/"
    words = _words(part.name) | _words(pathlib.PurePosixPath(sample).stem)
    if words & set(DRUM_WORDS):
        return "drums", f"drum word ({sorted(words & set(DRUM_WORDS))[0]})"
    if words & set(PIANO_WORDS):
        return "piano", f"piano word ({sorted(words & set(PIANO_WORDS))[0]})"
    if words & set(BASS_WORDS):
        return "bass", f"bass word ({sorted(words & set(BASS_WORDS))[0]})"
    if part.sample:
        return "other", "other sample"
    return None, "by audio"


def low_share(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, cutoff_hz: float = LOW_HZ) -> float:
    """Share of a waveform's energy below ``cutoff_hz`` (0..1).

    Args:
        waveform: ``(num_samples, num_channels)`` float.
    """
    spectrum = np.abs(np.fft.rfft(waveform.mean(axis=1))) ** 2
    freqs = np.fft.rfftfreq(len(waveform), 1.0 / sample_rate)
    total = spectrum.sum()
    return float(spectrum[freqs < cutoff_hz].sum() / total) if total > 0 else 0.0


def stem_by_audio(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[str, str]:
    """``bass`` when most of the energy is below 150 Hz, else ``other``; and the rule with the share."""
    share = low_share(waveform, sample_rate)
    stem = "bass" if share >= BASS_SHARE else "other"
    return stem, f"synth, {share:.2f} of energy < {LOW_HZ:.0f} Hz"


def _effect_plugin(effect: ET.Element) -> str:
    """An effect's plugin: the LADSPA plugin's label, else LMMS's own effect name."""
    label = next((a.get("value") for a in effect.iter("attribute") if a.get("name") == "plugin"), None)
    return label or effect.get("name", "?")


def _effect_on(effect: ET.Element) -> bool:
    """Whether an effect is switched on: its ``on`` attribute, or (automatable) its ``<on value>``."""
    child = effect.find("on")
    return (child.get("value") if child is not None else effect.get("on", "1")) not in ("0", "0.0")


def _switch_off(effect: ET.Element) -> None:
    effect.set("on", "0")
    child = effect.find("on")
    if child is not None:  # an automatable switch: off, and no longer an automation target
        child.set("value", "0")
        child.attrib.pop("id", None)


def _active_effects(chain_holder: ET.Element) -> list[ET.Element]:
    """The switched-on effects of the effect chains directly inside an element."""
    return [effect for chain in chain_holder.findall("fxchain") if chain.get("enabled", "1") != "0"
            for effect in chain.findall("effect") if _effect_on(effect)]


def _channel_of(track: ET.Element) -> int:
    holder = track.find("instrumenttrack")
    if holder is None:
        holder = track.find("sampletrack")
    return int(holder.get("fxch", "0")) if holder is not None else 0


def shared_nonlinear(root: ET.Element, kept: Sequence[int]) -> list[str]:
    """Why the kept tracks rendered alone would not sum to the song ([] when they would).

    A mixer channel that two or more kept tracks reach (through its sends) with a dynamics or
    distortion effect on, or a peak controller (a side-chain: one track's level moves another's
    knobs) that a kept track feeds. The master's dynamics are switched off by :func:`render_variant`.
    """
    tracks = _part_tracks(root)
    sends = {int(ch.get("num", "0")): [int(s.get("channel", "0")) for s in ch.findall("send")]
             for ch in root.iter("fxchannel")}
    reach: dict[int, set[int]] = {}
    for index in kept:
        stack, seen = [_channel_of(tracks[index])], set()
        while stack:
            channel = stack.pop()
            if channel not in seen:
                seen.add(channel)
                reach.setdefault(channel, set()).add(index)
                stack += sends.get(channel, [])
    problems = []
    for channel in root.iter("fxchannel"):
        num = int(channel.get("num", "0"))
        fed = sorted(reach.get(num, ()))
        for effect in _active_effects(channel):
            plugin = _effect_plugin(effect)
            if plugin == "peakcontrollereffect" and fed:
                problems.append(f"peak controller on mixer channel {num} fed by tracks {fed}")
            elif num != 0 and NONLINEAR_EFFECTS.search(plugin) and len(fed) >= 2:
                problems.append(f"{plugin} on mixer channel {num} shared by tracks {fed}")
    for index in kept:
        holder = tracks[index].find("instrumenttrack")
        if holder is not None and any(_effect_plugin(e) == "peakcontrollereffect" for e in _active_effects(holder)):
            problems.append(f"peak controller on track {index}")
    return problems


def _master_dynamics(root: ET.Element) -> list[ET.Element]:
    """The master channel's effects whose output is not the sum of their outputs on the parts."""
    return [effect for channel in root.iter("fxchannel") if channel.get("num") == "0"
            for effect in _active_effects(channel) if NONLINEAR_EFFECTS.search(_effect_plugin(effect))]


def master_effects_off(root: ET.Element) -> list[str]:
    """The plugins of the master channel's effects :func:`render_variant` switches off."""
    return [_effect_plugin(effect) for effect in _master_dynamics(root)]


def _silence(track: ET.Element) -> None:
    """Make a track play nothing while it still counts for the song's length, cheaply.

    Its notes are played at volume 0 (neither muted nor removed: LMMS ends an export at the last
    pattern of the tracks not muted, and measures a pattern by its notes, so either would shorten
    the song and cut the other tracks' tails), a sample track's clips are emptied, and a
    synthesizer becomes an empty sampler with its own effects off (LMMS runs a synthesizer with
    nothing to play all the same: a ZynAddSubFX track costs as much silent as playing). Samplers are
    kept: the DrumSynth presets they load draw noise from one random sequence in file order, so
    removing one would change the others' sound.
    """
    for note in track.iter("note"):
        note.set("vol", "0")
    for clip in track.iter("sampletco"):
        clip.set("src", "")
        clip.attrib.pop("data", None)
    holder = track.find("instrumenttrack")
    instrument = holder.find("instrument") if holder is not None else None
    if instrument is None or instrument.get("name") == "audiofileprocessor":
        return
    holder.remove(instrument)
    empty = ET.Element("instrument", name="audiofileprocessor")
    ET.SubElement(empty, "audiofileprocessor", src="")
    holder.insert(0, empty)
    for chain in holder.findall("fxchain"):
        chain.set("enabled", "0")


def render_variant(root: ET.Element, playing: Sequence[int]) -> bytes:
    """The project as XML in which only the tracks of index ``playing`` play, the master's dynamics off.

    Every other instrument and sample track is silenced (:func:`_silence`; a track muted in the
    project stays muted). Beat+bassline and automation tracks, the mixer channels and the master's
    linear effects (EQ, reverb, delay) are kept: a linear effect on the sum is the sum of it on each
    part.
    """
    variant = ET.fromstring(ET.tostring(root))
    on = set(playing)
    for index, track in enumerate(_part_tracks(variant)):
        if track.get("solo") is not None:
            track.set("solo", "0")
        if index in on:
            track.set("muted", "0")
        else:
            _silence(track)
    for effect in _master_dynamics(variant):
        _switch_off(effect)
    return ET.tostring(variant)


Renderer = Callable[[pathlib.Path, pathlib.Path], None]


@dataclasses.dataclass(frozen=True)
class LmmsRenderer:
    """Runs ``lmms render PROJECT --float --format wav --output OUT`` headless (32-bit float WAV, 44.1 kHz).

    A class, not a closure, so that worker processes can receive it.
    """

    lmms: str = "lmms"
    timeout_s: float = 1800

    def __call__(self, project: pathlib.Path, out: pathlib.Path) -> None:
        command = [self.lmms, *(["--allowroot"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
                   "render", str(project), "--float", "--format", "wav", "--output", str(out)]
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=self.timeout_s)
        if done.returncode != 0 or not out.is_file():
            tail = (done.stdout + done.stderr).strip()[-400:]
            raise RuntimeError(f"`{' '.join(command)}` failed (exit {done.returncode}): {tail}")


def _read(path: pathlib.Path) -> np.ndarray:
    waveform, rate = sf.read(path, dtype="float64", always_2d=True)
    if rate != SAMPLE_RATE:
        raise RuntimeError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}.")
    return waveform


def _power_db(waveform: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(waveform ** 2) + 1e-30))


BAND_EDGES_HZ = (0, 60, 125, 250, 500, 1000, 2000, 4000, 8000, 16000)


def envelope_difference_db(waveform: np.ndarray, reference: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """How far ``waveform``'s level follows ``reference``'s: mean |dB difference| of their energy in
    octave bands and 0.5 s frames, weighted by the reference's energy.

    Two renders of the same song that differ only in random draws (noise, oscillator phases) are
    0.3-0.4 dB apart; the same tracks with a limiter on their sum, 5 dB (``training/DATA_SOURCES.md``).

    Args:
        waveform, reference: ``(num_samples, num_channels)`` float, the same shape.
    """
    frame = sample_rate // 2
    num_frames = len(reference) // frame
    if num_frames == 0:
        return 0.0
    freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    edges = (*BAND_EDGES_HZ, sample_rate / 2 + 1)

    def energies(x: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(x[: num_frames * frame].reshape(num_frames, frame, -1), axis=1)) ** 2
        power = spectrum.sum(axis=2)
        return np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])], 1)

    mine, theirs = energies(waveform), energies(reference)
    floor = max(theirs.max(), mine.max()) * 1e-6 + 1e-30  # -60 dB re the loudest band: below is silence
    difference = np.abs(10 * np.log10((mine + floor) / (theirs + floor)))
    return float((difference * theirs).sum() / max(theirs.sum(), 1e-30))


def _write_flac(path: pathlib.Path, waveform: np.ndarray) -> None:
    """16-bit FLAC via a temporary name, so an interrupted run never leaves a half-written stem."""
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, waveform.astype(np.float32), SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


def song_name(relative: str) -> str:
    """The output folder of a project: its file name without the extension."""
    return pathlib.PurePosixPath(relative).stem


def render_song(relative: str, out: pathlib.Path, *, projects_root: pathlib.Path = PROJECTS_ROOT,
                renderer: Renderer | None = None, stock_samples: bool = False,
                max_residual_db: float = -40.0, max_envelope_db: float = 1.0) -> dict:
    """Render one project's kept tracks alone and together; write its stems and ``mapping.json``.

    The song is written when its kept tracks share no non-linear processing (:func:`shared_nonlinear`)
    and their sum is the whole render: within ``max_residual_db`` (dB re the song; ``check``:
    ``exact``), or, where the tracks draw random numbers (DrumSynth noise, ZynAddSubFX phases: every
    render is another take of them), following its level within ``max_envelope_db``
    (:func:`envelope_difference_db`; ``check``: ``random takes``).

    Returns:
        What was done: ``song``, ``seconds``, ``residual_db``, ``written``, ``reason`` (why not),
        ``stems`` (stem -> seconds of audio written), ``render_seconds``.
    """
    renderer = renderer or LmmsRenderer()
    started = time.time()
    licence = PROJECTS[relative]
    root = read_project(projects_root / relative)
    song = song_name(relative)
    left_out = {}
    kept = []
    for part in parts(root):
        if part.muted:
            left_out[part.key] = "muted in the project"
        elif part.stock_recording and not stock_samples:
            left_out[part.key] = f"plays LMMS stock recording {part.sample} (provenance unknown)"
        else:
            kept.append(part)
    info = {"song": song, "project": relative, "author": licence.author, "licence": licence.licence,
            "seconds": 0.0, "residual_db": None, "master_effects_off": master_effects_off(root),
            "stock_samples": stock_samples, "check": "", "tracks": {},
            "left_out": left_out, "written": False, "reason": "", "stems": {}}
    problems = shared_nonlinear(root, [p.index for p in kept])
    if not kept or problems:
        info["reason"] = "; ".join(problems) or "no track left to render"
        info["render_seconds"] = round(time.time() - started, 1)
        return info
    stems: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix=f".{song}-", dir=out) as work:
        work = pathlib.Path(work)
        variant = work / "song.mmp"
        variant.write_bytes(render_variant(root, [p.index for p in kept]))
        renderer(variant, work / "song.wav")
        whole = _read(work / "song.wav")
        total = np.zeros_like(whole)
        for part in kept:  # one track at a time: a long song's tracks would not all fit in memory
            variant.write_bytes(render_variant(root, [part.index]))
            renderer(variant, work / "track.wav")
            wave = _read(work / "track.wav")
            if wave.shape != whole.shape:
                raise RuntimeError(f"{song}: track {part.key!r} rendered {wave.shape}, the whole song "
                                   f"{whole.shape}; the sum would not be the song.")
            total += wave
            if np.abs(wave).max() < SILENT_PEAK:
                left_out[part.key] = "silent (not played in the song)"
                continue
            stem, rule = classify(part)
            if stem is None:
                stem, rule = stem_by_audio(wave)
            info["tracks"][part.key] = {"stem": stem, "rule": rule, "plugin": part.plugin, "sample": part.sample,
                                        "level_db": round(_power_db(wave), 1)}
            stems[stem] = stems[stem] + wave if stem in stems else wave
    seconds = len(whole) / SAMPLE_RATE
    residual_db = _power_db(total - whole) - _power_db(whole)
    envelope_db = envelope_difference_db(total, whole)
    info.update(seconds=round(seconds, 3), residual_db=round(residual_db, 1), envelope_db=round(envelope_db, 2))
    if not stems:
        info["reason"] = "every kept track is silent"
    elif residual_db <= max_residual_db:
        info["check"] = "exact"
    elif envelope_db <= max_envelope_db:
        info["check"] = "random takes"
    else:
        info["reason"] = (f"the tracks do not sum to the song (residual {residual_db:.1f} dB, "
                          f"envelope {envelope_db:.1f} dB)")
    info["written"] = not info["reason"]
    info["render_seconds"] = round(time.time() - started, 1)
    if info["written"]:
        peak = max([np.abs(total).max(), *(np.abs(w).max() for w in stems.values())])
        gain = 0.99 / peak if peak > 0 else 1.0  # one gain for every stem keeps their sum the song
        info["gain"] = round(float(gain), 4)
        info["stems"] = {stem: round(seconds, 3) for stem in sorted(stems)}
        song_dir = out / song
        song_dir.mkdir(parents=True, exist_ok=True)
        for old in song_dir.glob("*.flac"):
            old.unlink()
        for stem, wave in sorted(stems.items()):
            _write_flac(song_dir / f"{stem}.flac", wave * gain)
        (song_dir / "mapping.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    return info


def selected(share_alike: bool, names: Sequence[str] = ()) -> list[str]:
    """The projects to render: those the licence allows, sorted, or of them ``names`` in that order."""
    allowed = {USE, SHARE_ALIKE} if share_alike else {USE}
    chosen = [rel for rel, lic in sorted(PROJECTS.items()) if lic.use in allowed]
    if names:
        unknown = [n for n in names if n not in {song_name(r) for r in PROJECTS}]
        if unknown:
            raise SystemExit(f"Unknown project {unknown[0]!r}; `--list` shows them.")
        refused = [n for n in names if n not in {song_name(r) for r in chosen}]
        if refused:
            raise SystemExit(f"Project {refused[0]!r} is not rendered under its licence "
                             f"(`--list`; CC BY-SA ones need --share-alike).")
        chosen = [r for name in dict.fromkeys(names) for r in chosen if song_name(r) == name]  # in the order given
    return chosen


def licence_table() -> str:
    lines = ["project | author | licence | used | note", "---|---|---|---|---"]
    for rel, lic in sorted(PROJECTS.items(), key=lambda item: (item[1].use != USE, item[1].use, item[0])):
        used = {USE: "yes", SHARE_ALIKE: "with --share-alike", NEVER: "no"}[lic.use]
        lines.append(f"{song_name(rel)} | {lic.author} | {lic.licence} | {used} | {lic.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="output folder, one sub-folder per song (e.g. data-work/lmms-songs)")
    parser.add_argument("--list", action="store_true",
                        help="print the projects, their licences and whether they are used")
    parser.add_argument("--projects", nargs="+", default=(), metavar="NAME",
                        help="only these projects (file names without extension), in this order")
    parser.add_argument("--share-alike", action="store_true",
                        help="also the CC BY-SA projects (see training/DATA_SOURCES.md)")
    parser.add_argument("--stock-samples", action="store_true",
                        help="keep the tracks that play LMMS stock recordings (provenance unknown; left out by default)")
    parser.add_argument("--jobs", type=int, default=1, help="songs rendered in parallel (each runs one lmms at a time)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget: start no new song after this many minutes (songs in flight finish)")
    parser.add_argument("--max-residual-db", type=float, default=-40.0,
                        help="write a song only if its tracks sum to the whole render within this (dB re the song)")
    parser.add_argument("--max-envelope-db", type=float, default=1.0,
                        help="else (random takes) write it if the tracks' sum follows the song's level within this")
    parser.add_argument("--lmms", default="lmms", help="the lmms executable")
    parser.add_argument("--projects-root", default=str(PROJECTS_ROOT), help="lmms-common's projects folder")
    args = parser.parse_args(argv)
    if args.list:
        print(licence_table())
        return 0
    if not args.out:
        parser.error("--out is required (or --list)")
    if shutil.which(args.lmms) is None:
        raise SystemExit(f"{args.lmms} not found: install it with `sudo training/real/install-data.sh`.")
    root = pathlib.Path(args.projects_root)
    chosen = selected(args.share_alike, args.projects)
    missing = [rel for rel in chosen if not (root / rel).is_file()]
    if missing:
        raise SystemExit(f"{root / missing[0]} not found: install lmms-common (`sudo training/real/install-data.sh`).")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(projects_root=root, renderer=LmmsRenderer(args.lmms), stock_samples=args.stock_samples,
                  max_residual_db=args.max_residual_db, max_envelope_db=args.max_envelope_db)
    started = time.time()
    budget = args.max_minutes * 60 if args.max_minutes else None
    pending = iter(chosen)
    results, failed = [], []
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        running = {}
        while True:
            while len(running) < max(1, args.jobs) and (budget is None or time.time() - started < budget):
                rel = next(pending, None)
                if rel is None:
                    break
                running[pool.submit(render_song, rel, out, **kwargs)] = rel
            if not running:
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                rel = running.pop(future)
                try:
                    info = future.result()
                except (RuntimeError, subprocess.TimeoutExpired) as error:  # one song's failure: say so, go on
                    failed.append(song_name(rel))
                    print(f"{song_name(rel)}: FAILED: {error}", flush=True)
                    continue
                results.append(info)
                state = "written" if info["written"] else f"NOT written ({info['reason']})"
                print(f"{info['song']}: {info['seconds']:.1f} s, residual {info['residual_db']} dB, "
                      f"envelope {info.get('envelope_db')} dB, stems {','.join(info['stems']) or '-'}, "
                      f"{len(info['left_out'])} tracks left out, {state}, rendered in {info['render_seconds']:.0f} s",
                      flush=True)
    skipped = [song_name(rel) for rel in pending]
    per_stem = {stem: sum(r["stems"].get(stem, 0) for r in results) / 60 for stem in STEMS}
    wall = time.time() - started
    print(f"{sum(r['written'] for r in results)} of {len(results)} songs written in {wall / 60:.1f} min; "
          f"minutes per stem: " + ", ".join(f"{s} {m:.1f}" for s, m in per_stem.items()))
    if skipped:
        print(f"not started (budget spent): {', '.join(skipped)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
