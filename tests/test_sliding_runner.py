"""Phones, sliding plan: the masks model exported for a latency, run by litert_runner.SlidingRunner."""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stemtf import litert_runner, runtimes, sliding
from stemtf.cli import main
from stemtf.separator import Separator
from stemtf.streaming import StreamingSeparator

from conftest import SAMPLE_RATE, music_like

LATENCY = 0.03  # seconds: for the tiny model (hop 64), window 40, step 12, lookahead 5 frames


def window_masks(magnitude: np.ndarray) -> np.ndarray:
    """Numpy masks that depend on the whole window (its mean), so a window in the wrong place changes them."""
    m = magnitude[0]
    share = m / (m + m.mean(axis=0, keepdims=True) + 1e-3)
    return np.stack([share, 1 - share, 0.5 * share])


def block_sizes(seed: int) -> list[int]:
    """Blocks of 1 sample, then random sizes up to more than a window."""
    return [1] * 150 + list(np.random.default_rng(seed).integers(1, 3000, size=40))


def run_runner(runner, waveform: np.ndarray, sizes) -> np.ndarray:
    outputs, position = [], 0
    for size in sizes:
        if position >= waveform.shape[0]:
            break
        block = waveform[position : position + size]
        outputs.append(runner.process(block))
        assert outputs[-1].shape == (3, block.shape[0], 2)  # as many samples as given
        position += size
    outputs.append(runner.flush())
    return np.concatenate(outputs, axis=1)


def run_library(streamer: StreamingSeparator, waveform: np.ndarray, sizes) -> np.ndarray:
    outputs, position = [], 0
    for size in sizes:
        if position >= waveform.shape[0]:
            break
        outputs.append(streamer.process(waveform[position : position + size]))
        position += size
    outputs.append(streamer.flush())
    return np.stack([np.concatenate([o[stem] for o in outputs]) for stem in streamer.stems])


def runner_for(config, predict, streamer: StreamingSeparator) -> litert_runner.SlidingRunner:
    return litert_runner.SlidingRunner(
        predict, num_stems=len(config.stems), num_channels=config.num_channels, n_fft=config.n_fft,
        hop_length=config.hop_length, max_bins=config.max_bins, mask_extension=config.mask_extension,
        extension_bins=config.extension_bins, window_frames=streamer.window_frames, step_frames=streamer.step_frames,
        lookahead_frames=streamer.lookahead_frames,
    )


@pytest.mark.parametrize("total", [1, 5000])
def test_runner_copy_of_the_sliding_plan_is_pinned_to_the_library(tiny_model, total):
    model, config = tiny_model
    separator = Separator(model, config)
    separator.masks_for = lambda window: window_masks  # numpy masks: the same numbers, bit for bit
    waveform = music_like(total, seed=total)
    sizes = block_sizes(total)
    streamer = StreamingSeparator(separator, latency=LATENCY)
    library = run_library(streamer, waveform, sizes)
    runner = runner_for(config, window_masks, streamer)
    assert runner.latency_samples == streamer.latency_samples
    np.testing.assert_array_equal(run_runner(runner, waveform, sizes), library)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    """``stemtf export TINY --format tflite --latency 0.03``: its folder and what it printed."""
    root = tmp_path_factory.mktemp("sliding-export")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["export", str(tiny_model_dir), "--format", "tflite", "--latency", str(LATENCY), "-o", str(root)])
    assert code == 0
    return root, out.getvalue()


def test_cli_export_writes_the_window_model_and_its_plan(exported, tiny_model):
    _, config = tiny_model
    root, printed = exported
    assert sorted(p.name for p in root.iterdir()) == [
        "tiny.tflite", "tiny.tflite.json", "tiny_masks.tflite", "tiny_masks.tflite.json", "tiny_sliding.tflite",
        "tiny_sliding.tflite.json",
    ]
    window, step, lookahead = sliding.frames_for_latency(LATENCY * SAMPLE_RATE, config)
    meta = json.loads((root / "tiny_sliding.tflite.json").read_text())
    assert meta["kind"] == "masks" and meta["segment_frames"] == meta["window_frames"] == window
    assert (meta["step_frames"], meta["lookahead_frames"]) == (step, lookahead)
    assert meta["latency_samples"] == (step + lookahead + 3) * 64 <= LATENCY * SAMPLE_RATE
    assert meta["inputs"][0]["shape"] == [1, window, config.max_bins, 2]
    assert f"sliding plan: window {window} frames, step {step}, lookahead {lookahead}" in printed
    # The other models carry no plan, and a description without these keys (older exports) still reads.
    assert "window_frames" not in json.loads((root / "tiny_masks.tflite.json").read_text())
    with pytest.raises(ValueError, match="has no sliding plan; export it with"):
        litert_runner.SlidingRunner.from_model(litert_runner.MasksModel(root / "tiny_masks.tflite"))


def test_sliding_runner_on_the_exported_model_equals_the_library_stream(exported, tiny_model):
    model, config = tiny_model
    path = exported[0] / "tiny_sliding.tflite"
    runner = litert_runner.SlidingRunner.from_model(litert_runner.MasksModel(path))
    separator = Separator(model, config)
    windows = []
    separator.masks_for = lambda window: windows.append(window) or runtimes.LiteRTMasks(path, config.stems)  # the same file
    waveform = music_like(6000, seed=7)
    sizes = block_sizes(7)
    streamer = StreamingSeparator(separator, latency=LATENCY)
    library = run_library(streamer, waveform, sizes)
    assert windows == [runner.window_frames] and runner.latency_samples == streamer.latency_samples
    streamed = run_runner(runner, waveform, sizes)
    assert streamed.shape == (3, 6000 + runner.latency_samples, 2)
    np.testing.assert_array_equal(streamed[:, : runner.latency_samples], 0.0)
    np.testing.assert_allclose(streamed, library, atol=1e-5)


def test_sliding_runner_never_imports_tensorflow(exported):
    script = (
        "import sys, numpy as np; from stemtf import litert_runner; "
        f"r = litert_runner.SlidingRunner.from_model(litert_runner.MasksModel({str(exported[0] / 'tiny_sliding.tflite')!r})); "
        "r.process(np.ones((3000, 2), np.float32)); r.flush(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "tflite", "--latency", "0.005"], "--latency must be at least 0.006 s for this model (one STFT frame). Received 0.005 s."),
        (["--format", "tflite", "--latency", "-1"], "--latency must be > 0 seconds"),
        (["--format", "onnx", "--latency", "0.5"], "--latency (the sliding window's masks model for phones) applies to the tflite format only"),
    ],
)
def test_cli_export_rejects_a_bad_latency_in_one_line(capsys, tiny_model_dir, tmp_path, args, message):
    code = main(["export", str(tiny_model_dir), "-o", str(tmp_path / "out"), *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("stemtf: error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_runner_command_line_refuses_to_overwrite_and_groups_stems_by_track(exported, tiny_model, tmp_path):
    _, config = tiny_model
    model = str(exported[0] / "tiny.tflite")
    songs = []
    for name, seed in (("one", 1), ("two", 2)):
        songs.append(tmp_path / f"{name}.wav")
        sf.write(songs[-1], music_like(9000, seed=seed), SAMPLE_RATE)
    out = tmp_path / "out"
    assert litert_runner.main([model, *map(str, songs), "-o", str(out)]) == 0
    for song in songs:  # one folder per track, as `stemtf separate` writes
        assert sorted(p.name for p in (out / song.stem).iterdir()) == sorted(f"{stem}.wav" for stem in config.stems)
    before = (out / "one" / "vocals.wav").read_bytes()
    sf.write(songs[0], music_like(9000, seed=5), SAMPLE_RATE)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert litert_runner.main([model, str(songs[0]), "-o", str(out)]) == 1
    assert err.getvalue().strip().endswith("vocals.wav' already exists; pass --overwrite to replace it.")
    assert (out / "one" / "vocals.wav").read_bytes() == before  # untouched
    assert litert_runner.main([model, str(songs[0]), "-o", str(out), "--overwrite"]) == 0
    assert (out / "one" / "vocals.wav").read_bytes() != before
    assert not list(out.rglob("*.tmp"))
