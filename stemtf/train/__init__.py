"""Train and fine-tune separation models: :func:`fit` and what it is built from.

- :mod:`stemtf.train.objective`: the loss (Spleeter's masked-magnitude L1), the spectrogram SDR
  metric, the training wrapper and the learning-rate schedule;
- :mod:`stemtf.train.checkpoints`: the run directory (a loadable model at every checkpoint plus
  ``checkpoint/`` for ``resume``) and the guard that never replaces a model by accident;
- :mod:`stemtf.train.datasets`: the train/validation split, the training stream and the validation crops;
- :mod:`stemtf.train.models`: the masks model to train (new, fine-tuned ``from`` another, encoder frozen)
  and its training wrapper;
- :mod:`stemtf.train.fitting`: :func:`fit` (optimizer, callbacks, resume, loop), built from the two above;
- :mod:`stemtf.train.distill`: a student trained on a teacher's stems of unlabelled audio (``stemtf distill``);
- :mod:`stemtf.train.summaries`: TensorBoard audio and spectrograms of a held-out example at every checkpoint;
- :mod:`stemtf.train.distributed`: the strategy (``auto``, or ``multi-worker`` from ``TF_CONFIG``)
  and the loop that stands in for ``model.fit`` under ``MultiWorkerMirroredStrategy``.
"""

from stemtf.train.checkpoints import (
    CHECKPOINT_DIR,
    LOG_DIR,
    STATE_FILE,
    check_output_dir,
    load_checkpoint_state,
    save_checkpoint,
)
from stemtf.train.distributed import STRATEGIES, read_tf_config
from stemtf.train.fitting import TrainingResult, fit
from stemtf.train.models import freeze_encoder_layers, initialise_from
from stemtf.train.objective import (
    LR_SCHEDULES,
    SpectrogramSDR,
    learning_rate_schedule,
    spectrogram_sdr,
    stem_losses,
    stem_metrics,
    training_model,
)
from stemtf.train.summaries import ExampleSummaries

__all__ = [
    "CHECKPOINT_DIR",
    "ExampleSummaries",
    "LOG_DIR",
    "LR_SCHEDULES",
    "STATE_FILE",
    "STRATEGIES",
    "SpectrogramSDR",
    "TrainingResult",
    "check_output_dir",
    "fit",
    "freeze_encoder_layers",
    "initialise_from",
    "learning_rate_schedule",
    "load_checkpoint_state",
    "read_tf_config",
    "save_checkpoint",
    "spectrogram_sdr",
    "stem_losses",
    "stem_metrics",
    "training_model",
]
