"""Track sources: a folder of stems, a Spleeter-style CSV manifest, a local MUSDB18 copy; and telling them apart."""

from __future__ import annotations

import csv
import os
import pathlib
from collections.abc import Mapping, Sequence

from stemtf.data.tracks import MIXTURE, SUM_SEPARATOR, UNKNOWN, AudioSource, Track, _check_stems_found, _make_track, _stem_groups
from stemtf.errors import DataError, DependencyError, OptionError

LAYOUTS = ("auto", "folder", "csv", "musdb")
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".mp4", ".wma", ".webm"}
)
MUSDB_SOURCES = {"drums": 1, "bass": 2, "other": 3, "vocals": 4}  # stream index in a .stem.mp4


def folder_tracks(
    root: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    require_every_stem: bool = True,
    names: Sequence[str] | None = None,
) -> list[Track]:
    """Tracks of a folder laid out as ``ROOT/<track>/<stem>.<ext>``, sorted by name.

    A file named ``<stem>+<stem>....<ext>`` (``drums+bass+other.wav``) is the sum of those stems,
    which the track then labels only together (:attr:`Track.sums`).

    Args:
        root: The folder holding one folder per track.
        stems: The model's stems, in order.
        stem_groups: Model stem -> file stems summed into it (default: the stem's own name).
        require_every_stem: Whether every model stem must have audio in some track (a misnamed
            file is caught here); False allows a folder of parts, such as guitars alone.
        names: Read only these tracks (folder names; None: all). The other folders are not
            opened, so their files cannot fail the call.

    Raises:
        DataError: no tracks, a model stem no track has, an audio file no stem takes, two files
            for one stem, or files of different lengths or rates within a track.
        OptionError: a name in ``names`` is not a track folder.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"Data folder {str(root)!r} does not exist or is not a folder.")
    groups = _stem_groups(stems, stem_groups)
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if loose:
        raise DataError(
            f"{str(root)!r} holds audio files directly ({loose[0]}, ...); point at the folder that holds "
            "one folder per track (ROOT/<track>/<stem>.<ext>)."
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if names is not None:
        known = [folder.name for folder in folders]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise OptionError("names", f"{{option}} {unknown[0]!r} is not in the data; tracks: {', '.join(known)}.")
        folders = [folder for folder in folders if folder.name in names]
    tracks = []
    for folder in folders:
        files: dict[str, AudioSource] = {}
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            if path.stem in files:
                raise DataError(f"Track {folder.name!r} has two files for {path.stem!r}; keep one.")
            files[path.stem] = AudioSource(str(path))
        mixture = files.pop(MIXTURE, None)
        tracks.append(_make_track(folder.name, files, groups, mixture))
    _check_stems_found(
        tracks, stems, f"{str(root)!r} (expected ROOT/<track>/<stem>.<ext> with stems {list(stems)})",
        require_every_stem=require_every_stem,
    )
    return tracks


def csv_tracks(
    path: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    root: str | os.PathLike | None = None,
    require_every_stem: bool = True,
) -> list[Track]:
    """Tracks of a Spleeter-style CSV manifest, in row order.

    Columns: ``mixture_path`` or ``mix_path`` (optional), one ``<stem>_path`` per file stem, and
    an optional ``duration`` in seconds that limits the usable length; other columns are ignored.
    A ``<stem>+<stem>..._path`` column (``drums+bass+other_path``) holds the sum of those stems.
    Cells: a path; empty for a silent stem; ``?`` for a stem present in the mixture but not
    labelled (the row then needs its mixture, or the unknown stems' sum).

    Args:
        path: The CSV file.
        stems: The model's stems, in order.
        stem_groups: Model stem -> file stems (column prefixes) summed into it.
        root: Folder the paths are relative to; defaults to the CSV's folder.
        require_every_stem: Whether every model stem must have audio in some row.

    Raises:
        DataError: the CSV is missing or empty, a ``<stem>_path`` column names a stem no model
            stem takes, a file is missing, lengths differ within a row, or a row labels a stem
            twice or has unknown stems without a mixture (see :class:`Track`).
    """
    path = pathlib.Path(path)
    root = pathlib.Path(root) if root is not None else path.parent
    groups = _stem_groups(stems, stem_groups)
    columns, rows = _read_manifest(path)
    mixture_column, stem_columns = _manifest_columns(path, columns, stems, groups)
    tracks = [_manifest_track(path, root, number, row, mixture_column, stem_columns, groups)
              for number, row in enumerate(rows, start=2)]
    _check_stems_found(tracks, stems, f"CSV manifest {str(path)!r}", require_every_stem=require_every_stem)
    return tracks


def _read_manifest(path: pathlib.Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a CSV manifest, every name and cell stripped."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except FileNotFoundError:
        raise DataError(f"CSV manifest {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"Cannot read CSV manifest {str(path)!r}: {error}.") from None
    return columns, rows


def _manifest_columns(
    path: pathlib.Path, columns: list[str], stems: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> tuple[str | None, dict[str, str]]:
    """``(mixture column or None, {file stem or sum of stems: its column})`` of a manifest's header, checked
    against the stems the model takes."""
    taken = {name for group in groups.values() for name in group}
    mixture_columns = [c for c in columns if c in ("mixture_path", "mix_path")]
    stem_columns = {c[: -len("_path")]: c for c in columns if c.endswith("_path") and c not in mixture_columns}
    # Other columns are ignored, but one that names stems joined by + is surely a sum missing its suffix.
    loose = [c for c in columns if SUM_SEPARATOR in c and c not in stem_columns.values()
             and set(c.split(SUM_SEPARATOR)) <= taken]
    if loose:
        raise DataError(
            f"CSV manifest {str(path)!r} has a column {loose[0]!r}; name a column of summed stems "
            f"like the others, {loose[0]}_path."
        )
    for key, column in stem_columns.items():
        parts = key.split(SUM_SEPARATOR)
        if len(set(parts)) != len(parts) or not all(parts):
            raise DataError(
                f"CSV manifest {str(path)!r} has a column {column!r}; a sum column names two or more different "
                f"stems, e.g. drums+bass+other_path."
            )
    names = {part: key for key in stem_columns for part in key.split(SUM_SEPARATOR)}
    unknown = sorted(set(names) - taken)
    if unknown:
        raise DataError(
            f"CSV manifest {str(path)!r} has a column {stem_columns[names[unknown[0]]]!r} for stem {unknown[0]!r}, "
            f"which no model stem takes (stems: {list(stems)}); rename the column or use {{option:stem_groups}}."
        )
    if not stem_columns:
        raise DataError(f"CSV manifest {str(path)!r} has no <stem>_path columns (columns: {columns}).")
    return (mixture_columns[0] if mixture_columns else None), stem_columns


def _manifest_track(
    path: pathlib.Path,
    root: pathlib.Path,
    number: int,
    row: dict[str, str],
    mixture_column: str | None,
    stem_columns: dict[str, str],
    groups: Mapping[str, Sequence[str]],
) -> Track:
    """The track of the manifest's line ``number``: its files found under ``root``, its duration checked."""

    def source(column: str) -> AudioSource | None:
        if not row.get(column) or row[column] == UNKNOWN:
            return None
        file = root / row[column]
        if not file.is_file():
            raise DataError(f"{path.name} line {number}: {column} {str(file)!r} does not exist.")
        return AudioSource(str(file))

    files = {stem: s for stem, column in stem_columns.items() if (s := source(column)) is not None}
    unknown_stems = [stem for stem, column in stem_columns.items() if row.get(column) == UNKNOWN]
    if mixture_column and row.get(mixture_column) == UNKNOWN:
        raise DataError(
            f"{path.name} line {number}: the mixture cannot be unknown ({UNKNOWN}); give its file or leave the cell empty."
        )
    mixture = source(mixture_column) if mixture_column else None
    name = row.get(mixture_column) if mixture_column and row.get(mixture_column) else f"line {number}"
    duration = None
    if row.get("duration"):
        try:
            duration = float(row["duration"])
        except ValueError:
            raise DataError(f"{path.name} line {number}: duration {row['duration']!r} is not a number.") from None
        if duration <= 0:
            raise DataError(f"{path.name} line {number}: duration must be > 0 seconds. Received {duration}.")
    try:
        return _make_track(name, files, groups, mixture, unknown=unknown_stems, max_seconds=duration)
    except DataError as error:
        raise DataError(f"{path.name} line {number}: {error}") from None


def musdb_tracks(
    root: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups: Mapping[str, Sequence[str]] | None = None,
    subset: str = "train",
    split: str | None = None,
    is_wav: bool | None = None,
) -> list[Track]:
    """Tracks of a local MUSDB18 copy through the ``musdb`` package (no download).

    Args:
        root: The MUSDB18 folder (holding ``train/`` and ``test/``).
        stems: The model's stems; MUSDB18 has ``vocals``, ``drums``, ``bass`` and ``other``.
        stem_groups: Model stem -> MUSDB sources, e.g. ``{"accompaniment": ["drums", "bass", "other"]}``.
        subset: ``train`` or ``test``.
        split: With ``subset="train"``: ``train`` or ``valid`` (the official validation tracks), or
            None for all of them.
        is_wav: True for the WAV (HQ) release, False for ``.stem.mp4``; None detects it.

    Raises:
        ImportError: ``musdb`` is not installed.
        DataError: the folder is not a MUSDB18 copy, or a stem is not a MUSDB18 source.
    """
    try:
        import musdb
    except ImportError:
        raise DependencyError("Reading MUSDB18", "musdb", "eval") from None
    root = pathlib.Path(root)
    subset_folder = root / subset
    if subset not in ("train", "test"):
        raise DataError(f"MUSDB18 {{option:subset}} must be 'train' or 'test'. Received {subset!r}.")
    if not subset_folder.is_dir():
        raise DataError(f"{str(root)!r} is not a MUSDB18 folder: {subset}/ is missing.")
    if is_wav is None:
        is_wav = not any(subset_folder.glob("*.stem.mp4"))
    groups = _stem_groups(stems, stem_groups)
    unknown = sorted({f for group in groups.values() for f in group} - set(MUSDB_SOURCES))
    if unknown:
        raise DataError(
            f"MUSDB18 has no {unknown[0]!r} source (it has {list(MUSDB_SOURCES)}); "
            "map the model's stems onto them with {option:stem_groups}."
        )
    database = musdb.DB(root=str(root), subsets=[subset], split=split if subset == "train" else None, is_wav=is_wav)
    tracks = []
    for item in database.tracks:
        if is_wav:
            files = {name: AudioSource(source.path) for name, source in item.sources.items()}
            mixture = AudioSource(item.path)
            tracks.append(_make_track(item.name, files, groups, mixture))
        else:
            files = {name: AudioSource(item.path, MUSDB_SOURCES[name]) for name in MUSDB_SOURCES}
            mixture = AudioSource(item.path, 0)
            shape = (int(item.samples), int(item.rate))
            probed = {source: shape for source in [*files.values(), mixture]}
            tracks.append(_make_track(item.name, files, groups, mixture, probed=probed))
    _check_stems_found(tracks, stems, f"MUSDB18 {str(root)!r} ({subset}{'/' + split if split else ''})")
    return tracks


def detect_layout(data: str | os.PathLike) -> str:
    """``csv`` for a ``.csv`` file, ``musdb`` for a folder with ``train/`` and ``test/``, else ``folder``."""
    path = pathlib.Path(data)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"{str(path)!r} is a file but not a .csv manifest; give a data folder or a CSV file.")
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "musdb"
    return "folder"
