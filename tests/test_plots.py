"""Pictures: spectrogram and SDR PNGs from the library, `stemtf separate --plot` and `stemtf evaluate -o`."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from stemtf import plots  # noqa: E402
from stemtf.cli import main  # noqa: E402
from stemtf.errors import MissingExtraError  # noqa: E402

from conftest import SAMPLE_RATE, music_like  # noqa: E402


def decoded(path) -> Image.Image:
    """The PNG at ``path``, fully decoded (a truncated or corrupt file raises)."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.copy()


def tone(frequency: float, seconds: float = 1.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * frequency * t)] * 2, axis=1).astype(np.float32)


@pytest.mark.parametrize("frequency", [110.0, 1000.0, 8000.0])
def test_spectrogram_rows_put_a_tone_in_its_log_frequency_row(frequency):
    rows = plots.waveform_rows(tone(frequency), SAMPLE_RATE, num_columns=20, num_rows=128)
    assert rows.shape == (20, 128)
    edges = plots.log_frequency_edges(SAMPLE_RATE, num_rows=128)
    loudest = int(np.argmax(rows.mean(axis=0)))
    assert edges[loudest] / 1.1 <= frequency <= edges[loudest + 1] * 1.1  # within a row (a Hann main lobe) of it
    # Far from the tone (three octaves away) the power is at least 60 dB lower.
    far = np.argmin(np.abs(edges[:-1] - (frequency / 8 if frequency > 1000 else frequency * 8)))
    assert 10 * np.log10(rows.mean(axis=0)[loudest] / rows.mean(axis=0)[far]) > 60


def test_spectrogram_rows_stream_long_input_into_few_columns():
    # The block reader and the column averaging: the loud second half must show in the second half.
    quiet_then_loud = np.concatenate([0.001 * tone(440.0, 2.0), tone(440.0, 2.0)])
    rows = plots.waveform_rows(quiet_then_loud, SAMPLE_RATE, num_columns=10)
    energy = rows.sum(axis=1)
    assert rows.shape[0] == 10
    assert energy[6:].min() > 1e5 * energy[:4].max()
    short = plots.waveform_rows(tone(440.0, 0.01), SAMPLE_RATE)  # shorter than one window
    assert short.shape == (1, 256) and short.max() > 0


def test_plot_separation_writes_a_labelled_png(tmp_path):
    mixture = music_like(SAMPLE_RATE * 2)
    sf.write(tmp_path / "song.wav", mixture, SAMPLE_RATE)
    stems = {}
    for index, stem in enumerate(["vocals", "drums", "bass"]):
        stems[stem] = tmp_path / f"{stem}.wav"
        sf.write(stems[stem], mixture * (index + 1) / 6, SAMPLE_RATE)
    path = plots.plot_separation(tmp_path / "song.wav", stems, tmp_path / "out" / "song.png", offset=0.0)
    image = decoded(path)
    assert image.size[0] == 1000 and 500 <= image.size[1] <= 800  # one panel per stem plus the mixture
    pixels = np.asarray(image.convert("L"), np.float32)
    assert pixels.std() > 20  # not a blank canvas
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_sdr_chart_png(tmp_path):
    scores = {"4stems": {"vocals": 0.3, "drums": 3.6}, "oracle": {"vocals": 9.6, "drums": 10.0},
              "mixture": {"vocals": -6.7, "drums": float("nan")}}
    image = decoded(plots.plot_scores(scores, tmp_path / "sdr.png", title="t"))
    assert 500 <= image.size[0] <= 800 and image.size[1] == 380
    with pytest.raises(ValueError, match="at least one system"):
        plots.sdr_figure({})


def test_missing_matplotlib_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(MissingExtraError, match=r'^Plots need matplotlib: pip install (-e )?"\.\[plots\]"'):
        plots.check_available()


@pytest.mark.parametrize("direct_url, command", [
    ('{"url": "file:///src/stemtf", "dir_info": {"editable": true}}', 'pip install -e ".[plots]"'),
    ('{"url": "file:///src/stemtf", "dir_info": {}}', 'pip install ".[plots]"'),
    (None, 'pip install ".[plots]"'),  # a wheel from an index or a file: no direct_url.json
])
def test_install_hint_keeps_an_editable_install_editable(monkeypatch, direct_url, command):
    from importlib import metadata

    class Distribution:
        def read_text(self, name):
            return direct_url if name == "direct_url.json" else None

    monkeypatch.setattr(metadata, "distribution", lambda name: Distribution())
    assert plots.install_hint("plots") == command


def test_long_input_spectrogram_costs_half_the_transforms(monkeypatch):
    """A song with many frames per column is transformed at half a window's hop: half the frames, same picture."""
    long = music_like(120 * SAMPLE_RATE, num_channels=1, seed=3)
    calls = []
    real_rfft = np.fft.rfft
    monkeypatch.setattr(np.fft, "rfft", lambda frames, *a, **k: calls.append(frames.shape[0]) or real_rfft(frames, *a, **k))
    rows = plots.waveform_rows(long, SAMPLE_RATE, num_columns=100)
    assert sum(calls) == 1 + (long.shape[0] - plots.PLOT_N_FFT) // (plots.PLOT_N_FFT // 2)
    monkeypatch.setattr(np.fft, "rfft", real_rfft)
    every_frame = plots.waveform_rows(long, SAMPLE_RATE, num_columns=100, hop_length=plots.PLOT_N_FFT // 2)
    np.testing.assert_allclose(rows, every_frame, rtol=1e-5)


def test_cli_separate_plot_writes_a_png_per_track(capsys, tiny_model_dir, tmp_path):
    for name, seconds in (("one", 1.5), ("two", 2.5)):
        sf.write(tmp_path / f"{name}.flac", music_like(int(seconds * SAMPLE_RATE), seed=len(name)), SAMPLE_RATE)
    code = main(["separate", str(tmp_path / "one.flac"), str(tmp_path / "two.flac"), "-m", str(tiny_model_dir),
                 "-o", str(tmp_path / "out"), "--runtime", "keras", "--plot", "--offset", "0.5", "-q"])
    _, err = capsys.readouterr()
    assert code == 0, err
    for name in ("one", "two"):
        folder = tmp_path / "out" / name
        assert sorted(p.name for p in folder.iterdir()) == sorted(["drums.wav", "other.wav", "vocals.wav", f"{name}_spectrograms.png"])
        image = decoded(folder / f"{name}_spectrograms.png")
        assert image.size[0] == 1000 and 500 <= image.size[1] <= 800


def test_cli_separate_plot_without_matplotlib_fails_before_work(capsys, tiny_model_dir, stereo_wav, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = main(["separate", str(stereo_wav), "-m", str(tiny_model_dir), "-o", str(tmp_path / "out"), "--plot"])
    _, err = capsys.readouterr()
    assert code == 1 and err.strip().splitlines() == [f"stemtf: error: Plots need matplotlib: {plots.install_hint('plots')} (from the stemtf folder)."]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_evaluate_writes_sdr_chart_with_baselines(capsys, tiny_model_dir, tmp_path, monkeypatch):
    root = tmp_path / "stems" / "song"
    root.mkdir(parents=True)
    for index, stem in enumerate(["vocals", "drums", "other"]):
        sf.write(root / f"{stem}.wav", 0.3 * music_like(SAMPLE_RATE * 2, seed=index), SAMPLE_RATE)
    code = main(["evaluate", str(tiny_model_dir), "--data", str(tmp_path / "stems"), "-o", str(tmp_path / "eval"), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / "eval" / "song.json").is_file() and f"Chart: {tmp_path / 'eval' / 'sdr_chart.png'}" in out
    image = decoded(tmp_path / "eval" / "sdr_chart.png")
    assert 500 <= image.size[0] <= 800 and image.size[1] == 380

    # The chart's numbers: the model's cSDR and the two baselines', from the library call the CLI makes.
    from stemtf import evaluate
    from stemtf.config import load_model_config
    from stemtf.separator import Separator

    config, _ = load_model_config(tiny_model_dir)
    tracks = evaluate.load_tracks(tmp_path / "stems", stems=config.stems)
    results = evaluate.evaluate_tracks(tracks, stems=config.stems, sample_rate=config.sample_rate,
                                       separator=Separator.from_pretrained(tiny_model_dir, runtime="keras"),
                                       n_fft=config.n_fft, hop_length=config.hop_length, baseline_scores=("oracle", "mixture"))
    medians = results.global_sdr_medians("tiny")
    assert list(medians) == ["tiny", "oracle", "mixture"]
    assert all(medians["oracle"][s] > medians["tiny"][s] for s in config.stems)  # ideal masks beat a random model
    assert all(medians["oracle"][s] > medians["mixture"][s] for s in config.stems)
    assert medians["mixture"]["vocals"] == pytest.approx(results.baseline_sdr["mixture"]["song"]["vocals"])


def test_cli_evaluate_chart_without_matplotlib_fails_before_work(capsys, tiny_model_dir, tmp_path, monkeypatch):
    (tmp_path / "stems" / "song").mkdir(parents=True)
    sf.write(tmp_path / "stems" / "song" / "vocals.wav", music_like(SAMPLE_RATE), SAMPLE_RATE)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = main(["evaluate", str(tiny_model_dir), "--data", str(tmp_path / "stems"), "-o", str(tmp_path / "eval")])
    _, err = capsys.readouterr()
    assert code == 1 and err.strip().splitlines() == [f"stemtf: error: Plots need matplotlib: {plots.install_hint('plots')} (from the stemtf folder)."]
    assert not (tmp_path / "eval").exists()
