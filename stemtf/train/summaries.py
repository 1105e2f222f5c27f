"""TensorBoard pictures and sounds of one validation example, written at every checkpoint.

Loss curves say whether training moves; listening to a stem and looking at its spectrogram say
whether it moves the right way (a vocal head that learned hi-hats shows at once). At every
checkpoint :class:`ExampleSummaries` separates one fixed crop of a held-out track with the model
being trained and writes, under ``logs/example``:

- ``audio/STEM``: the estimated stem (and, once, ``audio/mixture`` and ``reference/STEM``);
- ``spectrograms``: the mixture and every estimated stem on one dB scale with a log frequency
  axis (needs matplotlib; without it only the audio is written).
"""

from __future__ import annotations

import importlib.util
import pathlib

import keras
import numpy as np
import tensorflow as tf

from stemtf import apply
from stemtf.config import ModelConfig
from stemtf.data import Track, read_crop
from stemtf.errors import DependencyError

EXAMPLE_LOG_DIR = "example"


def tensorboard_callbacks(
    log_dir: pathlib.Path, enabled: bool | None, *, mask_model: keras.Model, config: ModelConfig, track: Track,
    num_frames: int,
) -> list[keras.callbacks.Callback]:
    """TensorBoard callbacks writing to ``log_dir`` when asked (``enabled`` None: when the package is
    installed): the scalars, and :class:`ExampleSummaries` of ``track`` at every checkpoint.

    Raises:
        DependencyError: ``enabled`` is True and ``tensorboard`` is not installed.
    """
    available = importlib.util.find_spec("tensorboard") is not None
    if enabled and not available:
        raise DependencyError("TensorBoard logs", "tensorboard", "train")
    if not (available if enabled is None else enabled):
        return []
    return [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
        ExampleSummaries(mask_model=mask_model, config=config, track=track, log_dir=log_dir, num_frames=num_frames),
    ]


class ExampleSummaries(keras.callbacks.Callback):
    """Write audio and spectrogram summaries of one separated validation crop at every epoch end (checkpoint).

    Args:
        mask_model: The masks model being trained (what :func:`stemtf.model.build_model` returns).
        config: Its config.
        track: The track to take the example from (a held-out one).
        log_dir: The run's TensorBoard folder; summaries go to ``log_dir/example``.
        num_frames: STFT frames of the example (a multiple of the U-Net's downsampling; the
            training crop length is a good choice).
    """

    def __init__(self, *, mask_model: keras.Model, config: ModelConfig, track: Track, log_dir: str | pathlib.Path,
                 num_frames: int) -> None:
        super().__init__()
        self.mask_model, self.config, self.track = mask_model, config, track
        self.log_dir = pathlib.Path(log_dir) / EXAMPLE_LOG_DIR
        self.num_frames = num_frames
        self._writer = None
        self._mixture: np.ndarray | None = None

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy()) if self.model is not None else 0

    def on_train_begin(self, logs=None):
        config = self.config
        length = config.chunk_samples_for(self.num_frames)
        track_length = round(self.track.num_samples * config.sample_rate / self.track.sample_rate)
        start = max(0, (track_length - length) // 2)  # the middle of the song: intros are often quiet
        crop = read_crop(self.track, start, length, sample_rate=config.sample_rate, num_channels=config.num_channels,
                         stems=config.stems)
        self._mixture = crop[0]
        self._writer = tf.summary.create_file_writer(str(self.log_dir))
        with self._writer.as_default(step=self._step()):
            description = f"{self.track.name}, {length / config.sample_rate:.1f} s from {start / config.sample_rate:.1f} s"
            self._audio("audio/mixture", crop[0], description)
            for stem, reference in zip(config.stems, crop[1:]):
                if self.track.labels(stem):  # an unknown stem (or one only in a sum) has no reference
                    self._audio(f"reference/{stem}", reference, f"the true {stem} of {description}")
        self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            return
        estimates = self.separate()
        with self._writer.as_default(step=self._step()):
            for stem, estimate in zip(self.config.stems, estimates):
                self._audio(f"audio/{stem}", estimate, f"estimated {stem} of {self.track.name}")
            image = self._spectrogram_image(estimates)
            if image is not None:
                tf.summary.image("spectrograms", image, description=f"mixture and estimated stems of {self.track.name}")
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def separate(self) -> np.ndarray:
        """The example's stems with the current weights: float32 ``(num_stems, num_samples, num_channels)``."""
        stems = self.config.stems

        def predict(magnitude: np.ndarray) -> np.ndarray:
            outputs = self.mask_model(magnitude, training=False)
            return np.stack([np.asarray(outputs[stem][0], np.float32) for stem in stems])

        return apply.separate_chunk_numpy(predict, self.config, self._mixture)

    def _audio(self, name: str, waveform: np.ndarray, description: str) -> None:
        clipped = np.clip(waveform, -1.0, 1.0)[None].astype(np.float32)  # (1, samples, channels)
        tf.summary.audio(name, clipped, self.config.sample_rate, max_outputs=1, description=description)

    def _spectrogram_image(self, estimates: np.ndarray) -> tf.Tensor | None:
        from stemtf import plots
        from stemtf.errors import MissingExtraError

        try:
            plots.check_available()
        except MissingExtraError:  # audio alone is still worth having
            return None

        rate = self.config.sample_rate
        panels = {"mixture": plots.waveform_rows(self._mixture, rate, num_columns=400, num_rows=160)}
        for stem, estimate in zip(self.config.stems, estimates):
            panels[stem] = plots.waveform_rows(estimate, rate, num_columns=400, num_rows=160)
        figure = plots.spectrogram_figure(panels, sample_rate=rate, duration=self._mixture.shape[0] / rate,
                                          title=f"{self.track.name}, step {self._step()}")
        return tf.io.decode_png(plots.figure_png(figure), channels=3)[None]
