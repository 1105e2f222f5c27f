"""Streaming separation: block by block, the separator's own numbers, an exact declared latency."""

import io
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
import soundfile as sf

from stemtf.errors import AudioError
from stemtf.separator import Separator
from stemtf.streaming import StreamingSeparator

from conftest import SAMPLE_RATE, music_like


def stream_through(streamer: StreamingSeparator, waveform: np.ndarray, sizes) -> dict[str, np.ndarray]:
    outputs, position = [], 0
    for size in sizes:
        if position >= waveform.shape[0]:
            break
        block = waveform[position : position + size]
        out = streamer.process(block)
        assert all(v.shape == (block.shape[0], streamer.num_channels) for v in out.values())  # as many samples as given
        outputs.append(out)
        position += size
    outputs.append(streamer.flush())
    return {stem: np.concatenate([o[stem] for o in outputs]) for stem in streamer.stems}


@pytest.mark.parametrize("total", [1, 700, 3904, 6926, 12_345])
def test_stream_equals_offline_for_any_blocks(tiny_model, total):
    model, config = tiny_model
    separator = Separator(model, config, overlap=0.02)
    waveform = music_like(total, seed=total)
    offline = separator.separate(waveform, SAMPLE_RATE)
    rng = np.random.default_rng(total)
    for sizes in ([1] * 50 + [10_000] * 5, rng.integers(1, 5000, size=100), [20_000]):  # 1 sample .. more than a chunk
        streamer = StreamingSeparator(separator)
        streamed = stream_through(streamer, waveform, sizes)
        latency = streamer.latency_samples
        assert latency == separator.chunk_samples
        for stem in config.stems:
            assert streamed[stem].shape == (total + latency, 2)
            np.testing.assert_array_equal(streamed[stem][:latency], 0.0)
            np.testing.assert_allclose(streamed[stem][latency:], offline[stem], atol=1e-5)


def test_declared_latency_is_exact_for_an_identity_model(tiny_model):
    model, config = tiny_model
    separator = Separator(model, config, overlap=0.02)
    separator._separate_chunk = lambda chunk: np.stack([chunk, 0 * chunk, 0 * chunk])  # "vocals" = input
    streamer = StreamingSeparator(separator, num_channels=1)
    impulse = np.zeros(20_000, np.float32)
    impulse[1234] = 1.0
    out = stream_through(streamer, impulse, [997] * 30)["vocals"][:, 0]  # mono blocks may be (n,)
    assert np.argmax(np.abs(out)) == 1234 + streamer.latency_samples
    np.testing.assert_allclose(out[1234 + streamer.latency_samples], 1.0, atol=1e-6)
    assert np.sum(np.abs(out)) == pytest.approx(1.0, abs=1e-5)


def test_silence_in_silence_out_and_mono(tiny_model):
    model, config = tiny_model
    streamer = StreamingSeparator(Separator(model, config, overlap=0.02), num_channels=1)
    out = stream_through(streamer, np.zeros(9000, np.float32), [3000] * 3)
    assert all(v.shape == (9000 + streamer.latency_samples, 1) and not np.any(v) for v in out.values())
    with pytest.raises(AudioError, match="NaN"):
        StreamingSeparator(Separator(model, config)).process(np.full((10, 2), np.nan, np.float32))
    with pytest.raises(AudioError, match=r"float \(n, 2\)"):
        StreamingSeparator(Separator(model, config)).process(np.zeros((10, 3), np.float32))


def _wav_bytes(waveform: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(waveform.shape[1])
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(waveform, -1, 0.99997) * 32768).astype("<i2").tobytes())
    return buffer.getvalue()


def test_cli_stream_through_a_pipe(tiny_model_dir, tmp_path):
    waveform = music_like(2 * SAMPLE_RATE)
    command = [sys.executable, "-m", "stemtf.cli", "stream", "-", "--model", str(tiny_model_dir)]
    karaoke = subprocess.run(command + ["--remove", "vocals", "--stdout"], input=_wav_bytes(waveform), capture_output=True, timeout=300)
    assert karaoke.returncode == 0, karaoke.stderr.decode()[-1000:]
    err = karaoke.stderr.decode().strip().splitlines()
    assert err[-2].startswith("latency ") and err[-1].startswith("real-time factor ")
    latency = int(float(err[-2].split("(")[1].split()[0]))
    samples = np.frombuffer(karaoke.stdout, "<i2").reshape(-1, 2)
    assert samples.shape[0] == waveform.shape[0] + latency
    # The same stems as the offline separator, summed without vocals.
    offline = Separator.from_pretrained(tiny_model_dir).separate(np.round(waveform * 32768).clip(-32768, 32767) / 32768, SAMPLE_RATE)
    expected = offline["drums"] + offline["other"]
    assert np.max(np.abs(samples[latency:] / 32768 - expected)) < 2e-3
    # Files: one WAV per stem, aligned with the input by default (the latency trimmed, the tail flushed) ...
    files = subprocess.run(command + ["-o", str(tmp_path / "out")], input=_wav_bytes(waveform), capture_output=True, timeout=300)
    assert files.returncode == 0, files.stderr.decode()[-1000:]
    for stem in ("vocals", "drums", "other"):
        data, rate = sf.read(tmp_path / "out" / f"{stem}.wav")
        assert data.shape == waveform.shape and rate == SAMPLE_RATE
        assert np.max(np.abs(data - offline[stem])) < 2e-3  # the offline stems, sample for sample
    # ... or with the live delay (--no-align)
    files = subprocess.run(command + ["-o", str(tmp_path / "live"), "--no-align"], input=_wav_bytes(waveform),
                           capture_output=True, timeout=300)
    assert files.returncode == 0, files.stderr.decode()[-1000:]
    info = sf.info(tmp_path / "live" / "vocals.wav")
    assert info.frames == waveform.shape[0] + latency and info.samplerate == SAMPLE_RATE


@pytest.mark.parametrize(
    "args,stdin,message",
    [
        (["--stdout", "--keep", "vocals"], b"not a wav at all", "The input is not a PCM WAV stream"),
        (["--stdout", "--keep", "vocals", "--raw", "--channels", "6"], b"\0" * 64, "--channels must be 1 or 2 (mono or stereo). Received 6."),
        (["--stdout", "--keep", "guitar"], b"", "--keep 'guitar' is not a stem of this model"),
        (["--stdout"], b"", "--stdout writes one stream"),
        ([], b"", "Give exactly one of --output-dir DIR"),
        (["--stdout", "--keep", "vocals", "--raw", "--sample-format", "u8"], b"\0" * 64, "--sample-format must be one of"),
        (["--stdout", "--keep", "vocals", "--raw", "--rate", "0"], b"\0" * 64, "--rate must be >= 1000 Hz. Received 0."),
        (["--stdout", "--keep", "vocals", "--raw", "--channels", "0"], b"\0" * 64, "--channels must be 1 or 2"),
    ],
)
def test_cli_stream_errors_are_one_line(tiny_model_dir, args, stdin, message):
    result = subprocess.run([sys.executable, "-m", "stemtf.cli", "stream", "-", "--model", str(tiny_model_dir), *args],
                            input=stdin, capture_output=True, timeout=120)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and message in lines[0], lines


def test_litert_streaming_runner_is_pinned_to_the_library(tiny_model):
    from stemtf import litert_runner

    model, config = tiny_model
    separator = Separator(model, config, overlap=0.02)
    waveform = music_like(9000, seed=5)
    for sizes in ([1] * 30 + [2500] * 4, [9000]):
        library = stream_through(StreamingSeparator(separator), waveform, sizes)
        runner = litert_runner.StreamingRunner(
            separator._separate_chunk, num_stems=3, num_channels=2, chunk_samples=separator.chunk_samples,
            overlap_samples=separator.overlap_samples,
        )
        outputs, position = [], 0
        for size in sizes:
            if position < waveform.shape[0]:
                outputs.append(runner.process(waveform[position : position + size]))
                position += size
        outputs.append(runner.flush())
        streamed = np.concatenate(outputs, axis=1)
        for index, stem in enumerate(config.stems):
            np.testing.assert_allclose(streamed[index], library[stem], atol=1e-6)


def test_exported_streaming_step_runs_on_litert(tiny_model, tmp_path):
    # The streaming step for phones: the TFLite waveform chunk model (builtin ops, fixed block) in the runner.
    from stemtf import export, litert_runner

    model, config = tiny_model
    path = export.export_tflite(model, config, tmp_path / "tiny.tflite", kind="waveform")
    chunk_model = litert_runner.ChunkModel(path)
    runner = litert_runner.StreamingRunner(
        chunk_model, num_stems=len(chunk_model.stems), num_channels=chunk_model.num_channels,
        chunk_samples=chunk_model.chunk_samples, overlap_samples=chunk_model.overlap_samples,
    )
    separator = Separator(model, config, overlap=chunk_model.overlap_samples / SAMPLE_RATE)
    waveform = music_like(10_000, seed=3)
    library = stream_through(StreamingSeparator(separator), waveform, [1000] * 10)
    streamed = np.concatenate([runner.process(waveform[i : i + 1000]) for i in range(0, 10_000, 1000)] + [runner.flush()], axis=1)
    assert runner.latency_samples == separator.chunk_samples
    for index, stem in enumerate(chunk_model.stems):
        np.testing.assert_allclose(streamed[index], library[stem], atol=2e-4)


@pytest.mark.parametrize("rate", [22050, 48000, 88200])
def test_other_rates_are_resampled_at_the_edges_with_a_constant_latency(tiny_model, rate):
    model, config = tiny_model
    separator = Separator(model, config, overlap=0.02)
    waveform = music_like(rate, sample_rate=rate, seed=rate)
    offline = separator.separate(waveform, rate)
    rng = np.random.default_rng(rate)
    streamer = StreamingSeparator(separator, sample_rate=rate)
    streamed = stream_through(streamer, waveform, rng.integers(1, 4000, size=200))
    assert streamer.latency == pytest.approx(streamer.latency_samples / rate)
    assert streamed["vocals"].shape[0] == pytest.approx(waveform.shape[0] + streamer.latency_samples, abs=1)
    if float(streamer.latency_samples).is_integer():  # a whole number of samples: compare sample by sample
        latency = int(streamer.latency_samples)
        for stem in config.stems:
            np.testing.assert_allclose(streamed[stem][latency:][: waveform.shape[0]], offline[stem], atol=1e-5)


def test_ctrl_c_leaves_complete_playable_files(tiny_model_dir, tmp_path):
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "stemtf.cli", "stream", "-", "--model", str(tiny_model_dir), "-o", str(tmp_path / "out"), "--keep", "vocals"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    header_and_audio = bytearray(_wav_bytes(music_like(SAMPLE_RATE)))  # a live source that has sent 1 s so far
    header_and_audio[4:8] = header_and_audio[40:44] = b"\xff\xff\xff\xff"  # unknown length, as ffmpeg writes to a pipe
    process.stdin.write(bytes(header_and_audio))
    process.stdin.flush()
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "out").exists():
        time.sleep(0.2)
    time.sleep(3)  # let it separate what it has
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()[-500:]
    assert err.decode().strip().endswith("stemtf: stopped (SIGINT); the files hold every stem up to that point.")
    info = sf.info(tmp_path / "out" / "vocals.wav")  # a valid WAV header: the file was closed properly
    assert info.samplerate == SAMPLE_RATE and info.channels == 2
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "vocals.wav"]  # no temporary leftovers


# The sliding plan (stemtf.sliding): latencies below a chunk


def _window_masks(magnitude: np.ndarray) -> np.ndarray:
    """Masks that depend on the whole window (its mean), so a window in the wrong place changes them."""
    m = magnitude[0]
    share = m / (m + m.mean(axis=0, keepdims=True) + 1e-3)
    return np.stack([share, 1 - share, 0.5 * share])


def test_sliding_plan_equals_masks_placed_by_hand(tiny_model):
    from stemtf import apply, sliding

    _, config = tiny_model
    waveform = music_like(6000, seed=3)
    window, step, lookahead = 16, 5, 3
    streamed = sliding.separate_sliding(_window_masks, config, waveform, window_frames=window, step_frames=step,
                                        lookahead_frames=lookahead)
    # The same plan written out: the STFT of the whole signal, the masks of frames [f, f + step) from the
    # window ending `lookahead` frames after them (zeros outside the signal), one inverse STFT.
    spectrogram = apply.stft_numpy(waveform, n_fft=config.n_fft, hop_length=config.hop_length)
    magnitude = np.abs(spectrogram)[:, : config.max_bins]
    frames = magnitude.shape[0]
    padded = np.concatenate([np.zeros((window,) + magnitude.shape[1:]), magnitude, np.zeros((window,) + magnitude.shape[1:])]).astype(np.float32)
    masks = np.zeros((3,) + magnitude.shape, np.float32)
    for first in range(0, frames, step):
        end = first + step + lookahead
        count = min(step, frames - first)
        masks[:, first : first + count] = _window_masks(padded[end : end + window][None])[:, window - lookahead - step :][:, :count]
    for i in range(3):
        full = apply.extend_masks_numpy(masks[i], num_bins=config.num_bins, how=config.mask_extension, extension_bins=config.extension_bins)
        expected = apply.istft_numpy(spectrogram * full, n_fft=config.n_fft, hop_length=config.hop_length, num_samples=6000)
        np.testing.assert_allclose(streamed[i], expected, atol=1e-5)


@pytest.mark.parametrize("total", [1, 300, 6000])
def test_sliding_stream_equals_its_offline_plan_for_any_blocks(tiny_model, total):
    from stemtf import sliding

    model, config = tiny_model
    separator = Separator(model, config)
    separator.masks_for = lambda window: _window_masks  # numpy masks: exact comparisons
    waveform = music_like(total, seed=total)
    rng = np.random.default_rng(total)
    for sizes in ([1] * 400 + [10_000], rng.integers(1, 900, size=60), [20_000]):
        streamer = StreamingSeparator(separator, latency=0.05)
        assert streamer.plan == "sliding"
        offline = sliding.separate_sliding(_window_masks, config, waveform, window_frames=streamer.window_frames,
                                           step_frames=streamer.step_frames, lookahead_frames=streamer.lookahead_frames)
        streamed = stream_through(streamer, waveform, sizes)
        latency = streamer.latency_samples
        assert latency <= 0.05 * SAMPLE_RATE and latency % config.hop_length == 0
        for i, stem in enumerate(config.stems):
            assert streamed[stem].shape == (total + latency, 2)
            np.testing.assert_array_equal(streamed[stem][:latency], 0.0)
            np.testing.assert_array_equal(streamed[stem][latency:], offline[i])


def test_sliding_latency_is_exact_and_silence_stays_silent(tiny_model):
    model, config = tiny_model
    separator = Separator(model, config)
    separator.masks_for = lambda window: (lambda magnitude: np.ones((3,) + magnitude.shape[1:], np.float32))
    streamer = StreamingSeparator(separator, num_channels=1, latency=0.03)
    impulse = np.zeros(5000, np.float32)
    impulse[777] = 1.0
    out = stream_through(streamer, impulse, [61] * 100)["vocals"][:, 0]
    assert np.argmax(np.abs(out)) == 777 + streamer.latency_samples
    np.testing.assert_allclose(out[777 + streamer.latency_samples], 1.0, atol=1e-5)
    assert np.sum(np.abs(out)) == pytest.approx(1.0, abs=1e-4)
    # A real (tiny) model: silence in, silence out.
    quiet = stream_through(StreamingSeparator(Separator(model, config), latency=0.03), np.zeros((4000, 2), np.float32), [500] * 8)
    assert not any(np.any(v) for v in quiet.values())


def test_sliding_plan_within_the_latency_and_too_short_a_latency(tiny_model):
    from stemtf import sliding
    from stemtf.config import load_config
    from stemtf.errors import OptionError

    config = load_config("4stems")
    window, step, lookahead = sliding.frames_for_latency(0.65 * 44100, config)
    assert (window, step, lookahead) == (64, 16, 8)
    assert (step + lookahead + 3) * 1024 <= 0.65 * 44100
    with pytest.raises(OptionError, match="at least 0.093 s"):
        sliding.frames_for_latency(0.05 * 44100, config)
    with pytest.raises(OptionError, match="`latency` must be > 0"):
        StreamingSeparator(Separator(*tiny_model), latency=-1)


def test_cli_stream_with_a_short_latency(tiny_model_dir):
    waveform = music_like(SAMPLE_RATE // 2)
    command = [sys.executable, "-m", "stemtf.cli", "stream", "-", "--model", str(tiny_model_dir), "--latency", "0.04",
               "--keep", "vocals", "--stdout", "--runtime", "keras"]
    result = subprocess.run(command, input=_wav_bytes(waveform), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-1000:]
    line = result.stderr.decode().strip().splitlines()[-2]
    assert "sliding window" in line
    latency = int(float(line.split("(")[1].split()[0]))
    assert latency <= 0.04 * SAMPLE_RATE
    assert np.frombuffer(result.stdout, "<i2").reshape(-1, 2).shape[0] == waveform.shape[0] + latency
    too_short = subprocess.run(command[:-7] + ["--latency", "0.001", "--keep", "vocals", "--stdout"], input=b"", capture_output=True, timeout=120)
    lines = too_short.stderr.decode().strip().splitlines()
    assert too_short.returncode == 1 and len(lines) == 1 and "--latency must be at least" in lines[0], lines


def test_cli_stream_with_a_latency_converts_only_the_window_model(tiny_model_dir, tmp_path):
    from stemtf import runtimes

    env = {**os.environ, runtimes.CACHE_ENV: str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "stemtf.cli", "stream", "-", "--model", str(tiny_model_dir), "--latency", "0.04",
               "--keep", "vocals", "--stdout", "--runtime", "litert"]
    result = subprocess.run(command, input=_wav_bytes(music_like(SAMPLE_RATE // 4)), capture_output=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr.decode()[-1000:]
    assert len(list((tmp_path / "cache").rglob("*.tflite"))) == 1
    assert result.stderr.decode().count("to LiteRT") == 1
    # a window is a conversion of its own, apart from separate's chunks: the line says so
    assert "once for windows of 40 frames (each window length is converted once, apart from the 64-frame chunks" in result.stderr.decode()


def test_sliding_plan_at_another_rate_keeps_a_constant_latency(tiny_model):
    model, config = tiny_model
    separator = Separator(model, config)
    separator.masks_for = lambda window: (lambda magnitude: np.ones((3,) + magnitude.shape[1:], np.float32))
    rate = 32_000
    t = np.arange(rate) / rate
    waveform = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None]
    streamer = StreamingSeparator(separator, sample_rate=rate, num_channels=1, latency=0.03)
    streamed = stream_through(streamer, waveform, np.random.default_rng(5).integers(1, 3000, size=100))["vocals"][:, 0]
    assert streamer.latency == pytest.approx(streamer.latency_samples / rate) and streamer.latency < 0.03 + 0.2
    assert streamed.shape[0] == pytest.approx(rate + streamer.latency_samples, abs=1)
    # Identity masks: the stream is its input, resampled there and back, exactly `latency_samples`
    # (a fraction of a sample at this rate) late.
    n = np.arange(streamed.shape[0])
    expected = 0.5 * np.sin(2 * np.pi * 440 * (n - streamer.latency_samples) / rate)
    middle = slice(int(streamer.latency_samples) + 2000, rate - 2000)
    np.testing.assert_allclose(streamed[middle], expected[middle], atol=2e-3)


def _stream(tiny_model_dir, *args, input=b""):
    return subprocess.run([sys.executable, "-m", "stemtf.cli", "stream", "--model", str(tiny_model_dir), *args],
                          input=input, capture_output=True, timeout=300)


def test_cli_stream_overwrite_replaces_and_refusals_leave_nothing(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    waveform = music_like(SAMPLE_RATE // 2)
    first = _stream(tiny_model_dir, "-", "-o", str(out), "--keep", "vocals,drums", input=_wav_bytes(waveform))
    assert first.returncode == 0, first.stderr.decode()[-1000:]
    (out / "drums.wav").write_bytes(b"mine")
    # An existing output is refused before anything runs: nothing read, no temporary file, the file untouched.
    refused = _stream(tiny_model_dir, "-", "-o", str(out), "--keep", "vocals,drums", input=_wav_bytes(waveform))
    lines = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1 and "vocals.wav' already exists; pass --overwrite" in lines[0], lines
    assert sorted(p.name for p in out.iterdir()) == ["drums.wav", "vocals.wav"] and (out / "drums.wav").read_bytes() == b"mine"
    # --overwrite replaces every output (it used to keep them all as hidden .tmp files).
    louder = _stream(tiny_model_dir, "-", "-o", str(out), "--keep", "vocals,drums", "--overwrite",
                     input=_wav_bytes(0.5 * waveform))
    assert louder.returncode == 0, louder.stderr.decode()[-1000:]
    assert sorted(p.name for p in out.iterdir()) == ["drums.wav", "vocals.wav"]
    assert sf.info(out / "drums.wav").frames == waveform.shape[0]
    # Refused options make no folder and no file.
    for args in (["--raw", "--rate", "0"], ["--block-size", "0"], ["--keep", "guitar"]):
        result = _stream(tiny_model_dir, "-", "-o", str(tmp_path / "never"), *args, input=b"\0" * 64)
        assert result.returncode == 1 and not (tmp_path / "never").exists(), args


def test_cli_stream_reads_an_mp3_file_and_cleans_a_killed_runs_leftovers(tiny_model_dir, tmp_path):
    song = tmp_path / "song.mp3"
    waveform = music_like(SAMPLE_RATE // 2)
    sf.write(song, waveform, SAMPLE_RATE, format="MP3")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".vocals.wav.abc123.tmp").write_bytes(b"x" * 1000)  # what a kill -9 left
    result = _stream(tiny_model_dir, str(song), "-o", str(out), "--keep", "vocals")
    assert result.returncode == 0, result.stderr.decode()[-1000:]
    assert sorted(p.name for p in out.iterdir()) == ["vocals.wav"]
    decoded, _ = sf.read(song, dtype="float32")
    expected = Separator.from_pretrained(tiny_model_dir).separate(decoded, SAMPLE_RATE)["vocals"]
    data, _ = sf.read(out / "vocals.wav")
    assert data.shape == decoded.shape and np.max(np.abs(data - expected)) < 2e-3


def test_stem_sink_commits_every_file_even_when_one_cannot_be(tmp_path):
    from stemtf import streamio
    from stemtf.errors import OutputError

    targets = {"a": tmp_path / "a.wav", "b": tmp_path / "b.wav"}
    sink = streamio.StemSink({"a": ("a",), "b": ("b",)}, targets, sample_rate=SAMPLE_RATE, num_channels=1)
    block = np.full((100, 1), 0.25, np.float32)
    sink.send({"a": block, "b": block}, 100, last=True)
    targets["a"].write_bytes(b"appeared meanwhile")
    with pytest.raises(OutputError, match="a.wav' already exists"):
        sink.commit()
    assert targets["a"].read_bytes() == b"appeared meanwhile" and sf.info(targets["b"]).frames == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]  # no temporary left
