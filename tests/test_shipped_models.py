"""Regression guard for the shipped models: they load, and they separate real music they never saw.

The clip is 10 s of "Caesium" (held out from training, CC0), bundled as stems in tests/data. Every
model must give decisive masks (a randomly initialised network gives near-uniform ones), stems
that sum to the mixture, that each beat the unprocessed mixture on SDR, and that stay within 1 dB of
the SDR measured when the weights were shipped: missing, broken or untrained weights fail here.
(SDR alone would not catch untrained weights: on this clip uniform masks score about as well as the
shipped models do, see their model cards.)
"""

import pathlib

import keras
import numpy as np
import pytest
import soundfile as sf

from stemtf import spectral
from stemtf.config import SHIPPED_MODELS, load_model_config
from stemtf.model import load_model
from stemtf.evaluate import sdr
from stemtf.separator import Separator

CLIP = pathlib.Path(__file__).parent / "data" / "caesium_10s"
# Per model: each scored stem, the clip stems it is made of, and its SDR (dB) when shipped.
EXPECTED = {
    "2stems": {"vocals": (["vocals"], 0.56), "accompaniment": (["drums", "bass", "other"], 8.09)},
    "4stems": {"vocals": (["vocals"], -0.42), "drums": (["drums"], 2.74), "bass": (["bass"], 2.90), "other": (["other"], -1.11)},
    "5stems": {"vocals": (["vocals"], 0.21), "drums": (["drums"], 2.83), "bass": (["bass"], 2.54), "other": (["other"], -0.62)},
}
# The mask calibration each model ships with (config.json's mask_exponent, chosen on the validation collection;
# one per stem for 4stems).
MASK_EXPONENT = {"2stems": 0.5, "4stems": {"vocals": 0.35, "drums": 0.5, "bass": 0.25, "other": 0.35}, "5stems": 0.35}
STEMS = {
    "2stems": ("vocals", "accompaniment"),
    "4stems": ("vocals", "drums", "bass", "other"),
    "5stems": ("vocals", "drums", "bass", "piano", "other"),
}


@pytest.fixture(scope="module")
def clip():
    stems = {}
    for path in sorted(CLIP.glob("*.flac")):
        stems[path.stem], rate = sf.read(path, dtype="float32")
    return stems, rate


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["keras", "litert"])
@pytest.mark.parametrize("name", sorted(STEMS))
def test_shipped_model_separates_held_out_music(name, runtime, clip):
    config, directory = load_model_config(name)
    assert directory.parent == SHIPPED_MODELS
    assert config.stems == STEMS[name]
    assert (directory / "MODEL_CARD.md").is_file()
    stems, rate = clip
    mixture = sum(stems.values())
    separator = Separator.from_pretrained(name, runtime=runtime)
    assert separator.runtime == runtime
    spectrogram = spectral.stft(mixture, n_fft=config.n_fft, hop_length=config.hop_length)
    frames = min(spectrogram.shape[0], config.segment_frames)
    magnitude = np.zeros((1, config.segment_frames, config.max_bins, config.num_channels), np.float32)
    magnitude[0, :frames] = np.abs(spectrogram)[:frames, : config.max_bins, :]
    assert config.to_dict()["mask_exponent"] == MASK_EXPONENT[name]
    # the masks as trained (the sigmoid heads' ratios, before the calibration)
    model, _ = load_model(name)
    heads = keras.Model(model.input, [model.get_layer(f"head_{stem}").output for stem in config.stems])
    trained = np.stack([np.asarray(h)[0, :frames] for h in heads(magnitude, training=False)]).astype(np.float64)
    trained /= trained.sum(axis=0, keepdims=True)
    decisiveness = float(trained.max(axis=0).mean())  # 1/num_stems for uniform masks; ~0.28 for random 4stems
    assert decisiveness > 0.5, f"{name}: masks look untrained (mean largest mask {decisiveness:.2f})"
    estimates = separator.separate(mixture, rate)
    assert set(estimates) == set(config.stems)
    np.testing.assert_allclose(sum(estimates.values()), mixture, atol=1e-4)
    for stem, (parts, shipped) in EXPECTED[name].items():
        reference = sum(stems[p] for p in parts)
        model_sdr = sdr(reference[None], estimates[stem][None])[0]
        floor = sdr(reference[None], mixture[None])[0]
        assert model_sdr > floor, f"{name}/{stem}: SDR {model_sdr:.2f} dB is not above the mixture's {floor:.2f} dB"
        assert model_sdr > shipped - 1.0, f"{name}/{stem}: SDR {model_sdr:.2f} dB, {shipped:.2f} dB when shipped"


@pytest.mark.parametrize("name", sorted(STEMS))
def test_model_card_tables_come_from_the_current_evaluate(name):
    """The Caesium tables of every card: whole-track SDR first, museval's window count said, no degenerate ratios."""
    text = (SHIPPED_MODELS / name / "MODEL_CARD.md").read_text()
    section = text.split('### held-out real song: "Caesium"', 1)[1].split("\n### ", 1)[0]
    tables = section.split("```")[1::2]
    assert len(tables) == 3  # the model, the oracle (ideal masks) and the mixture
    for table in tables:
        lines = table.strip().splitlines()
        assert lines[1].split()[:3] == ["stem", "track", "SDR"], lines[1]
        assert lines[-1].startswith("museval scored ")
        rows = [line.split() for line in lines[2:-1]]
        assert "mean" in {row[0] for row in rows} and {row[0] for row in rows} <= set(STEMS[name]) | {"mean"}  # Caesium has no piano
        sar = [row[5] for row in rows]
        assert "0.00" not in sar and "-0.00" not in sar, table  # the signature of BSS-eval's singular filters
