"""What every track source produces: :class:`Track` (stems as :class:`AudioSource` files), and its checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from stemtf import audio
from stemtf.errors import DataError

MIXTURE = "mixture"


@dataclasses.dataclass(frozen=True)
class AudioSource:
    """One audio file, or one stream of a multi-stream container (MUSDB18 ``.stem.mp4``).

    Attributes:
        path: The file.
        stream: Absolute ffmpeg stream index in ``path``, or None for the file's only audio.
    """

    path: str
    stream: int | None = None


@dataclasses.dataclass(frozen=True)
class Track:
    """One song: its stems as files, all of the same length and sample rate.

    Attributes:
        name: Track name (folder name, MUSDB name, or manifest path).
        num_samples: Length of every file, in samples at ``sample_rate``.
        sample_rate: Sample rate of the files, in Hz.
        stems: For every model stem in order, the sources summed to make it; ``()`` is silence.
        mixture: The mixture file, or None when the mixture is the sum of the stems.
    """

    name: str
    num_samples: int
    sample_rate: int
    stems: Mapping[str, tuple[AudioSource, ...]]
    mixture: AudioSource | None = None


def _stem_groups(stems: Sequence[str], stem_groups: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """Model stem -> file stems, checked: known keys, no file stem taken twice."""
    stem_groups = dict(stem_groups or {})
    unknown = sorted(set(stem_groups) - set(stems))
    if unknown:
        raise DataError(f"`stem_groups` names {unknown[0]!r}, which is not one of the model's stems {list(stems)}.")
    groups = {stem: tuple(stem_groups.get(stem, (stem,))) for stem in stems}
    owner: dict[str, str] = {}
    for stem, files in groups.items():
        for name in files:
            if name == MIXTURE:
                raise DataError(f"`stem_groups[{stem!r}]` lists {MIXTURE!r}, which is the mixture, not a stem.")
            if name in owner:
                raise DataError(f"File stem {name!r} is taken by both {owner[name]!r} and {stem!r} in `stem_groups`.")
            owner[name] = stem
    return groups


def _probe(source: AudioSource) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` of a source, from its header."""
    info = audio.probe_audio(source.path, stream=source.stream)
    if info.num_samples is None:
        raise DataError(f"Cannot tell the length of {source.path!r}; convert it to WAV or FLAC.")
    return info.num_samples, info.sample_rate


def _make_track(
    name: str,
    files: Mapping[str, AudioSource],
    groups: Mapping[str, tuple[str, ...]],
    mixture: AudioSource | None,
    *,
    max_seconds: float | None = None,
    probed: Mapping[AudioSource, tuple[int, int]] | None = None,
) -> Track:
    """Check one track's files (all used, same length and rate) and build its :class:`Track`."""
    taken = {name for group in groups.values() for name in group}
    unused = sorted(set(files) - taken)
    if unused:
        raise DataError(
            f"Track {name!r} has a {unused[0]!r} stem that no model stem takes; merge it into one "
            f"(--stem-group STEM={unused[0]},... on the command line, stem_groups in Python), or remove the file."
        )
    every = dict(files)
    if mixture is not None:
        every[MIXTURE] = mixture
    if not every:
        raise DataError(f"Track {name!r} has no audio files.")
    probed = probed or {}
    shapes = {stem: probed.get(source) or _probe(source) for stem, source in every.items()}
    if len({rate for _, rate in shapes.values()}) > 1:
        found = ", ".join(f"{stem}: {rate} Hz" for stem, (_, rate) in shapes.items())
        raise DataError(f"Track {name!r} mixes sample rates ({found}); resample its files to one rate.")
    if len({length for length, _ in shapes.values()}) > 1:
        found = ", ".join(f"{stem}: {length}" for stem, (length, _) in shapes.items())
        raise DataError(f"Track {name!r} has files of different lengths in samples ({found}); trim or pad them to one length.")
    num_samples, sample_rate = next(iter(shapes.values()))
    if max_seconds is not None:
        num_samples = min(num_samples, round(max_seconds * sample_rate))
    stems = {stem: tuple(files[f] for f in group if f in files) for stem, group in groups.items()}
    return Track(name=name, num_samples=num_samples, sample_rate=sample_rate, stems=stems, mixture=mixture)


def _check_stems_found(tracks: Sequence[Track], stems: Sequence[str], where: str) -> None:
    if not tracks:
        raise DataError(f"No tracks found in {where}.")
    for stem in stems:
        if not any(track.stems[stem] for track in tracks):
            raise DataError(
                f"No track in {where} has a {stem!r} stem; check the model's stems and `stem_groups` "
                f"against the file names."
            )
