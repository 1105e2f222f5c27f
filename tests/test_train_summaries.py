"""The TensorBoard example summaries of `stemtf.train.fit`: audio and spectrogram images at every checkpoint."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("matplotlib")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from stemtf import train  # noqa: E402
from stemtf.train.summaries import EXAMPLE_LOG_DIR  # noqa: E402

from test_train import CONFIG, FAST, RATE, write_toy_data  # noqa: E402


def read_events(log_dir) -> dict[str, list[tuple[int, str, np.ndarray]]]:
    """``{tag: [(step, plugin, tensor)]}`` of every summary in the event files under ``log_dir``."""
    found: dict[str, list] = {}
    for path in sorted(log_dir.rglob("*tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                found.setdefault(value.tag, []).append((event.step, plugin, tf.make_ndarray(value.tensor)))
    return found


@pytest.mark.slow
def test_fit_writes_audio_and_spectrogram_summaries_at_every_checkpoint(tmp_path):
    data = write_toy_data(tmp_path / "data", num_tracks=3)
    result = train.fit(CONFIG, data, output_dir=tmp_path / "run", steps=4, checkpoint_every=2, seed=0,
                       validation_tracks=["song2"], tensorboard=True, **FAST)
    assert result.step == 4
    events = read_events(result.output_dir / "logs" / EXAMPLE_LOG_DIR)

    # Written once at the start: the mixture and the true stems of the held-out example.
    for tag in ("audio/mixture", "reference/a", "reference/b"):
        assert [(step, plugin) for step, plugin, _ in events[tag]] == [(0, "audio")], tag
    # At every checkpoint: each estimated stem as audio, and the spectrogram picture.
    for stem in CONFIG.stems:
        assert [(step, plugin) for step, plugin, _ in events[f"audio/{stem}"]] == [(2, "audio"), (4, "audio")]
    images = events["spectrograms"]
    assert [(step, plugin) for step, plugin, _ in images] == [(2, "images"), (4, "images")]

    width, height, png = images[-1][2][:3]
    picture = Image.open(io.BytesIO(png))
    picture.load()  # decodes the whole PNG: fails on a truncated or corrupt one
    assert picture.size == (int(width), int(height))
    assert 600 <= picture.size[0] <= 1400 and 300 <= picture.size[1] <= 1200

    # The audio is a real WAV of the example's length, and the estimates sum to the mixture.
    def wav(tag, index=-1):
        import soundfile as sf

        waveform, rate = sf.read(io.BytesIO(events[tag][index][2][0][0]), dtype="float32")
        assert rate == RATE
        return waveform

    mixture = wav("audio/mixture", 0)
    assert mixture.shape == (CONFIG.chunk_samples_for(FAST["num_frames"]), 2) and np.abs(mixture).max() > 0.01
    total = wav("audio/a") + wav("audio/b")
    np.testing.assert_allclose(total, mixture, atol=2e-3)  # 16-bit WAV in the event file


@pytest.mark.slow
def test_without_matplotlib_the_audio_is_still_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    data = write_toy_data(tmp_path / "data", num_tracks=2)
    result = train.fit(CONFIG, data, output_dir=tmp_path / "run", steps=2, checkpoint_every=2, seed=0,
                       validation_tracks=["song1"], tensorboard=True, **FAST)
    events = read_events(result.output_dir / "logs" / EXAMPLE_LOG_DIR)
    assert "spectrograms" not in events
    assert [step for step, _, _ in events["audio/a"]] == [2] and [step for step, _, _ in events["audio/b"]] == [2]
