"""Names that come from clients: group names checked when a request arrives, download names encoded per RFC 6266."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Mapping
from urllib.parse import quote

MAX_GROUP_NAME = 64  # characters; a stem file is NAME.wav, its MP3 NAME.mp3, both under 255 bytes
_FILE_NAME_CHARACTERS = "/\\{}"


def group_name_problem(groups: Mapping[str, object] | None) -> str | None:
    """Why a group name cannot name a stem file (one sentence), or None when all can.

    A name must be printable (no NUL, no control or line characters), at most
    :data:`MAX_GROUP_NAME` characters, without ``/``, ``\\``, ``{`` or ``}``, and not start with a
    dot (``.`` and ``..``, hidden files). Letters of any script are fine: ``é🎵`` is a good name.
    """
    for name in groups or {}:
        if not name.isprintable():
            return f"The group name {name!r} has a character that cannot be in a file name (NUL, a control or a line break)."
        if len(name) > MAX_GROUP_NAME:
            return f"The group name {name[:20]!r}... is {len(name)} characters long; use at most {MAX_GROUP_NAME}."
        if name.startswith(".") or any(ch in name for ch in _FILE_NAME_CHARACTERS):
            return f"The group name {name!r} cannot name a file: no leading dot, '/', '\\', '{{' or '}}'."
        if not name.strip() or name != name.strip():
            return f"The group name {name!r} must not start or end with a space."
    return None


def ascii_name(name: str, fallback: str = "track") -> str:
    """``name`` with every character but ``A-Z a-z 0-9 _ . -`` as ``_``, at most 100 long; ``fallback`` if nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._")[:100] or fallback


def download_stem(filename: str) -> str:
    """The name of an uploaded file without its folders and suffix, as downloads are named after it."""
    name = pathlib.PurePath(filename.replace("\\", "/")).name if filename not in ("", ".", "..") else ""
    stem = pathlib.PurePath(name).stem if name else ""
    return "".join(ch for ch in stem if ch.isprintable()).strip(". ")[:100] or "track"


def content_disposition(filename: str) -> str:
    """An ``attachment`` header value for any file name (RFC 6266): an ASCII ``filename=`` and the exact ``filename*=``.

    Browsers use ``filename*`` (UTF-8, percent-encoded); older clients the ASCII fallback, in which
    anything but letters, digits, ``_ . -`` became ``_`` (so no quote or backslash needs escaping).
    """
    stem, dot, suffix = filename.rpartition(".")
    fallback = f"{ascii_name(stem)}.{ascii_name(suffix, 'bin')}" if dot else ascii_name(filename)
    header = f'attachment; filename="{fallback}"'
    if fallback != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header
