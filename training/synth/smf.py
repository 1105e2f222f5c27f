"""Minimal Standard MIDI File (SMF format 0) writer: no third-party dependency.

Notes are given in beats (quarter notes); the file uses one constant tempo.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

TICKS_PER_BEAT = 480


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity."""
    value = int(value)
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


@dataclass
class MidiTrack:
    """Events for one SMF (all channels merged, format 0)."""

    bpm: float
    events: list[tuple[int, int, bytes]] = field(default_factory=list)  # (tick, order, data)

    def _tick(self, beat: float) -> int:
        return max(0, int(round(beat * TICKS_PER_BEAT)))

    def program(self, channel: int, program: int, beat: float = 0.0, bank: int = 0) -> None:
        tick = self._tick(beat)
        self.events.append((tick, 0, bytes([0xB0 | channel, 0, bank & 0x7F])))
        self.events.append((tick, 0, bytes([0xB0 | channel, 32, 0])))
        self.events.append((tick, 1, bytes([0xC0 | channel, program & 0x7F])))

    def control(self, channel: int, controller: int, value: int, beat: float = 0.0) -> None:
        value = int(min(127, max(0, value)))
        self.events.append((self._tick(beat), 2, bytes([0xB0 | channel, controller, value])))

    def pitch_bend(self, channel: int, value: int, beat: float) -> None:
        """value in [-8192, 8191]."""
        v = int(min(8191, max(-8192, value))) + 8192
        self.events.append((self._tick(beat), 2, bytes([0xE0 | channel, v & 0x7F, v >> 7])))

    def note(self, channel: int, pitch: int, start: float, duration: float, velocity: int) -> None:
        pitch = int(pitch)
        if not 0 <= pitch <= 127:
            return
        velocity = int(min(127, max(1, velocity)))
        on, off = self._tick(start), self._tick(start + duration)
        if off <= on:
            off = on + 1
        # Note-offs sort before note-ons at the same tick so repeated notes retrigger.
        self.events.append((on, 4, bytes([0x90 | channel, pitch, velocity])))
        self.events.append((off, 3, bytes([0x80 | channel, pitch, 0])))

    def to_bytes(self, end_beat: float) -> bytes:
        tempo = int(round(60_000_000 / self.bpm))
        body = bytearray()
        body += b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
        body += b"\x00\xff\x58\x04\x04\x02\x18\x08"
        last = 0
        for tick, _, data in sorted(self.events, key=lambda e: (e[0], e[1], e[2])):
            body += _varlen(tick - last) + data
            last = tick
        end = max(last, self._tick(end_beat))
        body += _varlen(end - last) + b"\xff\x2f\x00"
        header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
        return header + b"MTrk" + struct.pack(">I", len(body)) + bytes(body)

    def save(self, path, end_beat: float) -> None:
        with open(path, "wb") as handle:
            handle.write(self.to_bytes(end_beat))
