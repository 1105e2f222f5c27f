"""Finished jobs on disk: the record that marks a result folder complete, sizes, MP3 copies, deletion."""

import json
import pathlib
import shutil
from typing import Any

from stemtf import audio

RECORD_FILE = "job.json"


def write_record(folder: pathlib.Path, record: dict[str, Any]) -> None:
    """Write the job's record into its (still partial) result folder."""
    (folder / RECORD_FILE).write_text(json.dumps(record), encoding="utf-8")


def read_record(folder: pathlib.Path) -> dict[str, Any] | None:
    """The record of a complete result folder: it names the folder and every stem WAV is there; None otherwise."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        complete = record["id"] == folder.name and all((folder / f"{stem}.wav").is_file() for stem in record["stems"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if complete else None


def folder_size(folder: pathlib.Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def encode_mp3(wav: pathlib.Path, target: pathlib.Path, *, bitrate: int) -> None:
    """Encode a stem WAV to MP3 next to it through a temporary file (another request may be doing the same)."""
    import soundfile as sf

    with sf.SoundFile(wav) as source:
        writer = audio.AudioWriter(target, sample_rate=source.samplerate, num_channels=source.channels, fmt="mp3", bitrate=bitrate)
        try:
            for block in source.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                writer.write(block)
            writer.commit(overwrite=True)  # a request that raced us wrote the same bytes
        except BaseException:
            writer.abort()
            raise


def remove(path: pathlib.Path) -> None:
    """Delete a file or a folder tree, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
