"""Training data: track sources (folders of stems, CSV manifests, MUSDB18) and the tf.data pipeline.

Every source becomes a list of :class:`Track`: a name, a length, and for every model stem the audio
files summed to make it (none: the stem is silent in that track). The pipeline then draws random
crops with partial reads (never decoding a whole file per example), augments them (random gain per
stem, channel swap, stems remixed across tracks, optionally speed), and turns them into magnitude spectrograms with
:func:`stemtf.spectral.stft`. Everything random is drawn from ``numpy.random.default_rng([seed,
example_index])``, so a pipeline is deterministic given its seed and can restart at any example.

Layouts:

* **folder**: ``ROOT/<track>/<stem>.<ext>``; ``mixture.<ext>`` is the mixture if present, else the
  sum of the stems.
* **csv**: a Spleeter-style manifest with ``mixture_path`` (or ``mix_path``), ``<stem>_path`` columns
  and an optional ``duration`` column (seconds); paths are relative to the manifest's folder (or
  ``root``); an empty cell is a silent stem.
* **musdb**: a local MUSDB18 copy read with the ``musdb`` package (``.stem.mp4`` or the WAV "HQ"
  release), with its official train/valid/test splits.

File stems are mapped to model stems by ``stem_groups`` (``{"other": ["other", "piano"]}`` sums two
files into ``other``); a model stem not named there takes the file stem of its own name. An audio
file no model stem takes is an error rather than silently left out of the mixture.
"""

from stemtf.data.augment import DEFAULT_AUGMENTATION, Augmentation
from stemtf.data.layouts import AUDIO_EXTENSIONS, LAYOUTS, MUSDB_SOURCES, csv_tracks, detect_layout, folder_tracks, musdb_tracks
from stemtf.data.pipeline import training_dataset, validation_crops, validation_dataset
from stemtf.data.reading import read_crop, read_segment
from stemtf.data.split import split_tracks, training_split
from stemtf.data.tracks import MIXTURE, AudioSource, Track
from stemtf.errors import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_AUGMENTATION",
    "LAYOUTS",
    "MIXTURE",
    "MUSDB_SOURCES",
    "AudioSource",
    "Augmentation",
    "DataError",
    "Track",
    "csv_tracks",
    "detect_layout",
    "folder_tracks",
    "musdb_tracks",
    "read_crop",
    "read_segment",
    "split_tracks",
    "training_dataset",
    "training_split",
    "validation_crops",
    "validation_dataset",
]
