"""Procedural song composition: tempo, key, mode, sections, chords and one part list per stem.

Everything is drawn from one ``numpy.random.Generator``, so a song is a pure function of its seed.
Times are in beats (quarter notes); ``Song.seconds(beat)`` converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STEMS = ("vocals", "drums", "bass", "piano", "other")

GM_NAMES = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet", "Celesta", "Glockenspiel",
    "Music Box", "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ",
    "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica",
    "Tango Accordion", "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar",
    "Guitar Harmonics", "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)",
    "Fretless Bass", "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2", "Violin", "Viola",
    "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs",
    "Voice Oohs", "Synth Voice", "Orchestra Hit", "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2", "Soprano Sax", "Alto Sax",
    "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon", "Clarinet", "Piccolo", "Flute",
    "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina", "Lead 1 (square)",
    "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)", "Lead 6 (voice)",
    "Lead 7 (fifths)", "Lead 8 (bass + lead)", "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)",
    "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)",
    "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba",
    "Bagpipe", "Fiddle", "Shanai", "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum",
    "Melodic Tom", "Synth Drum", "Reverse Cymbal", "Guitar Fret Noise", "Breath Noise", "Seashore",
    "Bird Tweet", "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)
DRUM_KITS = {0: "Standard", 8: "Room", 16: "Power", 24: "Electronic", 25: "TR-808", 32: "Jazz", 40: "Brush"}

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
PROGRESSIONS = {  # scale degrees (0 = tonic), one chord per slot
    "major": [(0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0),
              (0, 2, 3, 4), (3, 4, 2, 5), (0, 4, 3, 4), (3, 0, 4, 5), (0, 5, 1, 4), (5, 4, 3, 4)],
    "minor": [(0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (5, 6, 0, 0), (0, 4, 5, 3),
              (0, 5, 3, 4), (0, 2, 6, 3), (3, 0, 6, 4)],
    "dorian": [(0, 3, 0, 3), (0, 6, 3, 0), (0, 1, 3, 0), (0, 3, 6, 4)],
    "mixolydian": [(0, 6, 3, 0), (0, 3, 6, 3), (0, 6, 0, 3), (3, 6, 0, 0)],
}
STYLES = {
    # name: (bpm range, beats per bar choices, drum grooves, swing probability)
    "pop": ((88, 128), (4,), ("rock", "pop", "halftime", "four"), 0.1),
    "rock": ((100, 160), (4,), ("rock", "rock8", "halftime"), 0.05),
    "ballad": ((60, 84), (4, 4, 3), ("ballad", "halftime"), 0.15),
    "dance": ((116, 132), (4,), ("four", "four"), 0.0),
    "funk": ((92, 118), (4,), ("funk", "pop"), 0.3),
    "shuffle": ((84, 124), (4,), ("shuffle",), 1.0),
    "waltz": ((90, 150), (3,), ("waltz",), 0.1),
}
SECTION_ENERGY = {"intro": 0.4, "verse": 0.65, "pre": 0.75, "chorus": 1.0, "bridge": 0.55, "outro": 0.4}

WORDS_1 = (
    "love heart night light sky eyes run home dream fall rise stay go know feel time day way say hold "
    "touch rain sun moon star stars cold burn high low blue gold free wild soul mind dance shine break "
    "wake sleep lost found long gone true fly far near you me we I my your oh yeah la na hey ah ooh "
    "hear see close door road sea wind fade tears smile kiss call want need give take stand wait side "
    "down up through dark bright slow fast lie hope world life deep sweet song sing word hands face "
    "sound beat ride").split()
WORDS_2 = "again alive alone away baby believe tonight open fire forever".split()
WORDS_2 = [w for w in WORDS_2 if w != "forever"]
VOCABLES = "oh ooh ah la na yeah hey".split()

# Voices: (name, lowest, highest MIDI note of the lead melody)
VOICE_RANGES = {"male": (47, 66), "female": (55, 72)}  # Festival cannot sing above ~500 Hz (see vocals.py)


@dataclass
class Note:
    pitch: int
    start: float  # beats
    dur: float  # beats
    vel: int
    syllable: str = ""


@dataclass
class Part:
    name: str
    stem: str
    program: int
    channel: int
    notes: list[Note] = field(default_factory=list)
    bank: int = 0
    pan: int = 64
    volume: int = 100
    controls: list[tuple[float, int, int]] = field(default_factory=list)  # (beat, cc, value)


@dataclass
class Section:
    name: str
    start_bar: int
    bars: int
    chords: list[tuple[float, float, tuple[int, ...]]]  # (start beat, length, pitch classes root first)
    active: set = field(default_factory=set)


@dataclass
class Song:
    bpm: float
    beats_per_bar: int
    tonic: int
    mode: str
    style: str
    swing: float
    sections: list[Section]
    parts: list[Part]
    vocal_phrases: list[list[Note]]  # lead melody, one list per sung phrase, with syllables
    harmony_phrases: list[list[Note]]
    voice: dict
    total_beats: float
    stems_present: dict

    def seconds(self, beat: float) -> float:
        return beat * 60.0 / self.bpm

    def describe(self) -> dict:
        names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
        return {
            "bpm": round(self.bpm, 2),
            "meter": f"{self.beats_per_bar}/4",
            "key": f"{names[self.tonic]} {self.mode}",
            "style": self.style,
            "swing": round(self.swing, 3),
            "sections": [
                {"name": s.name, "start_bar": s.start_bar, "bars": s.bars, "parts": sorted(s.active)}
                for s in self.sections
            ],
            "parts": [
                {
                    "name": p.name,
                    "stem": p.stem,
                    "program": p.program,
                    "instrument": DRUM_KITS.get(p.program, "?") + " kit" if p.bank == 128 else GM_NAMES[p.program],
                    "notes": len(p.notes),
                }
                for p in self.parts
            ],
            "voice": self.voice,
            "lyrics": [" ".join(n.syllable[:-2] if n.syllable.endswith("+1") else n.syllable
                                for n in ph if not n.syllable.endswith("+2")) for ph in self.vocal_phrases],
            "stems_present": self.stems_present,
        }


class Composer:
    def __init__(self, rng: np.random.Generator, seconds: float, absent_scale: float = 1.0):
        self.rng = rng
        self.target_seconds = seconds
        self.absent_scale = absent_scale

    # ------------------------------------------------------------------ helpers
    def choice(self, seq, p=None):
        seq = list(seq)
        if p is not None:
            p = np.asarray(p, float)
            p = p / p.sum()
        return seq[int(self.rng.choice(len(seq), p=p))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def warp(self, beat: float) -> float:
        """Swing: delays off-beat eighths (piecewise-linear time warp inside each beat)."""
        if self.swing <= 0.5:
            return beat
        whole = np.floor(beat + 1e-9)
        frac = beat - whole
        s = self.swing
        frac = frac * (s / 0.5) if frac < 0.5 else s + (frac - 0.5) * (1 - s) / 0.5
        return float(whole + frac)

    def add(self, part: Part, pitch: int, start: float, dur: float, vel: float, jitter: float = 0.01) -> Note:
        t0 = self.warp(start)
        t1 = self.warp(start + dur)
        t0 += float(self.rng.normal(0, jitter)) if jitter else 0.0
        note = Note(int(pitch), max(0.0, t0), max(0.05, t1 - t0), int(np.clip(vel + self.rng.normal(0, 6), 1, 127)))
        part.notes.append(note)
        return note

    def scale_pc(self, degree: int) -> int:
        scale = SCALES[self.mode]
        octave, idx = divmod(degree, 7)
        return (self.tonic + scale[idx] + 12 * octave) % 12

    def chord_pcs(self, degree: int, seventh: bool) -> tuple[int, ...]:
        pcs = [self.scale_pc(degree + 2 * i) for i in range(4 if seventh else 3)]
        if self.mode == "minor" and degree % 7 == 4 and self.harmonic_minor:
            pcs[1] = (pcs[1] + 1) % 12  # major V in minor
        return tuple(pcs)

    def in_scale(self, pitch: int) -> bool:
        return (pitch - self.tonic) % 12 in SCALES[self.mode]

    def scale_step(self, pitch: int, steps: int) -> int:
        """Move ``steps`` scale degrees from a (scale) pitch."""
        p = pitch
        direction = 1 if steps > 0 else -1
        for _ in range(abs(steps)):
            p += direction
            while not self.in_scale(p):
                p += direction
        return p

    def chord_at(self, beat: float) -> tuple[int, ...]:
        for section in self.sections:
            for start, length, pcs in section.chords:
                if start <= beat < start + length:
                    return pcs
        return self.sections[-1].chords[-1][2]

    @staticmethod
    def nearest(pitch_class: int, around: float) -> int:
        base = int(round(around)) - 6
        return base + ((pitch_class - base) % 12)

    # ------------------------------------------------------------------ song
    def compose(self) -> Song:
        rng = self.rng
        self.style = self.choice(STYLES, p=[0.3, 0.2, 0.12, 0.12, 0.1, 0.08, 0.08])
        bpm_range, meters, grooves, swing_p = STYLES[self.style]
        self.bpm = float(rng.uniform(*bpm_range))
        self.bpb = int(self.choice(meters))
        self.groove = self.choice(grooves)
        self.swing = float(rng.uniform(0.58, 0.67)) if self.chance(swing_p) else 0.5
        self.tonic = int(rng.integers(12))
        self.mode = self.choice(["major", "minor", "dorian", "mixolydian"], p=[0.5, 0.36, 0.07, 0.07])
        self.harmonic_minor = self.chance(0.5)
        self.sevenths = self.chance(0.35 if self.style in ("funk", "ballad", "shuffle") else 0.15)
        self.total_beats = self.target_seconds * self.bpm / 60.0
        total_bars = int(np.ceil(self.total_beats / self.bpb))
        self.plan_sections(total_bars)
        present = {
            "vocals": not self.chance(0.05 * self.absent_scale),
            "drums": not self.chance((0.25 if self.style == "ballad" else 0.04) * self.absent_scale),
            "bass": not self.chance(0.06 * self.absent_scale),
            "piano": not self.chance(0.2 * self.absent_scale),
            "other": not self.chance(0.03 * self.absent_scale),
        }
        if not any(present[s] for s in ("piano", "other")):
            present["other"] = True
        self.present = present
        self.arrange()
        parts: list[Part] = []
        self.vocal_phrases, self.harmony_phrases, self.voice = [], [], {}
        if present["drums"]:
            parts.append(self.drums())
        if present["bass"]:
            parts.append(self.bass())
        if present["piano"]:
            parts.append(self.piano())
        if present["other"]:
            parts.extend(self.other())
        if present["vocals"]:
            self.vocals()
            choir = self.choir()
            if choir is not None:
                parts.append(choir)
        return Song(self.bpm, self.bpb, self.tonic, self.mode, self.style, self.swing, self.sections, parts,
                    self.vocal_phrases, self.harmony_phrases, self.voice, self.total_beats, present)

    def plan_sections(self, total_bars: int) -> None:
        rng = self.rng
        if total_bars < 6:
            plan = [("chorus", total_bars)]
        else:
            v = 8 if self.bpm < 130 or self.chance(0.3) else 16
            v = 4 if self.chance(0.25) else v
            c = 8 if self.chance(0.8) else 4
            template = [("intro", self.choice([2, 4, 4])), ("verse", v)]
            if self.chance(0.3):
                template.append(("pre", 4))
            template += [("chorus", c), ("verse", v), ("chorus", c), ("bridge", self.choice([4, 8])), ("chorus", c)]
            template += [("verse", v), ("chorus", c), ("chorus", c), ("bridge", 4)] * 4  # long/fast songs
            if self.chance(0.3):  # start somewhere later in the song
                template = template[int(rng.integers(1, 4)):]
            if self.chance(0.2):
                template = template[1:] if template[0][0] == "intro" else template
            outro = int(self.choice([0, 2, 4, 4])) if total_bars >= 16 else 0
            plan, used = [], 0
            for name, bars in template:
                if used >= total_bars - outro:
                    break
                bars = min(bars, total_bars - outro - used)
                plan.append((name, bars))
                used += bars
            if used < total_bars:
                plan.append(("outro", total_bars - used))
            if len(plan) > 1 and plan[-1][1] < 2:
                name, bars = plan.pop()
                plan[-1] = (plan[-1][0], plan[-1][1] + bars)
        progs: dict[str, tuple[list, int]] = {}
        self.sections = []
        bar = 0
        for name, bars in plan:
            key = {"intro": "verse", "outro": "chorus", "pre": "bridge"}.get(name, name)
            if key not in progs:
                prog = list(self.choice(PROGRESSIONS[self.mode]))
                per_bar = 2 if (self.chance(0.2) and self.bpb == 4) else 1
                if name == "bridge" and self.chance(0.5):
                    prog = [(d + 3) % 7 for d in prog]
                progs[key] = (prog, per_bar)
            prog, per_bar = progs[key]
            length = self.bpb / per_bar
            chords = []
            for i in range(bars * per_bar):
                degree = prog[i % len(prog)]
                chords.append((bar * self.bpb + i * length, length, self.chord_pcs(degree, self.sevenths)))
            self.sections.append(Section(name, bar, bars, chords))
            bar += bars

    def arrange(self) -> None:
        short = len(self.sections) == 1
        self.other_roles = self.pick_other_roles()
        probs = {
            "drums": {"intro": 0.45, "verse": 0.9, "pre": 0.95, "chorus": 1.0, "bridge": 0.6, "outro": 0.6},
            "bass": {"intro": 0.4, "verse": 0.92, "pre": 0.95, "chorus": 1.0, "bridge": 0.7, "outro": 0.7},
            "piano": {"intro": 0.7, "verse": 0.85, "pre": 0.8, "chorus": 0.85, "bridge": 0.85, "outro": 0.8},
            "vocals": {"intro": 0.0, "verse": 1.0, "pre": 1.0, "chorus": 1.0, "bridge": 0.6, "outro": 0.25},
        }
        role_probs = {
            "pad": {"intro": 0.6, "verse": 0.4, "pre": 0.7, "chorus": 0.9, "bridge": 0.8, "outro": 0.7},
            "guitar": {"intro": 0.5, "verse": 0.8, "pre": 0.8, "chorus": 0.95, "bridge": 0.5, "outro": 0.6},
            "lead": {"intro": 0.8, "verse": 0.25, "pre": 0.4, "chorus": 0.5, "bridge": 0.8, "outro": 0.7},
            "stabs": {"intro": 0.3, "verse": 0.3, "pre": 0.6, "chorus": 0.9, "bridge": 0.4, "outro": 0.4},
            "arp": {"intro": 0.7, "verse": 0.6, "pre": 0.7, "chorus": 0.7, "bridge": 0.6, "outro": 0.6},
        }
        for s in self.sections:
            if short:
                s.active = {"drums", "bass", "piano", "vocals", "choir"} | {f"other{i}" for i in range(len(self.other_roles))}
                continue
            for stem, p in probs.items():
                if self.chance(p[s.name]):
                    s.active.add(stem)
            if s.name == "chorus":
                s.active.add("choir")
            for i, role in enumerate(self.other_roles):
                if self.chance(role_probs[role][s.name]):
                    s.active.add(f"other{i}")
        # every present stem plays somewhere
        for stem in ("drums", "bass", "piano", "vocals"):
            if not any(stem in s.active for s in self.sections):
                best = max(self.sections, key=lambda s: (SECTION_ENERGY[s.name], s.bars))
                best.active.add(stem)
        for i in range(len(self.other_roles)):
            if not any(f"other{i}" in s.active for s in self.sections):
                max(self.sections, key=lambda s: s.bars).active.add(f"other{i}")

    def pick_other_roles(self) -> list[str]:
        n = int(self.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
        roles = ["pad", "guitar", "lead", "stabs", "arp"]
        weights = [0.3, 0.3, 0.2, 0.1, 0.1]
        if self.style == "rock":
            weights = [0.15, 0.5, 0.2, 0.05, 0.1]
        picked = list(self.rng.choice(roles, size=n, replace=False, p=weights))
        return [str(r) for r in picked]

    def section_beats(self, section: Section) -> tuple[float, float]:
        start = section.start_bar * self.bpb
        end = min((section.start_bar + section.bars) * self.bpb, self.total_beats + self.bpb)
        return start, end

    # ------------------------------------------------------------------ drums
    def drums(self) -> Part:
        kit = self.choice(list(DRUM_KITS), p=[0.35, 0.15, 0.12, 0.08, 0.1, 0.1, 0.1])
        if self.style == "dance":
            kit = self.choice([24, 25, 0, 16])
        if self.groove in ("ballad", "shuffle") and self.chance(0.4):
            kit = self.choice([32, 40])
        part = Part("drums", "drums", kit, 9, bank=128, volume=110)
        grid = 4  # steps per beat (16ths)
        steps = self.bpb * grid
        g = self.groove
        pat: dict[int, list[tuple[int, float]]] = {}  # drum note -> [(step, velocity)]
        hat = self.choice([42, 42, 44]) if g not in ("shuffle",) else 42
        if self.bpb == 3:
            pat = {36: [(0, 110)], 38: [(4, 90), (8, 90)] if self.chance(0.5) else [(8, 95)],
                   hat: [(s, 70) for s in range(0, steps, 2)]}
        elif g == "rock":
            kicks = self.choice([[0, 8], [0, 6, 8], [0, 8, 10], [0, 7, 8, 14]])
            pat = {36: [(k, 110) for k in kicks], 38: [(4, 110), (12, 110)], hat: [(s, 80 if s % 4 == 0 else 62) for s in range(0, steps, 2)]}
        elif g == "rock8":
            pat = {36: [(0, 115), (2, 90), (8, 115), (10, 95)], 38: [(4, 115), (12, 115)],
                   hat: [(s, 90 if s % 4 == 0 else 75) for s in range(0, steps, 2)]}
        elif g == "pop":
            kicks = self.choice([[0, 10], [0, 3, 8], [0, 6, 10], [0, 8, 11]])
            pat = {36: [(k, 108) for k in kicks], 38: [(4, 105), (12, 105)],
                   hat: [(s, 75 if s % 2 == 0 else 50) for s in range(0, steps)] if self.chance(0.5)
                   else [(s, 75 if s % 4 == 0 else 60) for s in range(0, steps, 2)]}
            if self.chance(0.4):
                pat[39] = [(4, 80), (12, 80)]  # claps
        elif g == "halftime":
            pat = {36: [(0, 110), (self.choice([6, 10, 11]), 95)], 38: [(8, 112)],
                   hat: [(s, 70 if s % 4 == 0 else 55) for s in range(0, steps, 2)]}
        elif g == "four":
            pat = {36: [(s, 115) for s in range(0, steps, 4)], self.choice([38, 39]): [(4, 100), (12, 100)],
                   42: [(s, 60) for s in range(0, steps, 2) if s % 4 == 0] + [(s, 45) for s in range(1, steps, 2)],
                   46: [(s, 80) for s in range(2, steps, 4)]}
        elif g == "funk":
            pat = {36: [(0, 112), (3, 95), (10, 105)], 38: [(4, 112), (12, 112), (7, 40), (9, 38), (15, 42)],
                   42: [(s, 75 if s % 4 == 0 else 50) for s in range(steps)]}
        elif g == "ballad":
            pat = {36: [(0, 95), (10, 80)], self.choice([37, 38]): [(4, 80), (12, 85)],
                   self.choice([42, 51]): [(s, 60 if s % 4 == 0 else 45) for s in range(0, steps, 2)]}
        elif g == "shuffle":
            pat = {36: [(0, 105), (8, 100)], 38: [(4, 105), (12, 105)],
                   self.choice([42, 51]): [(s, 80 if s % 4 == 0 else 60) for s in range(0, steps, 2)]}
        ride_chorus = self.chance(0.35)
        perc = self.choice([None, 54, 70, 69, 56], p=[0.6, 0.15, 0.12, 0.08, 0.05])
        fill_p = float(self.rng.uniform(0.3, 0.9))
        for si, section in enumerate(self.sections):
            if "drums" not in section.active:
                continue
            start, end = self.section_beats(section)
            energy = SECTION_ENERGY[section.name]
            sparse = section.name in ("intro", "bridge", "outro") and self.chance(0.5)
            for bar in range(section.bars):
                b0 = start + bar * self.bpb
                if b0 >= end:
                    break
                last_bar = bar == section.bars - 1
                fill = last_bar and section.bars >= 2 and self.chance(fill_p) and si < len(self.sections) - 1
                fill_from = steps - self.choice([4, 8]) if fill else steps
                for drum, hits in pat.items():
                    if sparse and drum not in (36, 42, 44, 51, 37):
                        continue
                    d = drum
                    if section.name == "chorus" and ride_chorus and drum in (42, 44):
                        d = 51
                    for step, vel in hits:
                        if step >= fill_from:
                            continue
                        if drum in (42, 44, 46, 51) and sparse and step % 4:
                            continue
                        self.add(part, d, b0 + step / grid, 0.25, vel * (0.8 + 0.25 * energy), jitter=0.006)
                if perc is not None and section.name in ("chorus", "pre", "verse") and energy > 0.6:
                    for s in range(2, steps, 4):
                        self.add(part, perc, b0 + s / grid, 0.25, 70, jitter=0.006)
                if fill:
                    toms = self.choice([[50, 48, 47, 45, 43, 41], [38, 38, 48, 45, 43, 41], [48, 47, 45, 43]])
                    n = steps - fill_from
                    for i in range(n):
                        drum = toms[min(len(toms) - 1, i * len(toms) // n)]
                        self.add(part, drum, b0 + (fill_from + i) / grid, 0.25, 85 + 25 * i / n, jitter=0.006)
                if bar == 0 and (section.name in ("chorus", "bridge", "outro") or (si > 0 and self.chance(0.5))):
                    self.add(part, self.choice([49, 57, 49, 55, 52], p=[0.4, 0.3, 0.1, 0.1, 0.1]), b0, 1.0, 110)
                    if 36 in pat:
                        self.add(part, 36, b0, 0.25, 115, jitter=0)
        return part

    # ------------------------------------------------------------------ bass
    def bass(self) -> Part:
        programs = [32, 33, 34, 35, 36, 37, 38, 39]
        weights = [0.1, 0.3, 0.15, 0.1, 0.05, 0.05, 0.13, 0.12]
        if self.style == "dance":
            weights = [0, 0.1, 0.05, 0, 0, 0.05, 0.4, 0.4]
        program = self.choice(programs, p=weights)
        part = Part("bass", "bass", program, 0, volume=110)
        pattern = self.choice(["whole", "pulse8", "root5", "octave", "syncop", "walking", "quarters"],
                              p=[0.1, 0.2, 0.17, 0.1, 0.18, 0.1, 0.15])
        if self.style == "dance":
            pattern = self.choice(["octave", "pulse8", "syncop"])
        if self.style == "ballad":
            pattern = self.choice(["whole", "root5", "quarters"])
        if self.style == "shuffle":
            pattern = self.choice(["walking", "root5", "quarters"])
        low = int(self.rng.integers(28, 34))
        for section in self.sections:
            if "bass" not in section.active:
                continue
            _, end = self.section_beats(section)
            pat = pattern if section.name != "intro" or self.chance(0.5) else "whole"
            for ci, (start, length, pcs) in enumerate(section.chords):
                if start >= end:
                    break
                root = low + (pcs[0] - low) % 12
                fifth = root + 7
                nxt = section.chords[ci + 1][2][0] if ci + 1 < len(section.chords) else pcs[0]
                nxt_root = low + (nxt - low) % 12
                if pat == "whole":
                    self.add(part, root, start, length * 0.95, 100)
                elif pat == "pulse8":
                    for i in range(int(length * 2)):
                        self.add(part, root, start + i / 2, 0.4, 100 if i % 2 == 0 else 85)
                elif pat == "quarters":
                    for i in range(int(length)):
                        self.add(part, root, start + i, 0.85, 100)
                elif pat == "root5":
                    half = length / 2
                    self.add(part, root, start, half * 0.9, 105)
                    self.add(part, fifth if fifth <= 52 else fifth - 12, start + half, half * 0.9, 95)
                elif pat == "octave":
                    for i in range(int(length * 2)):
                        self.add(part, root + (12 if i % 2 else 0), start + i / 2, 0.35, 105 if i % 2 == 0 else 90)
                elif pat == "syncop":
                    for off, d in ((0, 1.2), (1.5, 0.5), (2.5, 0.4), (3, 0.5)):
                        if off < length:
                            self.add(part, root if off < 3 else self.choice([root, fifth, root + 12]), start + off, min(d, length - off), 100)
                    if length >= 4 and nxt_root != root:
                        self.add(part, nxt_root + self.choice([-1, 1, -2]), start + length - 0.5, 0.45, 90)
                elif pat == "walking":
                    tones = [root, low + (pcs[1] - low) % 12, fifth, low + (pcs[2] - low) % 12]
                    for i in range(int(length)):
                        if i == int(length) - 1 and nxt_root != root:
                            p = nxt_root + self.choice([-1, 1])
                        else:
                            p = tones[i % len(tones)] if i else root
                        self.add(part, p, start + i, 0.9, 100 if i == 0 else 88)
        return part

    # ------------------------------------------------------------------ piano / keys
    def voicing(self, pcs, prev, low=55, high=76, n=None):
        n = n or len(pcs)
        pcs = list(pcs)[:n]
        best, best_cost = None, None
        for inv in range(len(pcs)):
            order = pcs[inv:] + pcs[:inv]
            base = low + (order[0] - low) % 12
            notes = [base]
            for pc in order[1:]:
                p = notes[-1] + 1
                p += (pc - p) % 12
                notes.append(p)
            if notes[-1] > high + 2:
                notes = [x - 12 for x in notes] if notes[0] - 12 >= low - 5 else notes
            cost = 0 if prev is None else sum(abs(a - b) for a, b in zip(sorted(notes), sorted(prev)))
            cost += 0.5 * abs(np.mean(notes) - (low + high) / 2)
            if best_cost is None or cost < best_cost:
                best, best_cost = notes, cost
        return best

    def piano(self) -> Part:
        program = self.choice([0, 1, 2, 3, 4, 5], p=[0.4, 0.15, 0.1, 0.05, 0.2, 0.1])
        part = Part("piano", "piano", program, 1, volume=100)
        style = self.choice(["block", "arpeggio", "ballad", "syncop", "stabs", "alberti"],
                            p=[0.22, 0.2, 0.18, 0.2, 0.1, 0.1])
        if self.style == "ballad":
            style = self.choice(["arpeggio", "ballad", "block"])
        if self.bpb == 3:
            style = self.choice(["waltz", "arpeggio"])
        prev = None
        for section in self.sections:
            if "piano" not in section.active:
                continue
            _, end = self.section_beats(section)
            energy = SECTION_ENERGY[section.name]
            vel = 70 + 30 * energy
            for start, length, pcs in section.chords:
                if start >= end:
                    break
                v = self.voicing(pcs, prev)
                prev = v
                root = 36 + (pcs[0] - 36) % 12
                if style == "block":
                    for i in range(int(length)):
                        for p in v:
                            self.add(part, p, start + i, 0.9, vel - (10 if i % 2 else 0), jitter=0.004)
                    self.add(part, root, start, length * 0.95, vel)
                elif style == "arpeggio":
                    seq = [root, root + 7] + v + [v[0] + 12]
                    up_down = seq + seq[-2:0:-1]
                    for i in range(int(length * 2)):
                        self.add(part, up_down[i % len(up_down)], start + i / 2, 0.9, vel - 10)
                elif style == "ballad":
                    self.add(part, root, start, length * 0.95, vel)
                    self.add(part, root + 7 if root + 7 < v[0] else root + 12, start + length / 2, length / 2 * 0.9, vel - 15)
                    for off in (0, length / 2 + (0.5 if self.chance(0.5) else 0)):
                        for p in v:
                            self.add(part, p, start + off, length / 2 * 0.9, vel - 12, jitter=0.004)
                elif style == "syncop":
                    for off, d in ((0, 1.4), (1.5, 1.0), (3.0, 0.9)):
                        if off < length:
                            for p in v:
                                self.add(part, p, start + off, min(d, length - off), vel - 5, jitter=0.004)
                    self.add(part, root, start, length * 0.9, vel)
                elif style == "stabs":
                    for i in range(int(length)):
                        for p in v:
                            self.add(part, p, start + i + 0.5, 0.3, vel, jitter=0.003)
                    self.add(part, root, start, 0.9, vel)
                elif style == "alberti":
                    lo = [x - 12 for x in v]
                    seq = [lo[0], lo[-1], lo[1 % len(lo)], lo[-1]]
                    for i in range(int(length * 2)):
                        self.add(part, seq[i % 4], start + i / 2, 0.5, vel - 15)
                    for p in v:
                        self.add(part, p + 12 if p + 12 < 84 else p, start, length * 0.9, vel - 10, jitter=0.004)
                elif style == "waltz":
                    self.add(part, root, start, 0.95, vel)
                    for i in range(1, int(length)):
                        for p in v:
                            self.add(part, p, start + i, 0.8, vel - 15, jitter=0.004)
        # sustain pedal, half the time, per chord
        if program in (0, 1, 2, 3, 4, 5) and style in ("arpeggio", "ballad", "alberti") and self.chance(0.6):
            for section in self.sections:
                for start, length, _ in section.chords:
                    part.controls.append((self.warp(start) + 0.02, 64, 127))
                    part.controls.append((self.warp(start + length) - 0.03, 64, 0))
        return part

    # ------------------------------------------------------------------ other (guitars, strings, synths, ...)
    ROLE_PROGRAMS = {
        "pad": [48, 49, 50, 51, 89, 88, 90, 94, 95, 16, 19, 20, 92, 44, 21],
        "guitar": [24, 25, 26, 27, 28, 29, 30],
        "lead": [80, 81, 56, 73, 65, 66, 40, 11, 71, 68, 22, 64, 84, 87, 74, 79, 105, 104, 57, 60],
        "stabs": [61, 62, 63, 18, 17, 16, 7, 6, 59],
        "arp": [46, 45, 12, 11, 10, 108, 8, 9, 81, 80, 15, 13],
    }

    def other(self) -> list[Part]:
        parts = []
        channel = 2
        for i, role in enumerate(self.other_roles):
            program = self.choice(self.ROLE_PROGRAMS[role])
            if self.style == "rock" and role == "guitar":
                program = self.choice([29, 30, 27, 25])
            part = Part(f"other{i}:{role}", "other", int(program), channel,
                        pan=int(np.clip(64 + self.rng.normal(0, 30), 5, 122)), volume=int(self.rng.integers(85, 115)))
            channel += 1
            getattr(self, f"role_{role}")(part, f"other{i}")
            parts.append(part)
        if not any(p.notes for p in parts):
            part = Part("other-pad", "other", 48, channel, volume=100)
            self.role_pad(part, "other0")
            parts.append(part)
        return parts

    def sections_with(self, key):
        for section in self.sections:
            if key in section.active:
                start, end = self.section_beats(section)
                yield section, start, end

    def role_pad(self, part: Part, key: str) -> None:
        prev = None
        lo = int(self.rng.integers(50, 62))
        for section, _, end in self.sections_with(key):
            vel = 60 + 30 * SECTION_ENERGY[section.name]
            for start, length, pcs in section.chords:
                if start >= end:
                    break
                v = self.voicing(pcs, prev, low=lo, high=lo + 18)
                prev = v
                for p in v:
                    self.add(part, p, start, length * 0.98, vel, jitter=0.0)
                part.controls.append((self.warp(start), 1, int(self.rng.integers(0, 50))))

    def role_guitar(self, part: Part, key: str) -> None:
        distorted = part.program in (29, 30)
        pattern = self.choice(["strum", "arp", "power8", "offbeat"], p=[0.4, 0.25, 0.2, 0.15])
        if distorted:
            pattern = self.choice(["power8", "strum", "power_whole"])
        if part.program == 28:
            pattern = self.choice(["power8", "offbeat", "arp"])
        strum_rhythm = self.choice([[(0, 1), (1, 1), (2, 1), (3, 1)], [(0, 1.5), (1.5, 1), (2.5, 0.5), (3, 1)],
                                    [(0, 0.5), (0.5, 0.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3.5, 0.5)], [(0, 2), (2, 2)]])
        for section, _, end in self.sections_with(key):
            vel = 70 + 35 * SECTION_ENERGY[section.name]
            for start, length, pcs in section.chords:
                if start >= end:
                    break
                root = 40 + (pcs[0] - 40) % 12
                shape = [root, root + 7, root + 12] + [self.nearest(pc, root + 16) for pc in pcs[1:3]] + [root + 19]
                shape = sorted(set(shape))
                if pattern in ("power8", "power_whole"):
                    power = [root, root + 7, root + 12]
                    if pattern == "power8":
                        for i in range(int(length * 2)):
                            for p in power:
                                self.add(part, p, start + i / 2, 0.3, vel, jitter=0.003)
                    else:
                        for p in power:
                            self.add(part, p, start, length * 0.95, vel, jitter=0.003)
                elif pattern == "strum":
                    for off, d in strum_rhythm:
                        if off >= length:
                            continue
                        down = int(off * 2) % 2 == 0
                        order = shape if down else shape[::-1]
                        for j, p in enumerate(order):
                            self.add(part, p, start + off + j * 0.025, min(d, length - off) * 0.95, vel - (0 if down else 12), jitter=0.003)
                elif pattern == "arp":
                    seq = shape + shape[-2:0:-1]
                    for i in range(int(length * 2)):
                        self.add(part, seq[i % len(seq)], start + i / 2, 0.8, vel - 10)
                elif pattern == "offbeat":
                    for i in range(int(length)):
                        for p in shape[2:]:
                            self.add(part, p, start + i + 0.5, 0.25, vel, jitter=0.003)

    def melody_line(self, start: float, end: float, lo: int, hi: int, density: float) -> list[tuple[float, float, int]]:
        """A simple scale melody with chord tones on strong beats: (beat, dur, pitch)."""
        out = []
        t = start
        pitch = self.nearest(self.chord_at(start)[0], (lo + hi) / 2)
        durs = [0.5, 1.0, 1.5, 2.0]
        w = [0.35 * density, 0.35, 0.15, 0.15]
        while t < end - 0.25:
            d = float(self.choice(durs, p=w))
            d = min(d, end - t)
            if self.chance(0.12):
                t += d
                continue
            if abs((t % 2)) < 1e-6:
                chord = self.chord_at(t)
                pitch = min((self.nearest(pc, pitch) for pc in chord), key=lambda p: abs(p - pitch))
            else:
                pitch = self.scale_step(pitch if self.in_scale(pitch) else pitch + 1,
                                        int(self.choice([-2, -1, 1, 2, 0, 3, -3], p=[0.15, 0.3, 0.3, 0.12, 0.05, 0.04, 0.04])))
            while pitch > hi:
                pitch -= 12
            while pitch < lo:
                pitch += 12
            out.append((t, d, pitch))
            t += d
        return out

    def role_lead(self, part: Part, key: str) -> None:
        lo = int(self.rng.integers(60, 72))
        for section, start, end in self.sections_with(key):
            vel = 75 + 30 * SECTION_ENERGY[section.name]
            vocal = "vocals" in section.active and self.present["vocals"]
            # with vocals: answer phrases in the gaps (second half of every 4 bars); without: full melody
            span = 4 * self.bpb
            for s0 in np.arange(start, end, span):
                s0 = float(s0)
                a, b = (s0 + span / 2 + 1, min(s0 + span, end)) if vocal else (s0, min(s0 + span, end))
                if b - a < 2:  # too short to answer the vocal: play through
                    a, b = s0, min(s0 + span, end)
                for t, d, p in self.melody_line(a, b, lo, lo + 16, 0.8 if vocal else 1.0):
                    self.add(part, p, t, d * 0.92, vel)
            part.controls.append((self.warp(start), 1, int(self.rng.integers(0, 60))))

    def role_stabs(self, part: Part, key: str) -> None:
        rhythm = self.choice([[0, 2.5], [1.5, 3.5], [0.5, 1.5, 2.5, 3.5], [0, 0.75, 2.5]])
        prev = None
        for section, _, end in self.sections_with(key):
            vel = 80 + 30 * SECTION_ENERGY[section.name]
            for start, length, pcs in section.chords:
                if start >= end:
                    break
                v = self.voicing(pcs, prev, low=58, high=78)
                prev = v
                for off in rhythm:
                    if off < length:
                        for p in v:
                            self.add(part, p, start + off, 0.35, vel, jitter=0.003)

    def role_arp(self, part: Part, key: str) -> None:
        rate = self.choice([0.5, 0.25, 1.0 / 3.0 if self.bpb == 3 else 0.5])
        lo = int(self.rng.integers(60, 72))
        for section, _, end in self.sections_with(key):
            vel = 65 + 30 * SECTION_ENERGY[section.name]
            for start, length, pcs in section.chords:
                if start >= end:
                    break
                tones = sorted(self.nearest(pc, lo + 5) for pc in pcs)
                tones = tones + [t + 12 for t in tones]
                seq = tones if self.chance(0.7) else tones + tones[-2:0:-1]
                for i in range(int(round(length / rate))):
                    self.add(part, seq[i % len(seq)], start + i * rate, rate * 1.5, vel, jitter=0.003)

    # ------------------------------------------------------------------ vocals
    def vocals(self) -> None:
        gender = self.choice(["male", "female"])
        lo, hi = VOICE_RANGES[gender]
        shift = int(self.rng.integers(-2, 3))
        lo, hi = lo + shift, hi + shift
        # Festival resynthesis: formant scale k (see vocals.py); >1 brighter / smaller vocal tract
        k = float(self.rng.uniform(0.9, 1.04) if gender == "male" else self.rng.uniform(1.05, 1.22))
        self.voice = {
            "engine": "festival-singing (kal_diphone)",
            "gender": gender,
            "range": [lo, hi],
            "formant_scale": round(k, 3),
            "vibrato_hz": round(float(self.rng.uniform(4.6, 6.4)), 2),
            "vibrato_cents": round(float(self.rng.uniform(25, 70)), 1),
            "harmony": bool(self.chance(0.45)),
            "harmony_formant_scale": round(float(np.clip(k * self.rng.uniform(0.93, 1.08), 0.88, 1.25)), 3),
            "double": bool(self.chance(0.25)),
            "breaths": bool(self.chance(0.5)),
        }
        vocab = VOCABLES if self.chance(0.12) else WORDS_1
        motifs: dict[str, list] = {}
        for section in self.sections:
            if "vocals" not in section.active:
                continue
            start, end = self.section_beats(section)
            phrase_bars = 2 if (self.bpm >= 90 or self.chance(0.5)) else 1
            if self.bpb == 3:
                phrase_bars *= 2
            span = phrase_bars * self.bpb
            center = (lo + hi) / 2 + (3 if section.name == "chorus" else (-2 if section.name == "verse" else 0))
            n_phr = int(np.ceil((end - start) / span))
            for j in range(n_phr):
                p0 = start + j * span
                if p0 >= min(end, self.total_beats - 0.5):
                    break
                motif_key = f"{section.name}{j % 2 if j % 4 != 3 else 'b'}"
                if motif_key not in motifs or self.chance(0.3):
                    motifs[motif_key] = self.vocal_rhythm(span, section.name)
                rhythm = motifs[motif_key]
                phrase = []
                pitch = self.nearest(self.chord_at(p0)[self.choice([0, 1, 2])], center)
                for idx, (off, dur) in enumerate(rhythm):
                    t = p0 + off
                    if t >= min(end, self.total_beats) - 0.25:
                        break
                    strong = abs(off % 1) < 1e-6 and int(off) % 2 == 0
                    if strong or idx == len(rhythm) - 1:
                        chord = self.chord_at(t)
                        pitch = min((self.nearest(pc, pitch) for pc in chord), key=lambda p: abs(p - pitch) + 0.3 * abs(p - center))
                    else:
                        step = int(self.choice([-2, -1, 1, 2, 0, 3, -3, 4], p=[0.14, 0.28, 0.28, 0.12, 0.08, 0.04, 0.04, 0.02]))
                        if pitch > center + 4:
                            step = -abs(step)
                        elif pitch < center - 4:
                            step = abs(step)
                        pitch = self.scale_step(pitch if self.in_scale(pitch) else pitch - 1, step)
                    pitch = int(np.clip(pitch, lo, hi))
                    phrase.append(Note(pitch, t, dur, 100))
                if not phrase:
                    continue
                self.assign_syllables(phrase, vocab)
                # swing + slight humanisation of the sung timing
                for n in phrase:
                    t0, t1 = self.warp(n.start), self.warp(n.start + n.dur)
                    n.start, n.dur = t0, t1 - t0
                self.vocal_phrases.append(phrase)
                if self.voice["harmony"] and section.name in ("chorus", "outro", "pre"):
                    steps = 2 if max(n.pitch for n in phrase) + 4 <= hi else -2
                    harm = []
                    for n in phrase:
                        p = n.pitch if self.in_scale(n.pitch) else n.pitch - 1
                        harm.append(Note(self.scale_step(p, steps), n.start, n.dur, 90, n.syllable))
                    self.harmony_phrases.append(harm)

    def vocal_rhythm(self, span: float, section: str) -> list[tuple[float, float]]:
        """Onsets/durations (beats) of one sung phrase, ending with a breath of >= 1 beat."""
        singable = span - float(self.choice([1.0, 1.5, 2.0]))
        t = float(self.choice([0.0, 0.0, 0.5, 1.0]))
        out = []
        durs = [0.5, 1.0, 1.5, 2.0, 0.25]
        w = [0.42, 0.3, 0.1, 0.08, 0.1] if section != "chorus" else [0.3, 0.35, 0.12, 0.18, 0.05]
        while t < singable - 0.2:
            d = min(float(self.choice(durs, p=w)), singable - t)
            if d < 0.25:
                break
            out.append((t, d))
            t += d
        if out:  # last note of a phrase is held
            t_last, d_last = out[-1]
            out[-1] = (t_last, max(d_last, min(2.0, span - t_last - 0.5)))
        return out

    def assign_syllables(self, phrase: list[Note], vocab: list[str]) -> None:
        i = 0
        while i < len(phrase):
            if i + 1 < len(phrase) and vocab is WORDS_1 and self.chance(0.15):
                word = self.choice(WORDS_2)
                phrase[i].syllable = word + "+1"  # first syllable of a two-note word
                phrase[i + 1].syllable = word + "+2"
                i += 2
                continue
            phrase[i].syllable = self.choice(vocab)
            i += 1

    def choir(self) -> Part | None:
        """Backing 'aahs/oohs' from the SoundFont choir patches in choruses (part of the vocal stem)."""
        if not self.chance(0.45):
            return None
        program = self.choice([52, 53, 54], p=[0.45, 0.4, 0.15])
        part = Part("backing-choir", "vocals", program, 4, volume=int(self.rng.integers(70, 100)))
        lo = VOICE_RANGES[self.voice["gender"]][0] + 2
        prev = None
        for section, _, end in self.sections_with("choir"):
            if "vocals" not in section.active and section.name != "chorus":
                continue
            for start, length, pcs in section.chords:
                if start >= end:
                    break
                v = self.voicing(pcs[:3], prev, low=lo, high=lo + 14)
                prev = v
                for p in v:
                    self.add(part, p, start, length * 0.97, 80, jitter=0.0)
        return part if part.notes else None
