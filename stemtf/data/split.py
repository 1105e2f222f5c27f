"""Holding tracks out for validation: by name or a seeded fraction, or MUSDB18's official split."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from stemtf.data.layouts import LAYOUTS, csv_tracks, detect_layout, folder_tracks, musdb_tracks
from stemtf.data.tracks import Track
from stemtf.errors import DataError


def split_tracks(
    tracks: Sequence[Track],
    *,
    validation_fraction: float = 0.1,
    validation_tracks: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[list[Track], list[Track]]:
    """Split tracks into ``(train, validation)`` by track, reproducibly.

    Args:
        tracks: All tracks.
        validation_fraction: Share of tracks held out (at least one when > 0 and there are two or
            more tracks); ignored when ``validation_tracks`` is given.
        validation_tracks: Names of the tracks to hold out.
        seed: Seed of the shuffle that picks held-out tracks (the order of ``tracks`` does not matter).
    """
    names = [t.name for t in tracks]
    if validation_tracks is not None:
        missing = sorted(set(validation_tracks) - set(names))
        if missing:
            raise DataError(f"Validation track {missing[0]!r} is not in the data (tracks: {names}).")
        held = set(validation_tracks)
    else:
        if not 0 <= validation_fraction < 1:
            raise DataError(f"`validation_fraction` must be in [0, 1). Received {validation_fraction}.")
        count = round(validation_fraction * len(tracks))
        if validation_fraction > 0 and len(tracks) >= 2:
            count = min(max(count, 1), len(tracks) - 1)
        order = np.random.default_rng(seed).permutation(sorted(names))
        held = set(order[:count].tolist())
    train = [t for t in tracks if t.name not in held]
    validation = [t for t in tracks if t.name in held]
    if not train:
        raise DataError("Every track is held out for validation; leave some for training.")
    return train, validation


def training_split(
    data: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    layout: str = "auto",
    validation_fraction: float = 0.1,
    validation_tracks: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[list[Track], list[Track]]:
    """Load ``(train, validation)`` tracks from a folder, CSV manifest or MUSDB18 copy.

    MUSDB18 uses its official ``train``/``valid`` split; the other layouts :func:`split_tracks`.

    Args:
        layout: ``folder``, ``csv``, ``musdb``, or ``auto`` (see :func:`detect_layout`).
    """
    if layout not in LAYOUTS:
        raise DataError(f"{{option:layout}} must be one of {list(LAYOUTS)}. Received {layout!r}.")
    if layout == "auto":
        layout = detect_layout(data)
    if layout == "musdb":
        train = musdb_tracks(data, stems=stems, stem_groups=stem_groups, subset="train", split="train")
        validation = musdb_tracks(data, stems=stems, stem_groups=stem_groups, subset="train", split="valid")
        return train, validation
    if layout == "csv":
        tracks = csv_tracks(data, stems=stems, stem_groups=stem_groups)
    else:
        tracks = folder_tracks(data, stems=stems, stem_groups=stem_groups)
    return split_tracks(tracks, validation_fraction=validation_fraction, validation_tracks=validation_tracks, seed=seed)
