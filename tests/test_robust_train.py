"""Training when things go wrong or run long: a corrupt file stops it with one line; logs get progress lines."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stemtf import train
from stemtf.errors import DataError

from test_train import CONFIG, FAST, write_toy_data

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corrupt_data(tmp_path_factory) -> pathlib.Path:
    """Toy tracks as FLAC; one stem file has 4000 random bytes a third of the way in (its header is fine)."""
    root = write_toy_data(tmp_path_factory.mktemp("corrupt") / "data", num_samples=80000)
    for path in root.rglob("*.wav"):
        waveform, rate = sf.read(path)
        sf.write(path.with_suffix(".flac"), waveform, rate, subtype="PCM_16")
        path.unlink()
    bad = root / "song1" / "a.flac"
    data = bytearray(bad.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 4000] = np.random.default_rng(0).bytes(4000)
    bad.write_bytes(bytes(data))
    return root


def test_file_corrupted_mid_way_stops_training_with_one_line_naming_it(corrupt_data, tmp_path):
    with pytest.raises(DataError, match=r"^Training stopped: Cannot decode '.*song1/a.flac' near .* s: .*the file is corrupt") as caught:
        train.fit(CONFIG, corrupt_data, output_dir=tmp_path / "run", steps=40, checkpoint_every=40, tensorboard=False,
                  validation_tracks=["song0"], **FAST)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_train_prints_progress_lines_when_stderr_is_a_log(tmp_path):
    data = write_toy_data(tmp_path / "data", num_tracks=2)
    config = tmp_path / "toy.json"
    config.write_text(json.dumps(CONFIG.to_dict()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "stemtf.cli", "train", str(config), "--data", str(data), "-o", str(tmp_path / "run"),
         "--steps", "6", "--log-every", "3", "--num-frames", "16", "--batch-size", "2", "--checkpoint-every", "6"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["3/6", "6/6"], result.stderr[-2000:]
    assert all("loss" in line for line in lines)
