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

Partly labelled tracks (real recordings where only some stems are known):

* **unknown stems** (:attr:`Track.unknown`; a CSV cell ``?``): in the mixture but not labelled. The
  track needs its mixture file; the loss and the SDR metric leave the stem out for its examples
  (sample weight 0).
* **sums of stems** (:attr:`Track.sums`; a CSV column ``drums+bass+other_path``, a file
  ``drums+bass+other.<ext>``): stems known only together, such as a band backing under a known
  voice. The loss adds the L1 between the sum of those stems' estimates and the sum. Through
  ``stem_groups`` a sum of file stems that all make one model stem simply labels that stem.

The datasets then yield ``(mixture, {name: magnitude}, {name: weight})`` (stems, then sums keyed
``drums.bass.other``). Such tracks are never remixed across tracks: an example drawn from one is
that track's crop (each labelled stem, each sum and the unknown rest of the mixture with its own
gain). The remix takes each stem only from tracks that label it on their own, and with
``Augmentation(remix_silent_stems=False)`` only from those with a file for it. Tracks that use
neither give exactly the examples they gave before these existed.
"""

from stemtf.data.augment import DEFAULT_AUGMENTATION, Augmentation
from stemtf.data.layouts import AUDIO_EXTENSIONS, LAYOUTS, MUSDB_SOURCES, csv_tracks, detect_layout, folder_tracks, musdb_tracks
from stemtf.data.pipeline import training_dataset, validation_crops, validation_dataset
from stemtf.data.reading import read_crop, read_segment
from stemtf.data.split import split_tracks, training_split
from stemtf.data.tracks import MIXTURE, UNKNOWN, AudioSource, Track, stem_sums, sum_key, sum_name
from stemtf.errors import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_AUGMENTATION",
    "LAYOUTS",
    "MIXTURE",
    "MUSDB_SOURCES",
    "UNKNOWN",
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
    "stem_sums",
    "sum_key",
    "sum_name",
    "training_dataset",
    "training_split",
    "validation_crops",
    "validation_dataset",
]
