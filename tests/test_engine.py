"""The numpy engine: stemtf.dsp (signal processing) and stemtf.plans (one push interface, three drivers)."""

import subprocess
import sys

import numpy as np
import pytest

from stemtf import audio, dsp, plans
from stemtf.errors import AudioError

from conftest import SAMPLE_RATE, music_like, tiny_config


def _chunk_function(chunk: np.ndarray) -> np.ndarray:
    """Two 'stems' that differ along the chunk, so a wrong boundary or fade shows."""
    ramp = np.linspace(0.2, 1.0, chunk.shape[0], dtype=np.float32)[:, None]
    return np.stack([chunk * ramp, chunk * (1 - ramp)])


def _window_masks(magnitude: np.ndarray) -> np.ndarray:
    m = magnitude[0]
    share = m / (m + m.mean(axis=0, keepdims=True) + 1e-3)
    return np.stack([share, 1 - share])


def _plans():
    config = tiny_config()
    return {
        "chunk": lambda: plans.ChunkPlan(_chunk_function, num_stems=2, num_channels=2, chunk_samples=1000, overlap_samples=200),
        "sliding": lambda: plans.SlidingPlan(_window_masks, dsp.Spectral.of(config), num_stems=2, num_channels=2,
                                             window_frames=16, step_frames=4, lookahead_frames=2),
    }


@pytest.mark.parametrize("kind", ["chunk", "sliding"])
@pytest.mark.parametrize("total", [1, 999, 4321])
def test_every_driver_gives_the_same_samples(kind, total):
    make = _plans()[kind]
    waveform = music_like(total, seed=total)
    whole = plans.run_array(make(), waveform)
    assert whole.shape == (2, total, 2)
    offline = np.concatenate(list(plans.run(make(), audio.ArrayReader(waveform, SAMPLE_RATE), block_samples=333)), axis=1)
    np.testing.assert_array_equal(offline, whole)
    live = plans.Delayed(make(), num_stems=2, num_channels=2)
    sizes = np.random.default_rng(total).integers(1, 700, size=total)
    pieces, position = [], 0
    for size in sizes:
        if position >= total:
            break
        block = waveform[position : position + size]
        pieces.append(live.process(block))
        assert pieces[-1].shape == (2, block.shape[0], 2)  # as many samples out as in
        position += size
    pieces.append(live.flush())
    streamed = np.concatenate(pieces, axis=1)
    assert streamed.shape == (2, total + live.latency_samples, 2)
    np.testing.assert_array_equal(streamed[:, : live.latency_samples], 0.0)
    np.testing.assert_array_equal(streamed[:, live.latency_samples :], whole)


def test_a_plan_copies_what_it_is_fed():
    """An audio callback reuses its buffer: the plan must not keep a view of it."""
    waveform = music_like(2500)
    expected = plans.run_array(_plans()["chunk"](), waveform)
    plan, buffer, out = _plans()["chunk"](), np.empty((500, 2), np.float32), []
    for start in range(0, 2500, 500):
        buffer[...] = waveform[start : start + 500]
        out.append(plan.feed(buffer).copy())
        buffer[...] = np.nan  # the caller overwrites its buffer before the next block
    out.append(plan.finish())
    np.testing.assert_array_equal(np.concatenate(out, axis=1), expected)


def test_run_counts_chunks_and_refuses_an_empty_reader():
    calls = []
    waveform = music_like(4321)
    blocks = plans.run(_plans()["chunk"](), audio.ArrayReader(waveform, SAMPLE_RATE),
                       progress=lambda done, total: calls.append((done, total)), total_chunks=6)
    assert sum(block.shape[1] for block in blocks) == 4321
    assert calls == [(i, 6) for i in range(7)] and dsp.num_chunks(4321, chunk_samples=1000, overlap_samples=200) == 6
    with pytest.raises(AudioError, match="holds no audio samples"):
        list(plans.run(_plans()["chunk"](), audio.ArrayReader(np.zeros((0, 2), np.float32), SAMPLE_RATE)))


def test_sliding_latency_is_the_documented_formula():
    config = tiny_config()
    plan = _plans()["sliding"]()
    assert plan.latency_samples == (4 + 2 + config.n_fft // config.hop_length - 1) * config.hop_length
    with pytest.raises(ValueError, match="sum <= window_frames"):
        plans.SlidingPlan(_window_masks, config, num_stems=2, num_channels=2, window_frames=4, step_frames=4, lookahead_frames=1)
    with pytest.raises(ValueError, match=r"`mask_extension` must be one of \['average', 'edge', 'zeros'\]"):
        dsp.Spectral(256, 64, 64, "mirror")


def test_stft_pair_gives_the_input_back_and_the_engine_loads_without_tensorflow():
    waveform = music_like(5000)
    spectrogram = dsp.stft(waveform, n_fft=256, hop_length=64)
    np.testing.assert_allclose(dsp.istft(spectrogram, n_fft=256, hop_length=64, num_samples=5000), waveform, atol=1e-6)
    code = ("import sys, stemtf.dsp, stemtf.plans, stemtf.interpreters, stemtf.litert_runner, stemtf.streaming; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip() == "[]"
