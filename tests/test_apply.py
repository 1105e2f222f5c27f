"""The one home of the separation math: chunk plan, cross-fade, masks -> stems, format conversion."""

import os
import time

import numpy as np
import pytest
import tensorflow as tf

from stemtf import apply, audio, litert_runner
from stemtf.evaluate import oracle_estimates

from conftest import SAMPLE_RATE, music_like, tiny_config


def _chunk_function(seed: int):
    """A chunk function that differs per chunk (so a wrong chunk boundary or fade shows): a position-dependent gain."""
    gains = np.random.default_rng(seed).uniform(0.5, 1.5, size=(2, 1, 1)).astype(np.float32)

    def separate(chunk: np.ndarray) -> np.ndarray:
        ramp = np.linspace(0.2, 1.0, chunk.shape[0], dtype=np.float32)[:, None]
        return np.stack([chunk * ramp, chunk * (1 - ramp)]) * gains

    return separate


@pytest.mark.parametrize("num_samples", [1, 999, 1000, 1001, 1800, 4321, 10_000])
@pytest.mark.parametrize("overlap", [0, 1, 200, 500])
def test_litert_runner_copy_is_pinned_to_the_library(num_samples, overlap):
    # litert_runner keeps a dependency-free copy of the chunk plan and cross-fade; both must agree.
    waveform = music_like(num_samples, seed=num_samples)
    separate = _chunk_function(overlap)
    reader = audio.ArrayReader(waveform, SAMPLE_RATE)
    library = np.concatenate(
        list(apply.separate_stream(reader, separate, chunk_samples=1000, overlap_samples=overlap)), axis=1
    )
    runner = litert_runner.separate_chunks(waveform, separate, chunk_samples=1000, overlap_samples=overlap)
    assert library.shape == runner.shape == (2, num_samples, 2)
    np.testing.assert_allclose(library, runner, atol=1e-6)
    expected = 1 if num_samples <= 1000 else 1 + -(-(num_samples - 1000) // (1000 - overlap))
    assert apply.num_chunks(num_samples, chunk_samples=1000, overlap_samples=overlap) == expected


def test_identity_chunks_return_the_input_and_progress_counts_chunks():
    waveform = music_like(12_345)
    calls = []
    blocks = apply.separate_stream(
        audio.ArrayReader(waveform, SAMPLE_RATE), lambda chunk: np.stack([chunk]), chunk_samples=2000,
        overlap_samples=300, progress=lambda done, total: calls.append((done, total)),
    )
    np.testing.assert_allclose(np.concatenate(list(blocks), axis=1)[0], waveform, atol=1e-6)
    total = apply.num_chunks(12_345, chunk_samples=2000, overlap_samples=300)
    assert calls == [(i, total) for i in range(total + 1)]


def test_chunk_plan_in_graph_matches_python():
    for num_samples in (1, 500, 1000, 1001, 5000, 123_457):
        in_graph = apply.num_chunks(tf.constant(num_samples), chunk_samples=1000, overlap_samples=250)
        assert int(in_graph) == apply.num_chunks(num_samples, chunk_samples=1000, overlap_samples=250)


def test_crossfade_gains_add_up_to_one():
    ramp = apply.crossfade_ramp(7)
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0, atol=1e-7)
    assert ramp[0] > 0 and ramp[-1] < 1 and np.all(np.diff(ramp) > 0)
    with pytest.raises(ValueError, match="between 0 and 500"):
        apply.check_overlap(501, 1000)


def test_both_stft_pairs_give_the_same_stems(tiny_model):
    model, config = tiny_model
    waveform = tf.constant(music_like(config.chunk_samples))
    complex_stems = apply.separate_chunk(model, config, waveform)
    portable = apply.separate_chunk(model, config, waveform, transform=apply.transform_for(config, portable=True))
    assert len(complex_stems) == len(portable) == len(config.stems)
    for a, b in zip(complex_stems, portable):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-4)
    # Ratio masks extended to every bin: the stems add up to the mixture.
    np.testing.assert_allclose(tf.add_n(complex_stems).numpy(), waveform.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="Wiener filtering needs complex"):
        apply.separate_chunk(model, config, waveform, transform=apply.transform_for(config, portable=True), wiener_iterations=1)


def test_ratio_mask_models_take_the_last_stem_as_the_chunk_minus_the_others(tiny_model):
    model, config = tiny_model
    waveform = tf.constant(music_like(config.chunk_samples))

    class Counting(apply.ComplexTransform):
        calls = 0

        def synthesize(self, spectrogram, num_samples):
            Counting.calls += 1
            return super().synthesize(spectrogram, num_samples)

    stems = apply.separate_chunk(model, config, waveform, transform=Counting(n_fft=config.n_fft, hop_length=config.hop_length))
    assert Counting.calls == len(config.stems) - 1  # one inverse STFT fewer
    np.testing.assert_array_equal(stems[-1].numpy(), (waveform - tf.add_n(stems[:-1])).numpy())
    transform = apply.transform_for(config)
    spectrogram = transform.analyze(waveform)
    masks = apply.predict_masks(model, transform.magnitude(spectrogram), config)
    full = apply.masks_to_stems(transform, spectrogram, masks, num_samples=config.chunk_samples)
    np.testing.assert_allclose(stems[-1].numpy(), full[-1].numpy(), atol=1e-5)  # the same stem, one transform fewer

    # A network without ratio masks (masks need not sum to one) gets every inverse STFT.
    Counting.calls = 0
    plain = lambda magnitude, training=False: {stem: tf.ones_like(magnitude) * 0.5 for stem in config.stems}
    apply.separate_chunk(plain, config, waveform, transform=Counting(n_fft=config.n_fft, hop_length=config.hop_length))
    assert Counting.calls == len(config.stems)


def test_oracle_goes_through_the_same_masking():
    config = tiny_config()
    references = np.stack([music_like(4000, seed=1), music_like(4000, seed=2) * 0.5])
    mixture = references.sum(axis=0)
    estimates = oracle_estimates(mixture, references, n_fft=config.n_fft, hop_length=config.hop_length)
    transform = apply.ComplexTransform(n_fft=config.n_fft, hop_length=config.hop_length)
    magnitudes = [transform.magnitude(transform.analyze(r)) + 1e-10 for r in references]
    by_hand = apply.masks_to_stems(
        transform, transform.analyze(mixture), [m / tf.add_n(magnitudes) for m in magnitudes], num_samples=4000
    )
    for estimate, expected in zip(estimates, by_hand):
        np.testing.assert_allclose(estimate, expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)


@pytest.mark.parametrize("rate,channels", [(44100, 2), (44100, 1), (22050, 2), (48000, 1)])
def test_model_format_round_trip_keeps_shape_and_length(rate, channels):
    waveform = music_like(rate // 3, num_channels=channels, sample_rate=rate)
    model_input = apply.to_model_format(waveform, rate, model_rate=44100, model_channels=2)
    assert model_input.dtype == np.float32 and model_input.shape[1] == 2
    back = apply.from_model_format(model_input, model_rate=44100, sample_rate=rate, num_channels=channels, num_samples=waveform.shape[0])
    assert back.shape == waveform.shape
    if rate == 44100 and channels == 2:
        np.testing.assert_array_equal(back, waveform)


def test_more_than_two_channels_is_a_clear_error():
    with pytest.raises(Exception, match="6 channels; stemtf separates mono or stereo"):
        apply.to_model_format(np.zeros((100, 6), np.float32), 44100, model_rate=44100, model_channels=2)


def test_last_stem_is_the_chunk_minus_the_others_only_for_ratio_masks():
    from conftest import music_like, tiny_config

    config = tiny_config()
    waveform = music_like(config.chunk_samples, seed=7)
    rng = np.random.default_rng(7)
    raw = rng.uniform(0.01, 1, (3, config.segment_frames, config.max_bins, 2)).astype(np.float32)
    spectrogram = apply.stft_numpy(waveform, n_fft=config.n_fft, hop_length=config.hop_length)

    def explicit(masks):
        full = [apply.extend_masks_numpy(m, num_bins=config.num_bins, how=config.mask_extension,
                                         extension_bins=config.extension_bins) for m in masks]
        return np.stack([apply.istft_numpy(spectrogram * m, n_fft=config.n_fft, hop_length=config.hop_length,
                                           num_samples=waveform.shape[0]) for m in full])

    for masks in (raw / raw.sum(axis=0), raw):  # ratio masks; masks that do not sum to one
        stems = apply.separate_chunk_numpy(lambda magnitude, m=masks: m, config, waveform)
        np.testing.assert_allclose(stems, explicit(masks), atol=2e-6)
    ratio = apply.separate_chunk_numpy(lambda magnitude: raw / raw.sum(axis=0), config, waveform)
    np.testing.assert_allclose(ratio.sum(axis=0), waveform, atol=1e-6)


@pytest.mark.skipif(not hasattr(os, "fork") or (os.cpu_count() or 1) < 2, reason="needs fork and two cores (the FFT threads)")
def test_numpy_stft_pair_runs_in_a_forked_child():
    """The FFT thread pool of a parent has no threads in a forked child: the child must make its own, not hang."""
    waveform = music_like(SAMPLE_RATE)
    expected = apply.stft_numpy(waveform, n_fft=256, hop_length=64)  # >= 64 frames: the pool exists now
    assert expected.shape[0] >= 64
    pid = os.fork()
    if pid == 0:  # the child: both transforms through the pool, then report by exit status
        status = 1
        try:
            spectrogram = apply.stft_numpy(waveform, n_fft=256, hop_length=64)
            back = apply.istft_numpy(spectrogram, n_fft=256, hop_length=64, num_samples=waveform.shape[0])
            status = 0 if np.array_equal(spectrogram, expected) and np.allclose(back, waveform, atol=1e-5) else 1
        finally:
            os._exit(status)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in the numpy STFT")


@pytest.fixture(scope="module")
def zeros_model():
    """``(model, config)``: a tiny random model with Spleeter's ``mask_extension: zeros`` (0 above max_bins)."""
    import keras

    from stemtf.model import build_model

    keras.utils.set_random_seed(3)
    config = tiny_config(mask_extension="zeros")
    return build_model(config), config


def _band_energy(waveform: np.ndarray, config, low: int, high: int) -> float:
    """Energy of ``waveform``'s STFT in bins ``low .. high - 1``."""
    spectrogram = apply.stft_numpy(waveform, n_fft=config.n_fft, hop_length=config.hop_length)
    return float(np.sum(np.abs(spectrogram[:, low:high]) ** 2))


def test_zeros_extension_leaves_nothing_above_max_bins_and_graphs_equal_the_engine(zeros_model):
    from stemtf import dsp, runtimes

    model, config = zeros_model
    waveform = music_like(config.chunk_samples, seed=5)
    predict = runtimes.KerasMasks(model, config, segment_frames=config.segment_frames)
    engine = dsp.separate_chunk(predict, config, waveform)

    class Counting(apply.ComplexTransform):
        calls = 0

        def synthesize(self, spectrogram, num_samples):
            Counting.calls += 1
            return super().synthesize(spectrogram, num_samples)

    # The graph path (SavedModel: tf.signal; TFLite/ONNX: the matmul DFT) equals the numpy engine, and
    # takes no "last stem = chunk minus the others" shortcut: the masks no longer sum to one above max_bins.
    graph = apply.separate_chunk(model, config, tf.constant(waveform), transform=Counting(n_fft=config.n_fft, hop_length=config.hop_length))
    assert Counting.calls == len(config.stems)
    portable = apply.separate_chunk(model, config, tf.constant(waveform), transform=apply.transform_for(config, portable=True))
    for stem, from_graph, from_portable in zip(engine, graph, portable):
        np.testing.assert_allclose(from_graph.numpy(), stem, atol=2e-5)
        np.testing.assert_allclose(from_portable.numpy(), stem, atol=2e-4)

    # Every stem is empty above max_bins, up to the windows' leakage (-45 dB measured; -10 dB with "average") ...
    edge = config.max_bins + 4
    mixture_high = _band_energy(waveform, config, edge, config.num_bins)
    assert mixture_high > 1e-3 * _band_energy(waveform, config, 0, config.num_bins)  # the mixture is not
    for stem in engine:
        assert _band_energy(stem, config, edge, config.num_bins) < 1e-4 * mixture_high
        assert _band_energy(stem, config, 0, config.max_bins) > 0
    # ... so the stems sum to the mixture below max_bins only: what is missing is the mixture above it.
    missing = waveform - engine.sum(axis=0)
    low = config.max_bins - 4
    assert _band_energy(missing, config, 0, low) < 1e-3 * _band_energy(waveform, config, 0, low)
    np.testing.assert_allclose(_band_energy(missing, config, edge, config.num_bins), mixture_high, rtol=0.02)

    # The same masks under the default extension: the stems add up to the whole mixture (the shortcut).
    average = dsp.separate_chunk(predict, dsp.Spectral(config.n_fft, config.hop_length, config.max_bins, "average",
                                                       config.extension_bins), waveform)
    np.testing.assert_allclose(average.sum(axis=0), waveform, atol=1e-6)
    assert _band_energy(average[0], config, edge, config.num_bins) > 1e-2 * mixture_high
