"""The engine's speed-ups change no output bit: the 16-bit WAV conversion and the sliding plan's frame pool."""

import io

import numpy as np
import pytest
import soundfile as sf

from stemtf import audio, dsp, plans
from stemtf.audio.writing import pcm16

from conftest import SAMPLE_RATE, music_like, tiny_config


def _libsndfile_pcm16(samples: np.ndarray) -> np.ndarray:
    """What libsndfile itself makes of float samples in a 16-bit WAV (soundfile turns its clipping on)."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    buffer.seek(0)
    return sf.read(buffer, dtype="int16", always_2d=True)[0]


def test_pcm16_is_libsndfiles_own_conversion():
    """Around every one of the 65536 levels' thresholds, random samples, full scale, beyond it, NaN and infinities.

    (Every float32 in [-1, 1] was compared once too: no difference; that takes half a minute.)
    """
    levels = np.arange(-32768, 32768, dtype=np.float64)[:, None] * 65536
    edges = ((levels + np.array([-1.0, -0.5, 0.0, 0.5, 1.0])) / 2.0**31).astype(np.float32).ravel()
    special = np.array([0.0, -0.0, 1.0, -1.0, 1.5, -1.5, 3e38, -3e38, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 0.5], np.float32)
    samples = np.concatenate([edges, np.nextafter(edges, np.float32(2)), np.nextafter(edges, np.float32(-2)), special,
                              np.random.default_rng(0).uniform(-1, 1, 200_000).astype(np.float32)]).reshape(-1, 2)
    expected = _libsndfile_pcm16(np.clip(samples, -1.0, 1.0))  # the writer clips before libsndfile sees them
    np.testing.assert_array_equal(pcm16(samples), expected)
    np.testing.assert_array_equal(pcm16(np.asfortranarray(samples)), expected)  # channels-first storage too
    assert pcm16(samples).flags.c_contiguous


def test_a_16_bit_wav_holds_what_libsndfile_would_have_written(tmp_path):
    stems = music_like(6000, seed=3) * np.float32(3.0)  # some samples beyond full scale
    block = np.ascontiguousarray(stems.T).T  # channels-first storage, as the plans give their stems
    writer = audio.AudioWriter(tmp_path / "stem.wav", sample_rate=SAMPLE_RATE, num_channels=2)
    writer.write(block[:2500])
    writer.write(block[2500:], last=True)
    writer.commit()
    written, _ = sf.read(tmp_path / "stem.wav", dtype="int16", always_2d=True)
    np.testing.assert_array_equal(written, _libsndfile_pcm16(np.clip(block, -1.0, 1.0)))
    assert writer.clipped_samples == np.count_nonzero(np.abs(block) > 1.0) > 0
    assert writer.peak == float(np.max(np.abs(block)))


def _masks(magnitude: np.ndarray) -> np.ndarray:
    m = magnitude[0]
    share = m / (m + m.mean(axis=0, keepdims=True) + 1e-3)
    return np.stack([share, 1 - share])


def _one_thread(function, num_frames):
    function(0, num_frames)


@pytest.mark.parametrize("lookahead", [0, 8])
def test_the_sliding_plan_gives_the_same_bits_on_the_frame_pool_and_in_any_blocks(monkeypatch, lookahead):
    """Steps of 96 frames run on the pool's two threads (FFTs and overlap-add); the stems sum to the input
    and are those of one thread, whatever blocks the input comes in (frames left over from a block wait)."""
    config, waveform = tiny_config(), music_like(30_000, seed=1)

    def make():
        return plans.SlidingPlan(_masks, dsp.Spectral.of(config), num_stems=2, num_channels=2, window_frames=128,
                                 step_frames=96, lookahead_frames=lookahead)

    pooled = plans.run_array(make(), waveform)
    np.testing.assert_allclose(pooled.sum(axis=0), waveform, atol=1e-5)  # the masks sum to one: so do the stems
    blocks = np.concatenate(list(plans.run(make(), audio.ArrayReader(waveform, SAMPLE_RATE), block_samples=7777)), axis=1)
    np.testing.assert_array_equal(blocks, pooled)
    monkeypatch.setattr(dsp, "in_frame_blocks", _one_thread)
    np.testing.assert_array_equal(plans.run_array(make(), waveform), pooled)
