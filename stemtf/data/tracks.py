"""What every track source produces: :class:`Track` (stems as :class:`AudioSource` files), and its checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from stemtf import audio
from stemtf.errors import DataError

MIXTURE = "mixture"
UNKNOWN = "?"  # a CSV cell: the stem is in the mixture but not labelled
SUM_SEPARATOR = "+"  # drums+bass+other: a file or CSV column holding the sum of several stems


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

    A track may be partly labelled: stems it has but whose content is not known on their own are
    ``unknown`` (the loss ignores them), and stems known only together are a sum in ``sums`` (the
    loss compares the sum of their estimates with it). Every other stem is labelled, ``()`` being
    silence.

    Attributes:
        name: Track name (folder name, MUSDB name, or manifest path).
        num_samples: Length of every file, in samples at ``sample_rate``.
        sample_rate: Sample rate of the files, in Hz.
        stems: For every model stem in order, the sources summed to make it; ``()`` is silence (or,
            for a stem in ``unknown`` or ``sums``, not labelled on its own).
        mixture: The mixture file, or None when the mixture is the sum of the stems and the sums.
        unknown: Stems present in the mixture but not labelled; the track then needs ``mixture``.
        sums: Stems known only together (two or more; kept in model order) -> the sources summed
            to make their sum, e.g. ``{("drums", "bass", "other"): (backing,)}``. A stem is in at most one.

    Raises:
        DataError: a stem both labelled and unknown or in a sum, in two sums, a sum of fewer than two
            stems, a stem the track does not have, or unknown stems without a mixture file.
    """

    name: str
    num_samples: int
    sample_rate: int
    stems: Mapping[str, tuple[AudioSource, ...]]
    mixture: AudioSource | None = None
    unknown: frozenset[str] = frozenset()
    sums: Mapping[tuple[str, ...], tuple[AudioSource, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unknown", frozenset(self.unknown))
        object.__setattr__(self, "sums", {tuple(stems): tuple(sources) for stems, sources in self.sums.items()})
        _check_labels(self)
        # In model order, so that every track names one sum alike (drums+bass, never bass+drums).
        object.__setattr__(self, "sums", {tuple(s for s in self.stems if s in key): files for key, files in self.sums.items()})

    @property
    def partly_labelled(self) -> bool:
        """Whether some stem is not labelled on its own (unknown, or only known in a sum)."""
        return bool(self.unknown or self.sums)

    def labels(self, stem: str) -> bool:
        """Whether ``stem`` is labelled on its own (its files, or silence), not unknown nor only in a sum."""
        return stem not in self.unknown and not any(stem in stems for stems in self.sums)


def sum_name(stems: Iterable[str]) -> str:
    """How people name a sum of stems (files, CSV columns, messages): ``drums+bass+other``."""
    return SUM_SEPARATOR.join(stems)


def sum_key(stems: Iterable[str]) -> str:
    """The key of a sum of stems in datasets, training outputs and logs: ``drums.bass.other``.

    Keras output names allow no ``+``; stem names allow no ``.``, so the key names one sum only.
    """
    return ".".join(stems)


def stem_sums(tracks: Iterable[Track]) -> list[tuple[str, ...]]:
    """Every sum of stems some track labels, sorted: the sums a dataset of these tracks yields."""
    return sorted({stems for track in tracks for stems in track.sums})


def _check_labels(track: Track) -> None:
    """The checks of :class:`Track`'s ``unknown`` and ``sums``: each stem labelled one way only."""
    where = f"Track {track.name!r}"
    stems = list(track.stems)
    strangers = sorted(set(track.unknown) - set(stems))
    if strangers:
        raise DataError(f"{where} marks {strangers[0]!r} unknown, which is not one of its stems {stems}.")
    owner: dict[str, str] = {}
    for members in track.sums:
        name = sum_name(members)
        if len(members) < 2:
            raise DataError(f"{where} has a sum of one stem ({name!r}); label a single stem as that stem, not as a sum.")
        for stem in members:
            if stem not in track.stems:
                raise DataError(f"{where} has a sum {name!r} of {stem!r}, which is not one of its stems {stems}.")
            if stem in owner:
                raise DataError(f"{where} puts {stem!r} in two sums ({owner[stem]!r} and {name!r}); a stem may be in one sum only.")
            if stem in track.unknown:
                raise DataError(f"{where} marks {stem!r} unknown and also puts it in the sum {name!r}; do one or the other.")
            owner[stem] = name
    for stem in stems:
        if track.stems[stem] and not track.labels(stem):
            how = f"puts it in the sum {owner[stem]!r}" if stem in owner else "marks it unknown"
            raise DataError(f"{where} labels {stem!r} with files and also {how}; do one or the other.")
    if track.unknown and track.mixture is None:
        unknown = [stem for stem in stems if stem in track.unknown]
        raise DataError(
            f"{where} has unknown stems {unknown} but no mixture file: give its mixture, or label the unknown "
            f"stems together as a sum ({sum_name(unknown)})."
        )
    if track.unknown and all(stem in track.unknown for stem in stems):
        raise DataError(f"{where} labels none of its stems (all are unknown); label one, or leave the track out.")


def _stem_groups(stems: Sequence[str], stem_groups: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """Model stem -> file stems, checked: known keys, no file stem taken twice."""
    stem_groups = dict(stem_groups or {})
    unknown = sorted(set(stem_groups) - set(stems))
    if unknown:
        raise DataError(f"{{option:stem_groups}} names {unknown[0]!r}, which is not one of the model's stems {list(stems)}.")
    groups = {stem: tuple(stem_groups.get(stem, (stem,))) for stem in stems}
    owner: dict[str, str] = {}
    for stem, files in groups.items():
        for name in files:
            if name == MIXTURE:
                raise DataError(f"{{option:stem_groups}} puts {MIXTURE!r} in the {stem!r} stem; it is the mixture, not a stem.")
            if name in owner:
                raise DataError(f"File stem {name!r} is taken by both {owner[name]!r} and {stem!r} in {{option:stem_groups}}.")
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
    unknown: Iterable[str] = (),
    max_seconds: float | None = None,
    probed: Mapping[AudioSource, tuple[int, int]] | None = None,
) -> Track:
    """Check one track's files (all used, same length and rate) and build its :class:`Track`.

    ``files`` maps file stems to files; a key ``a+b`` is the sum of file stems ``a`` and ``b``. A key
    in ``unknown`` is present in the mixture but not labelled. Through ``groups`` a sum of file stems
    that all make one model stem labels that stem; one that spans several model stems is a sum of them.
    """
    owner = {file: stem for stem, group in groups.items() for file in group}
    given: dict[str, str] = {}  # file stem -> the key that gives it
    model_stems: dict[str, tuple[str, ...]] = {}  # key -> the model stems it covers, in model order
    for key in [*files, *unknown]:
        parts = key.split(SUM_SEPARATOR)
        for part in parts:
            if part not in owner:
                raise DataError(
                    f"Track {name!r} has a {part!r} stem that no model stem takes; merge it into one with "
                    f"{{option:stem_groups}} (a model stem and the file stems it sums: STEM=STEM,{part}), or remove the file."
                )
            if part in given:
                raise DataError(f"Track {name!r} gives the {part!r} stem twice ({given[part]!r} and {key!r}); give it once.")
            given[part] = key
        model_stems[key] = tuple(stem for stem in groups if stem in {owner[part] for part in parts})
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
    if len(model_stems) == len(files) and not any(SUM_SEPARATOR in key for key in files):
        return Track(name=name, num_samples=num_samples, sample_rate=sample_rate, stems=stems, mixture=mixture)
    # Partly labelled: sums of files, or unknown stems.
    stems = {stem: [] for stem in groups}
    sums: dict[tuple[str, ...], list[AudioSource]] = {}
    unknown_stems = set()
    for key, covered in model_stems.items():
        if key not in files:
            unknown_stems.update(covered)
        elif len(covered) == 1:
            stems[covered[0]].append(files[key])
        else:
            sums.setdefault(covered, []).append(files[key])
    return Track(
        name=name, num_samples=num_samples, sample_rate=sample_rate, stems={stem: tuple(s) for stem, s in stems.items()},
        mixture=mixture, unknown=frozenset(unknown_stems), sums={key: tuple(s) for key, s in sums.items()},
    )


def _check_stems_found(tracks: Sequence[Track], stems: Sequence[str], where: str, *, require_every_stem: bool = True) -> None:
    if not tracks:
        raise DataError(f"No tracks found in {where}.")
    if not require_every_stem:
        return
    for stem in stems:
        if not any(track.stems[stem] or any(stem in key and files for key, files in track.sums.items()) for track in tracks):
            raise DataError(
                f"No track in {where} has a {stem!r} stem; check the model's stems and {{option:stem_groups}} "
                f"against the file names."
            )
