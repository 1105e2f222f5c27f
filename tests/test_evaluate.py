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
    lines = text.splitlines()
    assert lines[0] == "oracle" and "vocals" in text and "mean" in text
    assert lines[1].split()[1:3] == ["track", "SDR"]  # the whole-track SDR comes first


@pytest.mark.slow
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


def _lowpass(waveform: np.ndarray, cutoff: float) -> np.ndarray:
    spectrum = np.fft.rfft(waveform, axis=0)
    spectrum[np.fft.rfftfreq(len(waveform), 1 / SAMPLE_RATE) > cutoff] = 0
    return np.fft.irfft(spectrum, n=len(waveform), axis=0).astype(np.float32)


def _band_limited_pair():
    """Two 2 s mono references with nothing above 12 kHz (like lossy files) and estimates that leak 20 %."""
    references = {s: _lowpass(0.3 * music_like(2 * SAMPLE_RATE, num_channels=1, seed=i), 12000) for i, s in enumerate("ab")}
    noise = np.random.default_rng(1).standard_normal((2, 2 * SAMPLE_RATE, 1)).astype(np.float32) * 1e-3
    estimates = {"a": 0.8 * references["a"] + 0.2 * references["b"] + noise[0],
                 "b": 0.8 * references["b"] + 0.2 * references["a"] + noise[1]}
    return references, estimates


def test_band_limited_references_give_consistent_ratios():
    """Without the dither, museval's filters are singular here: SAR 0.00 and SIR -13 dB beside an SDR of 11 dB."""
    references, estimates = _band_limited_pair()
    scores = evaluate.score_track("t", references, estimates, sample_rate=SAMPLE_RATE).df
    medians = scores.groupby(["target", "metric"])["score"].median()
    for stem in "ab":
        sdr, sir, sar = (medians[stem, metric] for metric in ("SDR", "SIR", "SAR"))
        assert 9 < sdr < 13, medians  # 0.8 s + 0.2 t: about 11 dB
        assert sir > sdr and sar > sdr + 5, medians  # distortion = interference + artifacts: each ratio above SDR


def test_windows_with_a_near_silent_reference_are_left_out():
    references, estimates = _band_limited_pair()
    references["b"][:SAMPLE_RATE] *= 1e-4  # -90 dBFS in the first window: not silent, but nothing to score
    frames = evaluate.score_track("t", references, estimates, sample_rate=SAMPLE_RATE).df
    first, second = frames[frames.time == 0], frames[frames.time == 1]
    assert first.score.isna().all() and len(first) == 8  # every metric of both stems
    assert second.score.notna().all()


def test_degenerate_museval_columns_say_so(tmp_path):
    """A stem near-silent throughout: no window can be scored; the table shows '-' and the note says why."""
    root = tmp_path / "stems" / "quiet"
    root.mkdir(parents=True)
    for offset, stem in enumerate(STEMS):
        gain = 1e-4 if stem == "drums" else 0.5  # -80 dBFS
        sf.write(root / f"{stem}.wav", gain * music_like(2 * SAMPLE_RATE, seed=offset), SAMPLE_RATE, subtype="FLOAT")
    tracks = folder_tracks(tmp_path / "stems", stems=STEMS)
    results = evaluate.evaluate_tracks(tracks, stems=STEMS, sample_rate=SAMPLE_RATE, baseline="oracle")
    assert results.windows == {"quiet": (0, 2)}
    table = results.table()
    assert all(np.isfinite(table[stem]["cSDR"]) and np.isnan(table[stem]["SDR"]) for stem in STEMS)
    text = evaluate.format_table(table)
    assert "nan" not in text.lower()
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:]}
    assert float(rows["vocals"][0]) > 5 and rows["vocals"][1:] == ["-"] * 4 and rows["mean"][1:] == ["-"] * 4
    assert results.coverage_note().startswith("museval scored none of the 2 windows")


def test_named_tracks_are_the_only_ones_read(stem_folder, tmp_path):
    """Another track's stem that no model stem takes (a piano) cannot fail an evaluation of one track."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(stem_folder, root)
    (root / "C").mkdir()
    sf.write(root / "C" / "piano.wav", 0.5 * music_like(SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(DataError, match="piano"):
        evaluate.load_tracks(root, stems=STEMS)
    assert [t.name for t in evaluate.load_tracks(root, stems=STEMS, names=["B"])] == ["B"]
    with pytest.raises(StemtfError, match="'D' is not in the data; tracks: A, B, C"):
        evaluate.load_tracks(root, stems=STEMS, names=["D"])


def test_scoring_names_stay_importable_from_evaluate():
    from stemtf import scoring

    for name in ("sdr", "oracle_estimates", "audible_windows", "score_track", "check_dependencies", "AUDIBLE_DBFS",
                 "DITHER_DBFS"):
        assert getattr(evaluate, name) is getattr(scoring, name), name
