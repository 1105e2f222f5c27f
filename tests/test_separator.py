import numpy as np
import pytest
import soundfile as sf

from stemtf import audio
from stemtf.errors import AudioError, OutputError, StemtfError
from stemtf.apply import num_chunks
from stemtf.options import check_filename
from stemtf.separator import Separator

from conftest import SAMPLE_RATE, music_like


@pytest.fixture(scope="module")
def separator(tiny_model):
    model, config = tiny_model
    return Separator(model, config, overlap=0.02)


def _identity(separator):
    """A separator whose 'model' returns the chunk itself as stem 0 and twice the chunk as stem 1."""
    chunker = Separator(separator.masks, separator.config, overlap=0.02)
    chunker._separate_chunk = lambda chunk: np.stack([chunk, 2 * chunk, -chunk])
    return chunker


@pytest.mark.parametrize("num_samples", [1, 100, 3904, 3905, 3904 + 3022, 50_000])
def test_identity_model_through_chunker_returns_input(separator, num_samples):
    waveform = np.random.default_rng(num_samples).uniform(-1, 1, (num_samples, 2)).astype(np.float32)
    chunker = _identity(separator)
    blocks = list(chunker.separate_stream(audio.ArrayReader(waveform, SAMPLE_RATE)))
    stems = np.concatenate(blocks, axis=1)
    assert stems.shape == (3, num_samples, 2)
    np.testing.assert_allclose(stems[0], waveform, atol=1e-6)
    np.testing.assert_allclose(stems[1], 2 * waveform, atol=1e-6)


def test_chunk_count_and_progress(separator):
    calls = []
    waveform = np.zeros((50_000, 2), np.float32)
    separator.separate(waveform, SAMPLE_RATE, progress=lambda done, total: calls.append((done, total)))
    total = num_chunks(50_000, chunk_samples=separator.chunk_samples, overlap_samples=separator.overlap_samples)
    assert total == 17
    assert calls == [(i, total) for i in range(total + 1)]


def test_stems_sum_to_mixture_and_keep_shape(separator):
    waveform = music_like(20_000)
    stems = separator.separate(waveform, SAMPLE_RATE)
    assert list(stems) == list(separator.stems)
    assert all(s.shape == waveform.shape and s.dtype == np.float32 for s in stems.values())
    np.testing.assert_allclose(sum(stems.values()), waveform, atol=1e-5)


def test_mono_in_gives_mono_out(separator):
    waveform = music_like(9000, num_channels=1)
    stems = separator.separate(waveform[:, 0], SAMPLE_RATE)
    assert all(s.shape == (9000,) for s in stems.values())
    np.testing.assert_allclose(sum(stems.values()), waveform[:, 0], atol=1e-5)
    stems = separator.separate(waveform, SAMPLE_RATE)
    assert all(s.shape == (9000, 1) for s in stems.values())


def test_other_sample_rates_are_resampled_and_back(separator):
    rate = 22050
    t = np.arange(rate) / rate
    # Content well below the 11 kHz Nyquist limit, where resampling is transparent.
    waveform = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 3000 * t)], axis=1).astype(np.float32)
    stems = separator.separate(waveform, rate)
    assert all(s.shape == waveform.shape for s in stems.values())
    # Through 44.1 kHz and back: equal to the input up to the resampler's band edge.
    residual = sum(stems.values()) - waveform
    assert np.sqrt(np.mean(residual**2)) < 0.01 * np.sqrt(np.mean(waveform**2))


def test_chunked_matches_unchunked(tiny_model):
    model, config = tiny_model
    waveform = music_like(30_000)
    chunked = Separator(model, config, overlap=0.04).separate(waveform, SAMPLE_RATE)
    whole = Separator(model, config, overlap=0.04, segment_frames=512).separate(waveform, SAMPLE_RATE)
    for stem in config.stems:
        error = np.sqrt(np.mean((chunked[stem] - whole[stem]) ** 2))
        assert error < 0.05 * np.sqrt(np.mean(whole[stem] ** 2)), stem


def test_wiener_filter_changes_estimates_and_keeps_the_sum(tiny_model):
    model, config = tiny_model
    waveform = music_like(12_000)
    plain = Separator(model, config, overlap=0.02).separate(waveform, SAMPLE_RATE)
    filtered = Separator(model, config, overlap=0.02, wiener_iterations=2).separate(waveform, SAMPLE_RATE)
    assert not np.allclose(plain["vocals"], filtered["vocals"], atol=1e-3)
    np.testing.assert_allclose(sum(filtered.values()), waveform, atol=1e-3)


@pytest.mark.parametrize(
    ("waveform", "message"),
    [
        (np.zeros((0, 2), np.float32), "with samples"),
        (np.zeros((10, 2, 2), np.float32), "num_channels"),
        (np.zeros((10, 2), np.int16), "floating point"),
        (np.full((10, 2), np.nan, np.float32), "NaN"),
        (np.zeros((10, 6), np.float32), "6 channels"),
    ],
)
def test_bad_waveforms_are_rejected(separator, waveform, message):
    with pytest.raises(AudioError, match=message):
        separator.separate(waveform, SAMPLE_RATE)


def test_bad_settings_are_rejected(tiny_model):
    model, config = tiny_model
    with pytest.raises(StemtfError, match="`overlap`"):
        Separator(model, config, overlap=10.0)
    with pytest.raises(StemtfError, match="`wiener_iterations`"):
        Separator(model, config, overlap=0.02, wiener_iterations=-1)


def test_separate_file_writes_one_file_per_stem(separator, stereo_wav, tmp_path):
    paths = separator.separate_file(stereo_wav, output_dir=tmp_path / "out")
    assert {p.name for p in paths.values()} == {"vocals.wav", "drums.wav", "other.wav"}
    assert all(p.parent == tmp_path / "out" / "song" for p in paths.values())
    mixture, _ = sf.read(stereo_wav, dtype="float32")
    outputs = [sf.read(p, dtype="float32") for p in paths.values()]
    assert all(rate == SAMPLE_RATE and data.shape == mixture.shape for data, rate in outputs)
    np.testing.assert_allclose(sum(data for data, _ in outputs), mixture, atol=4 / 32768)
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_separate_file_refuses_to_overwrite_and_leaves_files_alone(separator, stereo_wav, tmp_path):
    paths = separator.separate_file(stereo_wav, output_dir=tmp_path)
    before = {p: p.read_bytes() for p in paths.values()}
    with pytest.raises(OutputError, match="already exists; pass `overwrite`"):  # the library names keywords
        separator.separate_file(stereo_wav, output_dir=tmp_path)
    assert {p: p.read_bytes() for p in paths.values()} == before
    separator.separate_file(stereo_wav, output_dir=tmp_path, overwrite=True, duration=0.5)
    assert sf.info(paths["vocals"]).frames == SAMPLE_RATE // 2


def test_failure_midway_leaves_no_output(separator, stereo_wav, tmp_path):
    def explode(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        separator.separate_file(stereo_wav, output_dir=tmp_path / "out", progress=explode)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_offset_and_duration(separator, stereo_wav, tmp_path):
    paths = separator.separate_file(stereo_wav, output_dir=tmp_path, offset=0.5, duration=0.25, fmt="flac")
    assert sf.info(paths["drums"]).frames == SAMPLE_RATE // 4
    with pytest.raises(AudioError, match="past the end"):
        separator.separate_file(stereo_wav, output_dir=tmp_path / "x", offset=10)
    with pytest.raises(AudioError, match="`duration` must be > 0"):
        separator.separate_file(stereo_wav, output_dir=tmp_path / "y", duration=0)


def test_filename_templates(separator, tmp_path):
    paths = separator.output_paths("a/b/My Song.mp3", output_dir=tmp_path, filename="{model}-{track}-{stem}.{ext}", fmt="flac")
    assert paths["vocals"] == tmp_path / "tiny-My Song-vocals.flac"
    with pytest.raises(OutputError, match=r"unknown field \{title\}"):
        check_filename("{title}/{stem}.{ext}")
    with pytest.raises(OutputError, match=r"must contain \{stem\}"):
        check_filename("{track}.{ext}")
    with pytest.raises(OutputError, match="not a valid template"):
        check_filename("{stem")


def test_a_rerun_deletes_the_temporary_files_a_killed_run_left_but_not_a_running_ones(separator, stereo_wav, tmp_path):
    folder = tmp_path / "out" / stereo_wav.stem
    folder.mkdir(parents=True)
    killed = [folder / ".vocals.wav.k1ll3d.tmp", folder / ".other.wav.x9.tmp"]
    for leftover in killed:
        leftover.write_bytes(b"\0" * 4096)
    running = folder / ".drums.wav.l1v3.tmp"
    someone_elses = folder / ".notes.txt.a.tmp"  # not a target of this run
    for path in (running, someone_elses):
        path.write_bytes(b"\0")
    with open(running, "rb"):  # held open, as by a run writing the same outputs right now
        paths = separator.separate_file(stereo_wav, output_dir=tmp_path / "out")
        assert sorted(p.name for p in folder.iterdir()) == sorted([*(p.name for p in paths.values()), running.name, someone_elses.name])


def test_zeros_mask_extension_separates_nothing_above_max_bins_offline_and_streamed():
    import keras

    from stemtf import dsp
    from stemtf.model import build_model
    from stemtf.streaming import StreamingSeparator

    from conftest import tiny_config

    keras.utils.set_random_seed(4)
    config = tiny_config(mask_extension="zeros")  # Spleeter's: masks are 0 above max_bins
    separator = Separator(build_model(config), config, overlap=0.02)
    waveform = music_like(12_000, seed=9)  # four chunks

    def energy(x, low, high):
        return float(np.sum(np.abs(dsp.stft(x, n_fft=config.n_fft, hop_length=config.hop_length)[:, low:high]) ** 2))

    edge, top = config.max_bins + 4, config.num_bins
    stems = separator.separate(waveform, SAMPLE_RATE)
    for stem in config.stems:
        assert energy(stems[stem], edge, top) < 1e-4 * energy(waveform, edge, top)
        assert energy(stems[stem], 0, config.max_bins) > 0
    missing = waveform - sum(stems.values())  # the stems sum to the mixture below max_bins only
    assert energy(missing, 0, config.max_bins - 4) < 1e-3 * energy(waveform, 0, config.max_bins - 4)
    assert energy(missing, edge, top) == pytest.approx(energy(waveform, edge, top), rel=0.02)
    # A stream (chunk plan and sliding plan) takes the same extension.
    for latency in (None, 0.05):
        streamer = StreamingSeparator(separator, latency=latency)
        out = [streamer.process(waveform[i : i + 1000]) for i in range(0, waveform.shape[0], 1000)] + [streamer.flush()]
        vocals = np.concatenate([o["vocals"] for o in out])[round(streamer.latency_samples):]
        if latency is None:
            np.testing.assert_allclose(vocals, stems["vocals"], atol=1e-5)
        assert energy(vocals, edge, top) < 1e-4 * energy(waveform, edge, top)


def _spleeter_grid_by_hand(predict, config, waveform: np.ndarray, *, front: int) -> np.ndarray:
    """``spleeter separate``'s grid written out in float64: one STFT of the whole song with ``front``
    zeros in front (Spleeter: ``n_fft``), masks of segment_frames-frame segments without overlap (the
    last zero-padded; zeros above max_bins), one weighted overlap-add inverse. ``(num_stems, L, C)``."""
    n_fft, hop, bins, segment = config.n_fft, config.hop_length, config.max_bins, config.segment_frames
    length = waveform.shape[0]
    x = np.pad(waveform.astype(np.float64), ((front, n_fft + (-length) % hop), (0, 0)))
    count = (x.shape[0] - n_fft) // hop + 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spectra = np.fft.rfft(np.stack([x[t * hop : t * hop + n_fft] for t in range(count)]) * window[:, None], axis=1)
    magnitude = np.abs(spectra[:, :bins]).astype(np.float32)
    magnitude = np.concatenate([magnitude, np.zeros(((-count) % segment,) + magnitude.shape[1:], np.float32)])
    masks = np.concatenate([predict(magnitude[None, s : s + segment]) for s in range(0, magnitude.shape[0], segment)], axis=1)
    full = np.zeros((masks.shape[0],) + spectra.shape)
    full[:, :, :bins] = masks[:, :count]
    frames = np.fft.irfft(spectra[None] * full, n=n_fft, axis=2) * window[:, None]  # (J, T, n_fft, C)
    out, weight = np.zeros((masks.shape[0],) + x.shape), np.zeros(x.shape[0])
    for t in range(count):
        out[:, t * hop : t * hop + n_fft] += frames[:, t]
        weight[t * hop : t * hop + n_fft] += window**2
    return (out / np.maximum(weight, 1e-12)[:, None])[:, front : front + length]


@pytest.fixture(scope="module")
def spleeter_exact():
    """A tiny random model cut as ``spleeter separate`` cuts songs, with Spleeter's zeros extension."""
    import keras

    from stemtf.model import build_model

    from conftest import tiny_config

    keras.utils.set_random_seed(6)
    config = tiny_config(mask_extension="zeros", chunking="spleeter")
    return build_model(config), config


@pytest.mark.parametrize("num_samples", [1, 3000, 3840, 4096 - 64, 4096, 12_345])
def test_spleeter_chunking_equals_spleeters_grid_written_out(spleeter_exact, num_samples):
    from stemtf import plans

    model, config = spleeter_exact
    separator = Separator(model, config)
    assert isinstance(separator.separation_plan(), plans.SpleeterPlan)
    waveform = music_like(num_samples, seed=num_samples)
    calls = []
    stems = separator.separate(waveform, SAMPLE_RATE, progress=lambda done, total: calls.append((done, total)))
    expected = _spleeter_grid_by_hand(separator.masks, config, waveform, front=config.n_fft)
    for index, stem in enumerate(config.stems):
        assert stems[stem].shape == waveform.shape
        np.testing.assert_allclose(stems[stem], expected[index], atol=2e-5)
    # One progress call per segment, over the frames of Spleeter's grid that touch the input (its STFT has
    # one all-zero frame more at the end, a segment more for 3840 samples: nothing to mask there).
    touching = (num_samples + (-num_samples) % config.hop_length + config.n_fft - config.hop_length) // config.hop_length + 1
    segments = -(-touching // config.segment_frames)
    assert calls == [(i, segments) for i in range(segments + 1)]
    if num_samples > 3000:  # the grid matters: one hop less in front (stemtf's own STFT) is another separation
        shifted = _spleeter_grid_by_hand(separator.masks, config, waveform, front=config.n_fft - config.hop_length)
        assert np.max(np.abs(shifted[0] - stems["vocals"])) > 1e-3


def test_spleeter_chunking_streams_and_writes_files_like_separate(spleeter_exact, tmp_path):
    from stemtf.errors import OptionError
    from stemtf.streaming import StreamingSeparator

    model, config = spleeter_exact
    separator = Separator(model, config)
    waveform = music_like(10_000, seed=2)
    offline = separator.separate(waveform, SAMPLE_RATE)
    for sizes in ([1] * 300 + [700] * 20, [10_000]):
        streamer = StreamingSeparator(separator)
        assert streamer.plan == "spleeter"
        latency = streamer.latency_samples
        assert latency == (config.segment_frames + config.n_fft // config.hop_length - 1) * config.hop_length
        out, position = [], 0
        for size in sizes:
            out.append(streamer.process(waveform[position : position + size]))
            position += size
        out.append(streamer.flush())
        vocals = np.concatenate([o["vocals"] for o in out])
        assert vocals.shape == (10_000 + latency, 2)
        np.testing.assert_array_equal(vocals[:latency], 0.0)
        np.testing.assert_allclose(vocals[latency:], offline["vocals"], atol=1e-6)
    path = tmp_path / "song.wav"
    sf.write(path, waveform, SAMPLE_RATE, subtype="FLOAT")
    written = separator.separate_file(path, output_dir=tmp_path / "out", bit_depth=32)
    np.testing.assert_allclose(sf.read(written["drums"], dtype="float32")[0], offline["drums"], atol=1e-6)
    with pytest.raises(OptionError, match="chunking 'crossfade'"):
        Separator(model, config, wiener_iterations=1)
