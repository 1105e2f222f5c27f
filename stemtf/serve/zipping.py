"""Zips streamed as they are made: stem WAVs from disk, block by block, never the whole zip in memory."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from typing import Any

# Members unpack as ordinary files (rw-r--r--): zipfile's default for a streamed member is 0600.
_MEMBER_MODE = 0o100644 << 16


def iter_zip(files: list[tuple[str, Any]], block_size: int = 1 << 20) -> Iterator[bytes]:
    """Stream a zip of already opened files ``[(name, binary file)]`` block by block, closing them."""
    sink = _Sink()
    try:
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as bundle:  # WAV barely compresses; storing is fast
            for name, handle in files:
                member = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
                member.external_attr = _MEMBER_MODE
                with bundle.open(member, "w", force_zip64=True) as stream:
                    while block := handle.read(block_size):
                        stream.write(block)
                        yield sink.take()
                yield sink.take()
        yield sink.take()
    finally:
        for _, handle in files:
            handle.close()


def iter_file(handle, block_size: int = 1 << 20) -> Iterator[bytes]:
    """Stream an opened binary file block by block, closing it at the end (or when the client goes)."""
    try:
        while block := handle.read(block_size):
            yield block
    finally:
        handle.close()


class _Sink:
    """A write-only, unseekable stream whose bytes are taken as they come (zipfile then writes data descriptors)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data
