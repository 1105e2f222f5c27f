import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from stemtf import audio
from stemtf.errors import AudioError, OutputError

from conftest import SAMPLE_RATE, music_like


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_write_then_read_every_format(tmp_path, fmt):
    waveform = music_like(SAMPLE_RATE)
    path = audio.write_audio(tmp_path / f"x.{fmt}", waveform, SAMPLE_RATE)
    restored, rate = audio.read_audio(path)
    assert rate == SAMPLE_RATE and restored.shape[1] == 2
    assert abs(restored.shape[0] - waveform.shape[0]) <= 2048  # lossy codecs pad a little
    if fmt in ("wav", "flac"):
        np.testing.assert_allclose(restored, waveform, atol=1 / 32768 + 1e-6)
    assert not list(tmp_path.glob("*.tmp"))


def test_ffmpeg_fallback_decodes_m4a(tmp_path):
    source = audio.write_audio(tmp_path / "x.wav", music_like(SAMPLE_RATE), SAMPLE_RATE)
    target = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c:a", "aac", str(target)], check=True)
    reader = audio.open_audio(target)
    try:
        assert isinstance(reader, audio.ffmpeg.FfmpegReader)
        assert (reader.sample_rate, reader.num_channels) == (SAMPLE_RATE, 2)
        assert abs(reader.num_samples - SAMPLE_RATE) < 4096
    finally:
        reader.close()
    waveform, _ = audio.read_audio(target, offset=0.5)
    assert abs(waveform.shape[0] - SAMPLE_RATE // 2) < 4096


def test_missing_ffmpeg_is_explained(tmp_path, monkeypatch):
    path = tmp_path / "x.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 100)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg is not installed"):
        audio.open_audio(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
        (lambda p: (p.write_bytes(b"RIFF\x00\x00garbage" * 50), p)[1], "corrupt|Cannot decode"),
        (lambda p: (p.write_text("just some text, not audio at all " * 20), p)[1], "corrupt|Cannot decode"),
    ],
)
def test_bad_inputs_are_explained(tmp_path, make, message):
    with pytest.raises(AudioError, match=message):
        audio.open_audio(make(tmp_path / "bad.wav"))


def test_wav_without_samples(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((0, 2), np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="no audio samples"):
        audio.open_audio(path)


def test_streamed_resampling_matches_length_and_content():
    rate = 22050
    t = np.arange(3 * rate) / rate
    waveform = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32) * 0.5
    reader = audio.ResamplingReader(audio.ArrayReader(waveform, rate), SAMPLE_RATE, block_size=5000)
    blocks = []
    while (block := reader.read(7000)).shape[0]:
        blocks.append(block)
    out = np.concatenate(blocks)
    assert out.shape == (reader.num_samples, 2) == (3 * SAMPLE_RATE, 2)
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(out.shape[0]) / SAMPLE_RATE)
    np.testing.assert_allclose(out[200:-200, 0], expected[200:-200], atol=1e-3)


def test_outputs_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = audio.write_audio(tmp_path / "x.wav", np.zeros((10, 2), np.float32), SAMPLE_RATE)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_writer_abort_leaves_nothing(tmp_path):
    writer = audio.AudioWriter(tmp_path / "x.wav", sample_rate=SAMPLE_RATE, num_channels=2)
    writer.write(np.zeros((100, 2), np.float32))
    assert not (tmp_path / "x.wav").exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_integer_outputs_are_clipped_not_wrapped(tmp_path):
    loud = np.full((1000, 1), 1.7, np.float32)
    path = audio.write_audio(tmp_path / "loud.wav", loud, SAMPLE_RATE)
    restored, _ = audio.read_audio(path)
    assert restored.min() > 0.99


def test_writers_count_what_they_clip(tmp_path):
    loud = music_like(SAMPLE_RATE) * 2.0  # peaks at 1.6: beyond full scale
    over = int(np.count_nonzero(np.abs(loud) > 1.0))
    assert over > 0
    for fmt, bit_depth, clipped in (("wav", 16, over), ("mp3", 16, over), ("wav", 32, 0)):
        writer = audio.AudioWriter(tmp_path / f"x{bit_depth}.{fmt}", sample_rate=SAMPLE_RATE, num_channels=2, fmt=fmt,
                                   bit_depth=bit_depth)
        writer.write(loud[: SAMPLE_RATE // 2])
        writer.write(loud[SAMPLE_RATE // 2 :], last=True)
        writer.commit()
        assert writer.clipped_samples == clipped and writer.peak == pytest.approx(float(np.abs(loud).max()))


def test_clipping_report_lists_the_files_committed_with_clipped_samples(tmp_path):
    loud = music_like(SAMPLE_RATE) * 2.0
    over = int(np.count_nonzero(np.abs(loud) > 1.0))

    def write(name, waveform, bit_depth=16, commit=True):
        writer = audio.AudioWriter(tmp_path / name, sample_rate=SAMPLE_RATE, num_channels=2, bit_depth=bit_depth)
        writer.write(waveform, last=True)
        writer.commit() if commit else writer.abort()

    with audio.clipping_report() as report:
        write("loud.wav", loud)
        write("quiet.wav", loud / 4)  # within full scale: not listed
        write("float.wav", loud, bit_depth=32)  # float keeps the peaks: nothing clipped
        write("aborted.wav", loud, commit=False)  # never written: not listed
        with audio.clipping_report() as inner:  # the innermost block gets it
            write("inner.wav", loud)
    assert report == [audio.Clipped(tmp_path / "loud.wav", over, pytest.approx(float(np.abs(loud).max())))]
    assert [item.path.name for item in inner] == ["inner.wav"]
    write("outside.wav", loud)  # outside any block: counted by the writer, reported to no one
    assert len(report) == 1


def test_mp3_bitrate_is_honoured(tmp_path):
    waveform = music_like(5 * SAMPLE_RATE)
    sizes = {}
    for kbps in (96, 320):
        writer = audio.AudioWriter(tmp_path / f"{kbps}.mp3", sample_rate=SAMPLE_RATE, num_channels=2, fmt="mp3", bitrate=kbps)
        writer.write(waveform, last=True)
        sizes[kbps] = writer.commit().stat().st_size * 8 / 5 / 1000
    assert 80 < sizes[96] < 115 and 290 < sizes[320] < 340


def test_flac_float_is_refused(tmp_path):
    with pytest.raises(OutputError, match="FLAC stores at most 24 bits") as raised:
        audio.output_subtype("flac", 32)
    # The library names its keywords; the CLI prints the flags.
    assert "use `bit_depth` 16 or 24, or `fmt` wav for float" in str(raised.value) and "--" not in str(raised.value)
    assert "use --bit-depth 16 or 24, or --format wav for float" in raised.value.for_cli()
    with pytest.raises(OutputError, match="`bit_depth` must be 16, 24 or 32"):
        audio.AudioWriter(tmp_path / "x.wav", sample_rate=SAMPLE_RATE, num_channels=2, bit_depth=8)
    assert list(tmp_path.iterdir()) == []


def test_offset_errors_name_the_keyword(tmp_path, stereo_wav):
    with pytest.raises(AudioError, match=r"^`offset` must be >= 0 seconds"):
        audio.read_audio(stereo_wav, offset=-1)
    with pytest.raises(AudioError, match=r"^`offset` 99 s is past the end of") as raised:
        audio.read_audio(stereo_wav, offset=99)
    assert raised.value.for_cli().startswith("--offset 99 s is past the end of")


def test_channel_conversion():
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    np.testing.assert_array_equal(audio.convert_channels(stereo, 1), [[0.5], [0.5]])
    np.testing.assert_array_equal(audio.convert_channels(stereo[:, :1], 2), [[1.0, 1.0], [0.5, 0.5]])
    with pytest.raises(AudioError, match="Cannot convert 6 channels"):
        audio.convert_channels(np.zeros((2, 6), np.float32), 2)


def chirp(num_samples: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A rising sweep, float32 ``(num_samples,)``: every stretch of it differs, so a misplaced read shows."""
    t = np.arange(num_samples) / sample_rate
    return (0.4 * np.sin(2 * np.pi * (200 * t + 300 * t**2))).astype(np.float32)


@pytest.fixture
def two_stream_mp4(tmp_path):
    """An .mp4 with two AAC streams, like MUSDB18's .stem.mp4: 0 stereo (sweep, -sweep), 1 mono 440 Hz."""
    sweep = chirp(2 * SAMPLE_RATE)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    sf.write(tmp_path / "s0.wav", np.stack([sweep, -sweep], axis=1), SAMPLE_RATE, subtype="FLOAT")
    sf.write(tmp_path / "s1.wav", tone[:, None], SAMPLE_RATE, subtype="FLOAT")
    path = tmp_path / "two.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "s0.wav"), "-i", str(tmp_path / "s1.wav"),
                    "-map", "0:a", "-map", "1:a", "-c:a", "aac", "-b:a", "192k", str(path)], check=True)
    return path, sweep, tone


def relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean((estimate - reference) ** 2) / np.mean(reference**2)))


def test_probe_audio_reads_headers(tmp_path, two_stream_mp4):
    wav = audio.write_audio(tmp_path / "x.wav", music_like(12345, num_channels=1), SAMPLE_RATE)
    assert audio.probe_audio(wav) == audio.AudioInfo(sample_rate=SAMPLE_RATE, num_channels=1, num_samples=12345)
    path, _, _ = two_stream_mp4
    first, second = audio.probe_audio(path), audio.probe_audio(path, stream=1)
    assert (first.sample_rate, first.num_channels, second.num_channels) == (SAMPLE_RATE, 2, 1)
    assert abs(first.num_samples - 2 * SAMPLE_RATE) < 2048 and abs(second.num_samples - 2 * SAMPLE_RATE) < 2048
    with pytest.raises(AudioError, match="no audio stream with index 7"):
        audio.probe_audio(path, stream=7)
    with pytest.raises(AudioError, match="does not exist"):
        audio.probe_audio(tmp_path / "missing.wav")


def test_read_segment_with_soundfile_is_exact(tmp_path):
    waveform = music_like(10000)
    path = audio.write_audio(tmp_path / "x.wav", waveform, SAMPLE_RATE, bit_depth=32)
    np.testing.assert_array_equal(audio.read_segment(path, 1234, 500), waveform[1234:1734])
    np.testing.assert_array_equal(audio.read_segment(path, 9800, 500, sample_rate=SAMPLE_RATE), waveform[9800:])
    assert audio.read_segment(path, 20000, 500).shape == (0, 2)
    with pytest.raises(AudioError, match="sampled at 44100 Hz, not 16000 Hz"):
        audio.read_segment(path, 0, 10, sample_rate=16000)
    with pytest.raises(ValueError, match="must be >= 0"):
        audio.read_segment(path, -1, 10)


@pytest.mark.parametrize("sample_rate", [SAMPLE_RATE, None])  # given, or probed
def test_read_segment_decodes_one_stream_from_anywhere(two_stream_mp4, sample_rate):
    path, sweep, tone = two_stream_mp4
    for start in (0, 1000, 30000):
        segment = audio.read_segment(path, start, 20000, sample_rate=sample_rate, stream=0)
        assert segment.shape == (20000, 2)
        np.testing.assert_allclose(segment[:, 1], -segment[:, 0], atol=2e-3)
        # AAC is lossy and its first frames ramp in; past them the read lines up with the source
        # to the sample, right from the first sample after a seek.
        skip = 2048 if start == 0 else 0
        assert relative_error(segment[skip:, 0], sweep[start + skip : start + 20000]) < 0.02, start
    mono = audio.read_segment(path, 50000, 5000, sample_rate=sample_rate, stream=1)
    assert mono.shape == (5000, 1)
    assert relative_error(mono[:, 0], tone[50000:55000]) < 0.02
    assert audio.read_segment(path, 10 * SAMPLE_RATE, 5000, sample_rate=sample_rate, stream=1).shape == (0, 1)


def test_read_segment_falls_back_to_ffmpeg(tmp_path):
    source = audio.write_audio(tmp_path / "x.wav", np.stack([chirp(SAMPLE_RATE)] * 2, axis=1), SAMPLE_RATE, bit_depth=32)
    target = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c:a", "aac", "-b:a", "192k", str(target)], check=True)
    segment = audio.read_segment(target, 20000, 10000)
    assert segment.shape == (10000, 2)
    assert relative_error(segment[:, 0], chirp(SAMPLE_RATE)[20000:30000]) < 0.02


def test_read_segment_errors_are_one_line(tmp_path, two_stream_mp4, monkeypatch):
    path, _, _ = two_stream_mp4
    with pytest.raises(AudioError, match=r"ffmpeg cannot decode .*two.mp4.*: .*\.$") as caught:
        audio.read_segment(path, 0, 100, sample_rate=SAMPLE_RATE, stream=5)
    assert "\n" not in str(caught.value)
    with pytest.raises(AudioError, match="does not exist"):
        audio.read_segment(tmp_path / "missing.wav", 0, 100)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg is not installed"):
        audio.read_segment(path, 0, 100, sample_rate=SAMPLE_RATE, stream=1)


def test_ffmpeg_reader_is_accurate_right_after_an_offset(tmp_path):
    source = audio.write_audio(tmp_path / "x.wav", np.stack([chirp(SAMPLE_RATE)] * 2, axis=1), SAMPLE_RATE, bit_depth=32)
    target = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c:a", "aac", "-b:a", "192k", str(target)], check=True)
    waveform, _ = audio.read_audio(target, offset=0.5, duration=0.1)
    assert waveform.shape == (4410, 2)
    assert relative_error(waveform[:, 0], chirp(SAMPLE_RATE)[22050:26460]) < 0.02
    with pytest.raises(AudioError, match=r"^`offset` 9 s is past the end of .*x\.m4a") as raised:
        audio.read_audio(target, offset=9)
    assert raised.value.for_cli().startswith("--offset 9 s is past the end of")


def test_a_truncated_flac_is_one_sentence(tmp_path, tiny_model_dir, capsys):
    """An interrupted download: the header promises 12 s, the data stops at about 7 s."""
    from stemtf.cli import main

    whole = tmp_path / "whole.flac"
    sf.write(whole, music_like(12 * SAMPLE_RATE, seed=3), SAMPLE_RATE)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    reader = audio.open_audio(truncated)
    try:
        with pytest.raises(AudioError, match=r"^Cannot decode '.*truncated\.flac' near \d+\.\d s: .*\(the file is truncated or corrupt; "):
            while reader.read(1 << 16).shape[0]:
                pass
    finally:
        reader.close()
    code = main(["separate", str(truncated), "-m", str(tiny_model_dir), "-o", str(tmp_path / "out"), "--runtime", "keras"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "LibsndfileError" not in err
    errors = [line for line in err.splitlines() if line.startswith("stemtf: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"stemtf: error: Cannot decode {str(truncated)!r}"), err
    assert not (tmp_path / "out" / "truncated").exists() or not any((tmp_path / "out" / "truncated").iterdir())
