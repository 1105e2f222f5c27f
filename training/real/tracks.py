"""Training tracks from the real recordings, each stem labelled only where the label is exact.

Tracks of parts alone (a guitar alone, a drum loop alone, a voice alone) are built as
:class:`stemtf.data.Track` objects directly (the Frets on Fire songs are not laid out as
``ROOT/<track>/<stem>``). A stem such a track lacks is silence, which is exact; the pipeline's
cross-track remix puts these parts under other songs' stems, so a real guitar is heard over real
drums and a real voice.

=================  =====================================  =======================================
source             4/5-stem models                        2-stem models
=================  =====================================  =======================================
FoF guitar.ogg     ``other`` (the backing is unlabelled)  ``accompaniment``
FoF sectoid        guitar only                            ``accompaniment`` = guitar + backing
 (instrumental)                                            (exact: the backing has no vocals)
FoF sectoid band   ``vocals`` silent, the sum of the      (already above)
 (fof_band_tracks) other stems = guitar + backing
LMMS demo songs    ``drums``, ``bass``, ``other`` (+      ``accompaniment`` (every part)
 (lmms_tracks)     ``piano``); ``vocals`` silent
drum loops         ``drums``                              ``accompaniment``
vocadito           ``vocals``                             ``vocals``
=================  =====================================  =======================================

The band tracks are partly labelled (:attr:`stemtf.data.Track.sums`): the loss sees only the sum of
the drums, bass and other estimates against the whole band, and silence for the vocals. They are
never remixed.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import soundfile as sf

from stemtf import data

from sources import FOF_LICENCE, fof_songs


def make_track(name: str, stem_files: Mapping[str, Sequence[pathlib.Path]], stems: Sequence[str],
               sums: Mapping[tuple[str, ...], Sequence[pathlib.Path]] | None = None) -> data.Track:
    """A track whose model stems are sums of files (stems not named are silent), and its sums of stems.

    Raises:
        SystemExit: files of different lengths or rates, or a stem the model does not have.
        stemtf.data.DataError: a stem both in ``stem_files`` and in a sum, or a sum of one stem.
    """
    sums = dict(sums or {})
    unknown = sorted(set(stem_files).union(*sums) - set(stems))
    if unknown:
        raise SystemExit(f"Track {name!r}: the model has no {unknown[0]!r} stem (its stems: {list(stems)}).")
    every = [path for files in [*stem_files.values(), *sums.values()] for path in files]
    shapes = {(sf.info(path).frames, sf.info(path).samplerate) for path in every}
    if len(shapes) != 1:
        raise SystemExit(f"Track {name!r}: its files differ in length or sample rate {sorted(shapes)}.")
    num_samples, sample_rate = shapes.pop()
    return data.Track(
        name=name, num_samples=num_samples, sample_rate=sample_rate,
        stems={stem: tuple(data.AudioSource(str(p)) for p in stem_files.get(stem, ())) for stem in stems},
        sums={key: tuple(data.AudioSource(str(p)) for p in files) for key, files in sums.items()},
    )


def _stem_for_band_part(stems: Sequence[str], preferred: str) -> str:
    """``preferred`` if the model has it, else ``accompaniment`` (2-stem models)."""
    if preferred in stems:
        return preferred
    if "accompaniment" in stems:
        return "accompaniment"
    raise SystemExit(f"The model's stems {list(stems)} have neither {preferred!r} nor 'accompaniment'.")


def fof_tracks(stems: Sequence[str], held_out: Sequence[str], fof_root: pathlib.Path | None = None, *,
               share_alike: bool = True) -> list[data.Track]:
    """Frets on Fire songs not in ``held_out`` (``band/song`` keys), labelled as in the module table.

    Args:
        share_alike: Include the CC BY-SA 3.0 songs (muldjord); False keeps to the MIT ones.
    """
    songs = fof_songs() if fof_root is None else fof_songs(fof_root)
    tracks = []
    for song in songs:
        if song.key in held_out or (not share_alike and "SA" in FOF_LICENCE[song.band]):
            continue
        stem = _stem_for_band_part(stems, "other")
        files = [song.guitar]
        if stem == "accompaniment" and song.instrumental:
            files.append(song.backing)  # backing + guitar is the whole accompaniment
        tracks.append(make_track(f"fof/{song.key}", {stem: files}, stems))
    return tracks


def fof_band_tracks(stems: Sequence[str], held_out: Sequence[str], fof_root: pathlib.Path | None = None) -> list[data.Track]:
    """The instrumental (sectoid, MIT) FoF songs not in ``held_out`` as whole bands, for models with vocals and 3+ stems.

    ``vocals`` is labelled silent and every other stem is known only in their sum, guitar + backing
    (exact: those backings hold no vocals). 2-stem models get nothing here: :func:`fof_tracks`
    already labels ``accompaniment`` = guitar + backing.
    """
    if "vocals" not in stems or len(stems) < 3:
        return []
    songs = fof_songs() if fof_root is None else fof_songs(fof_root)
    band = tuple(stem for stem in stems if stem != "vocals")
    return [
        make_track(f"fof-band/{song.key}", {}, stems, sums={band: [song.guitar, song.backing]})
        for song in songs if song.instrumental and song.key not in held_out
    ]


def folder_part_tracks(root: pathlib.Path, file_stem: str, stems: Sequence[str], prefix: str) -> list[data.Track]:
    """One track per ``root/<name>/<file_stem>.flac`` (written by prepare.py), as its model stem."""
    if not root.is_dir():
        raise SystemExit(f"{root} not found: run `training/real/prepare.py --out {root.parent}` first.")
    stem = file_stem if file_stem in stems else _stem_for_band_part(stems, file_stem)
    paths = sorted(root.glob(f"*/{file_stem}.flac"))
    if not paths:
        raise SystemExit(f"No {file_stem}.flac under {root}: run `training/real/prepare.py --out {root.parent}`.")
    return [make_track(f"{prefix}/{p.parent.name}", {stem: [p]}, stems) for p in paths]


def lmms_tracks(root: pathlib.Path, stems: Sequence[str], stem_groups: Mapping[str, Sequence[str]], *,
                share_alike: bool = True) -> list[data.Track]:
    """The LMMS demo songs rendered by ``lmms_render.py`` (``root/<song>/{drums,bass,other,piano}.flac``).

    Every track of a song is rendered, so a part the song lacks (its vocals: none has any) is silence,
    which is exact. Songs whose ``mapping.json`` licence is CC BY-SA are left out unless ``share_alike``.

    Raises:
        SystemExit: ``root`` holds no rendered song.
    """
    import json

    songs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        mapping = folder / "mapping.json"
        licence = json.loads(mapping.read_text()).get("licence", "") if mapping.is_file() else ""
        if share_alike or "SA" not in licence.upper():
            songs.append(folder.name)
    if not songs:
        raise SystemExit(f"No rendered LMMS song under {root}: run `training/real/lmms_render.py --out {root}`.")
    tracks = data.folder_tracks(root, stems=stems, stem_groups=stem_groups, require_every_stem=False)
    return [track for track in tracks if track.name in songs]
