import json

import numpy as np
import pytest
import soundfile as sf

from stemtf import evaluate
from stemtf.data import folder_tracks
from stemtf.errors import DataError, StemtfError

from conftest import SAMPLE_RATE, music_like

STEMS = ("vocals", "drums", "other")


@pytest.fixture(scope="module")
def stem_folder(tmp_path_factory):
    """Two 3 s tracks of three distinct, partly overlapping stems; track B has no drums file."""
    root = tmp_path_factory.mktemp("stems")
    for index, name in enumerate(["A", "B"]):
        (root / name).mkdir()
        for offset, stem in enumerate(STEMS):
            if name == "B" and stem == "drums":
                continue
            sf.write(root / name / f"{stem}.wav", 0.5 * music_like(3 * SAMPLE_RATE, seed=10 * index + offset), SAMPLE_RATE, subtype="FLOAT")
    return root


def test_fast_sdr():
    reference = np.ones((1, 100, 2))
    assert evaluate.sdr(reference, reference)[0] > 70
    assert abs(evaluate.sdr(reference, 0.9 * reference)[0] - 20.0) < 1e-6
    assert abs(evaluate.sdr(reference, np.zeros_like(reference))[0]) < 1e-6


def test_baselines_bracket_each_other(stem_folder, tmp_path):
    tracks = folder_tracks(stem_folder, stems=STEMS)
    tables = {}
    for baseline in ("oracle", "mixture"):
        results = evaluate.evaluate_tracks(
            tracks, stems=STEMS, sample_rate=SAMPLE_RATE, baseline=baseline, output_dir=tmp_path / baseline
        )
        tables[baseline] = results.table()
        assert results.windows == {"A": (3, 3), "B": (3, 3)}  # no stem is silent in any window
        assert results.coverage() == 1.0
    for stem in STEMS:
        for metric in ("SDR", "cSDR"):
            assert tables["oracle"][stem][metric] > 8, tables
            assert tables["mixture"][stem][metric] < 1, tables
            assert tables["oracle"][stem][metric] > tables["mixture"][stem][metric] + 8
    # museval's per-track JSON, one per track; the silent drums of B are left out.
    saved = json.loads((tmp_path / "oracle" / "B.json").read_text())
    assert {t["name"] for t in saved["targets"]} == {"vocals", "other"}
    assert set(saved["targets"][0]["frames"][0]["metrics"]) == {"SDR", "SIR", "ISR", "SAR"}
    text = evaluate.format_table(tables["oracle"], title="oracle")
    assert text.splitlines()[0] == "oracle" and "vocals" in text and "mean" in text and "cSDR" in text


def test_perfect_estimates_score_high_and_mixture_low():
    references = {stem: 0.5 * music_like(2 * SAMPLE_RATE, seed=i) for i, stem in enumerate(STEMS)}
    noise = np.random.default_rng(0).standard_normal((2 * SAMPLE_RATE, 2)).astype(np.float32) * 1e-4
    nearly = {stem: waveform + noise for stem, waveform in references.items()}  # exact copies give NaN in museval
    perfect = evaluate.score_track("t", references, nearly, sample_rate=SAMPLE_RATE)
    mixture = sum(references.values())
    floor = evaluate.score_track("t", references, {s: mixture for s in STEMS}, sample_rate=SAMPLE_RATE)
    perfect_sdr = perfect.df.query("metric == 'SDR'")["score"].median()
    floor_sdr = floor.df.query("metric == 'SDR'")["score"].median()
    assert perfect_sdr > 40 and floor_sdr < 0


def test_model_baseline_needs_a_separator_and_known_baselines(stem_folder):
    tracks = folder_tracks(stem_folder, stems=STEMS)
    with pytest.raises(ValueError, match="separator"):
        evaluate.evaluate_tracks(tracks, stems=STEMS, sample_rate=SAMPLE_RATE)
    with pytest.raises(StemtfError, match="`baseline` must be one of"):
        evaluate.evaluate_tracks(tracks, stems=STEMS, sample_rate=SAMPLE_RATE, baseline="ideal")
    with pytest.raises(DataError, match="No tracks"):
        evaluate.evaluate_tracks([], stems=STEMS, sample_rate=SAMPLE_RATE, baseline="oracle")


def test_model_is_scored_between_floor_and_ceiling_shapes(stem_folder, tiny_model, tmp_path):
    from stemtf.separator import Separator

    model, config = tiny_model
    tracks = folder_tracks(stem_folder, stems=config.stems)
    results = evaluate.evaluate_tracks(
        tracks, stems=config.stems, sample_rate=SAMPLE_RATE, separator=Separator(model, config), duration=2.0,
        output_dir=tmp_path,
    )
    table = results.table()
    assert set(table) == set(config.stems)
    assert all(np.isfinite(table[stem]["SDR"]) and np.isfinite(table[stem]["cSDR"]) for stem in config.stems)


def test_oracle_estimates_are_ideal_ratio_masks():
    references = np.stack([0.5 * music_like(SAMPLE_RATE, seed=i) for i in range(3)])
    mixture = references.sum(axis=0)
    estimates = evaluate.oracle_estimates(mixture, references, n_fft=1024, hop_length=256)
    assert estimates.shape == references.shape and estimates.dtype == np.float32
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)  # ratio masks sum to one
    # The same as every stem at once, written out directly.
    from stemtf import spectral

    magnitudes = np.abs(spectral.stft(references, n_fft=1024, hop_length=256)) + 1e-10
    masks = magnitudes / magnitudes.sum(axis=0, keepdims=True)
    direct = spectral.istft(spectral.stft(mixture, n_fft=1024, hop_length=256)[None] * masks.astype(np.complex64),
                            n_fft=1024, hop_length=256, num_samples=SAMPLE_RATE)
    np.testing.assert_allclose(estimates, direct, atol=1e-5)
    assert all(evaluate.sdr(references, estimates) > 5)
