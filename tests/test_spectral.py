import numpy as np
import pytest
import tensorflow as tf

from stemtf import spectral


@pytest.mark.parametrize("num_samples", [1, 1000, 44100, 44100 * 3 + 17])
def test_stft_round_trip_is_exact(num_samples):
    waveform = np.random.default_rng(num_samples).uniform(-1, 1, (num_samples, 2)).astype(np.float32)
    spectrogram = spectral.stft(waveform, n_fft=4096, hop_length=1024)
    assert spectrogram.shape == (spectral.num_frames(num_samples, n_fft=4096, hop_length=1024), 2049, 2)
    restored = spectral.istft(spectrogram, n_fft=4096, hop_length=1024, num_samples=num_samples)
    assert restored.shape == waveform.shape
    np.testing.assert_allclose(restored.numpy(), waveform, atol=1e-5)


def test_stft_batched_matches_unbatched():
    batch = np.random.default_rng(0).uniform(-1, 1, (3, 5000, 2)).astype(np.float32)
    batched = spectral.stft(batch, n_fft=256, hop_length=64)
    for index in range(3):
        np.testing.assert_allclose(batched[index], spectral.stft(batch[index], n_fft=256, hop_length=64), atol=1e-5)


def test_segment_samples_gives_exact_frame_count():
    for frames in (64, 512):
        samples = spectral.segment_samples(frames, n_fft=4096, hop_length=1024)
        assert spectral.num_frames(samples, n_fft=4096, hop_length=1024) == frames
        assert spectral.stft(tf.zeros([samples, 2]), n_fft=4096, hop_length=1024).shape[0] == frames


@pytest.mark.parametrize("how", ["average", "edge"])
def test_extended_masks_still_sum_to_one(how):
    raw = np.random.default_rng(1).uniform(0.01, 1, (3, 8, 64, 2)).astype(np.float32)
    masks = raw / raw.sum(axis=0, keepdims=True)
    extended = spectral.extend_mask(masks, num_bins=129, how=how, extension_bins=16)
    assert extended.shape == (3, 8, 129, 2)
    np.testing.assert_allclose(tf.reduce_sum(extended, axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(extended[..., :64, :], masks)
    if how == "average":
        np.testing.assert_allclose(extended[..., 100, :], masks[..., 48:, :].mean(axis=-2), atol=1e-6)
    else:
        np.testing.assert_array_equal(extended[..., 128, :], masks[..., 63, :])


def test_extend_mask_rejects_unknown_strategy():
    from stemtf import dsp

    with pytest.raises(ValueError, match="Argument `how`"):
        spectral.extend_mask(tf.ones([2, 64, 1]), num_bins=129, how="median")
    with pytest.raises(ValueError, match="Argument `how`"):
        dsp.extend_masks(np.ones([2, 64, 1], np.float32), num_bins=129, how="median")
    with pytest.raises(ValueError, match="'zeros'"):
        dsp.Spectral(256, 64, 64, "median")


@pytest.mark.parametrize("how", ["average", "edge", "zeros"])
def test_extend_mask_in_graphs_equals_the_numpy_engine(how):
    from stemtf import dsp

    masks = np.random.default_rng(2).uniform(0.01, 1, (3, 8, 64, 2)).astype(np.float32)
    in_graph = spectral.extend_mask(masks, num_bins=129, how=how, extension_bins=16).numpy()
    np.testing.assert_array_equal(in_graph, dsp.extend_masks(masks, num_bins=129, how=how, extension_bins=16))
    np.testing.assert_array_equal(in_graph[..., :64, :], masks)
    if how == "zeros":  # Spleeter's: nothing above max_bins
        np.testing.assert_array_equal(in_graph[..., 64:, :], 0.0)
        np.testing.assert_array_equal(dsp.mask_fill(masks, how="zeros"), np.zeros((3, 8, 1, 2), np.float32))
    else:
        assert np.all(in_graph[..., 64:, :] > 0)


@pytest.mark.parametrize(("n_fft", "hop_length", "num_samples"), [(256, 64, 1), (256, 64, 3904), (4096, 1024, 44100 + 17), (512, 256, 999)])
def test_stft_matmul_matches_stft(n_fft, hop_length, num_samples):
    waveform = np.random.default_rng(num_samples).uniform(-1, 1, (num_samples, 2)).astype(np.float32)
    reference = spectral.stft(waveform, n_fft=n_fft, hop_length=hop_length).numpy()
    real, imag = spectral.stft_matmul(waveform, n_fft=n_fft, hop_length=hop_length)
    assert real.shape == imag.shape == reference.shape
    scale = np.abs(reference).max()
    np.testing.assert_allclose(real / scale, reference.real / scale, atol=1e-5)
    np.testing.assert_allclose(imag / scale, reference.imag / scale, atol=1e-5)


@pytest.mark.parametrize(("n_fft", "hop_length", "num_samples"), [(256, 64, 1), (256, 64, 5000), (4096, 1024, 44100 + 17)])
def test_istft_matmul_inverts_and_matches_istft(n_fft, hop_length, num_samples):
    waveform = np.random.default_rng(num_samples).uniform(-1, 1, (num_samples, 2)).astype(np.float32)
    real, imag = spectral.stft_matmul(waveform, n_fft=n_fft, hop_length=hop_length)
    restored = spectral.istft_matmul(real, imag, n_fft=n_fft, hop_length=hop_length, num_samples=num_samples)
    assert restored.shape == waveform.shape
    np.testing.assert_allclose(restored, waveform, atol=1e-5)
    reference = spectral.istft(tf.complex(real, imag), n_fft=n_fft, hop_length=hop_length, num_samples=num_samples)
    np.testing.assert_allclose(restored, reference, atol=1e-5)


def test_matmul_stft_batched_and_rejects_bad_hop():
    batch = np.random.default_rng(0).uniform(-1, 1, (3, 5000, 1)).astype(np.float32)
    real, imag = spectral.stft_matmul(batch, n_fft=256, hop_length=64)
    assert real.shape == (3, spectral.num_frames(5000, n_fft=256, hop_length=64), 129, 1)
    np.testing.assert_allclose(spectral.istft_matmul(real, imag, n_fft=256, hop_length=64, num_samples=5000), batch, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of `hop_length`"):
        spectral.stft_matmul(batch, n_fft=256, hop_length=96)


@pytest.mark.parametrize(("n_fft", "hop_length"), [(16, 4), (32, 16), (512, 128), (4096, 1024)])
def test_matmul_pair_exact_with_either_basis(n_fft, hop_length):
    """The factored real DFTs at the extremes of their factorisation (4 x 4, 4 x 8, 16 x 32, 64 x 64),
    with constant bases and with bases computed at run time (int8 exports): the same transform."""
    waveform = np.random.default_rng(n_fft).uniform(-1, 1, (3 * n_fft + 5, 2)).astype(np.float32)
    reference = spectral.stft(waveform, n_fft=n_fft, hop_length=hop_length).numpy()
    scale = np.abs(reference).max()
    constant = spectral.stft_matmul(waveform, n_fft=n_fft, hop_length=hop_length)
    with spectral.basis_computed_at_run_time():
        computed = spectral.stft_matmul(waveform, n_fft=n_fft, hop_length=hop_length)
        restored = spectral.istft_matmul(*computed, n_fft=n_fft, hop_length=hop_length, num_samples=len(waveform))
    for real, imag in (constant, computed):
        np.testing.assert_allclose(real / scale, reference.real / scale, atol=1e-5)
        np.testing.assert_allclose(imag / scale, reference.imag / scale, atol=1e-5)
    np.testing.assert_allclose(restored, waveform, atol=1e-5)
    # The inverse takes irfft's view of the first and last bins: their imaginary parts do not count.
    real, imag = (np.array(part) for part in constant)
    imag[:, [0, -1]] += 3.0
    np.testing.assert_allclose(spectral.istft_matmul(real, imag, n_fft=n_fft, hop_length=hop_length, num_samples=len(waveform)),
                               waveform, atol=1e-5)
