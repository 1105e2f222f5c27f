"""`stemtf train --strategy multi-worker`: two real worker processes on 127.0.0.1 (never another address).

Each worker is a `stemtf train` subprocess with its own TF_CONFIG, as Kubernetes or Vertex AI would
start it; the run directory they share must be the one-worker format, and losing a worker must end
the survivor with a one-line error (not a hang) after which `--resume` continues the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from stemtf import train
from stemtf.errors import ClusterError
from stemtf.model import load_model

from conftest import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]
STEM_GROUPS = {"other": ["other", "piano"]}
WORKER = "import sys; from stemtf.cli import main; sys.exit(main(sys.argv[1:]))"


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out on 127.0.0.1 right now (released before the workers bind them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Workers:
    """Two `stemtf train` processes on 127.0.0.1; worker 0 is the chief."""

    def __init__(self, tmp_path: pathlib.Path, stem_folder: pathlib.Path, output: pathlib.Path, config_file: pathlib.Path):
        self.tmp_path, self.output = tmp_path, output
        self.args = [
            "train", config_file, "--data", stem_folder, "-o", output, "--batch-size", "2", "--num-frames", "64",
            "--stem-group", "other=other,piano", "--validation-track", "three", "--strategy", "multi-worker",
            "--worker-timeout", "30", "-q",
        ]
        self.processes: list[subprocess.Popen] = []
        self.runs = 0

    def temp_dir(self, index: int) -> pathlib.Path:
        """Worker ``index``'s TMPDIR in the latest run (a killed worker leaves its own behind)."""
        return self.tmp_path / f"run{self.runs}-worker{index}-tmp"

    def start(self, *extra: str) -> None:
        self.runs += 1
        ports = free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        self.processes = []
        for index in range(2):
            self.temp_dir(index).mkdir(exist_ok=True)
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                "PYTHONPATH": str(REPO), "TMPDIR": str(self.temp_dir(index)), "CUDA_VISIBLE_DEVICES": "",
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            self.processes.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, *map(str, self.args), *extra], env=env, cwd=self.tmp_path,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))

    def wait(self, index: int, timeout: float = 150) -> tuple[int, str]:
        """``(exit code, stderr)`` of one worker; a hang fails the test (and kills the worker)."""
        try:
            _, err = self.processes[index].communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"worker {index} still running after {timeout} s")
        return self.processes[index].returncode, err

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture
def workers(tmp_path, stem_folder):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(tiny_config().to_dict()))
    pool = Workers(tmp_path, stem_folder, tmp_path / "run", config_file)
    yield pool
    pool.stop()


def state_of(output: pathlib.Path) -> dict:
    return json.loads((output / "checkpoint" / "state.json").read_text())


def kill_after_next_checkpoint(workers: Workers, victim: int, after_step: int) -> int:
    """SIGKILL worker ``victim`` once a checkpoint past ``after_step`` exists; check the survivor's error; return the step saved."""
    state_file = workers.output / "checkpoint" / "state.json"
    deadline = time.monotonic() + 150
    while not (state_file.is_file() and state_of(workers.output)["step"] > after_step):
        assert time.monotonic() < deadline and all(p.poll() is None for p in workers.processes), "no new checkpoint"
        time.sleep(0.5)
    workers.processes[victim].send_signal(signal.SIGKILL)
    started = time.monotonic()
    code, err = workers.wait(1 - victim, timeout=90)  # a hang fails here
    print(f"survivor of a killed worker {victim} stopped after {time.monotonic() - started:.1f} s: {err.strip().splitlines()[-1]}")
    assert code == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stemtf: error: Worker ") and "lost the other workers" in last, err
    assert last.endswith("restart every worker with --resume to continue from the last checkpoint."), err
    workers.wait(victim)
    return state_of(workers.output)["step"]


@pytest.mark.slow
def test_two_workers_survive_losing_either_and_write_the_one_worker_format(workers, stem_folder):
    # Run 1: lose worker 1; run 2 (resumed): lose the chief; run 3 (resumed): finish two more steps.
    workers.start("--steps", "400", "--checkpoint-every", "2", "--seed", "3")
    first = kill_after_next_checkpoint(workers, victim=1, after_step=0)
    workers.start("--steps", "400", "--checkpoint-every", "2", "--seed", "3", "--resume")
    second = kill_after_next_checkpoint(workers, victim=0, after_step=first)
    assert first >= 2 and second > first and second % 2 == 0
    workers.start("--steps", str(second + 2), "--checkpoint-every", "2", "--seed", "3", "--resume")
    for index in (0, 1):
        code, err = workers.wait(index)
        assert code == 0, err

    # The run directory is the one-worker format, the step counter went on, and no step was lost.
    output = workers.output
    model, config = load_model(output)
    assert config == tiny_config() and model.count_params() > 0
    state = state_of(output)
    assert state["step"] == second + 2
    assert [entry["step"] for entry in state["history"]] == list(range(2, second + 3, 2))
    assert {"loss", "vocals_sdr", "val_loss", "val_vocals_sdr"} <= set(state["history"][-1])
    assert all(np.isfinite(value) for value in state["history"][-1].values())
    assert sorted(p.name for p in (output / "checkpoint").iterdir()) == ["model.weights.h5", "optimizer.npz", "state.json"]
    if importlib.util.find_spec("tensorboard") is not None:  # the chief's TensorBoard logs, from the custom loop
        assert any((output / "logs").rglob("*tfevents*"))
    # In the last run worker 1 left nothing behind: its checkpoints went to a temporary folder, deleted at the end.
    assert list(workers.temp_dir(1).iterdir()) == [] and list(workers.temp_dir(0).iterdir()) == []

    # The same format: one-worker training resumes the workers' checkpoint (weights, optimizer, step).
    result = train.fit(
        config, stem_folder, output_dir=output, steps=second + 4, batch_size=2, num_frames=64, checkpoint_every=2,
        seed=3, stem_groups=STEM_GROUPS, validation_tracks=["three"], resume=True, tensorboard=False,
    )
    assert result.step == second + 4 and [entry["step"] for entry in result.history][-2:] == [second + 2, second + 4]


def test_shards_split_every_batch_between_workers(stem_folder):
    from stemtf import data as data_lib

    config = tiny_config()
    tracks, _ = data_lib.training_split(stem_folder, stems=config.stems, stem_groups=STEM_GROUPS, validation_fraction=0)
    geometry = dict(stems=config.stems, sample_rate=config.sample_rate, num_channels=2, n_fft=config.n_fft,
                    hop_length=config.hop_length, max_bins=config.max_bins, num_frames=16, batch_size=4, first_example=8)
    whole = [batch[0].numpy() for batch in data_lib.training_dataset(tracks, **geometry).take(2)]
    shards = [[batch[0].numpy() for batch in data_lib.training_dataset(tracks, num_shards=2, shard_index=k, **geometry).take(2)]
              for k in (0, 1)]
    for step in range(2):
        assert shards[0][step].shape[0] == 2
        np.testing.assert_array_equal(np.concatenate([shards[0][step], shards[1][step]]), whole[step])
    assert not np.array_equal(shards[0][0], shards[1][0])
    with pytest.raises(ValueError, match="must divide `batch_size`"):
        data_lib.training_dataset(tracks, num_shards=3, **geometry)


@pytest.mark.parametrize(
    ("tf_config", "pattern"),
    [
        (None, "^`strategy` multi-worker needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "needs a 'cluster' and a 'task'"),
        ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "must list 'worker' addresses"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}', "is not in its cluster"),
    ],
)
def test_bad_tf_config_is_one_clear_error(monkeypatch, tf_config, pattern):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ClusterError, match=pattern):
        train.distributed.read_tf_config(os.environ)


def test_chief_is_the_chief_task_else_worker_zero():
    vertex = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}, "environment": "cloud"}
    assert train.distributed.read_tf_config({"TF_CONFIG": json.dumps(vertex)}) == (3, 2, False)
    vertex["task"] = {"type": "chief", "index": 0}
    assert train.distributed.read_tf_config({"TF_CONFIG": json.dumps(vertex)}) == (3, 0, True)
    indexed_job = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    assert train.distributed.read_tf_config({"TF_CONFIG": json.dumps(indexed_job)}) == (2, 0, True)


@pytest.mark.parametrize(
    ("args", "tf_config", "pattern"),
    [
        (["--strategy", "multi-worker"], None, "error: --strategy multi-worker needs the TF_CONFIG environment variable"),
        (["--strategy", "multi-worker"], "[1, 2]", "needs a 'cluster' and a 'task'"),
        (["--strategy", "several"], None, "--strategy must be one of auto, multi-worker"),
        (["--strategy", "multi-worker", "--worker-timeout", "0"], None, "--worker-timeout must be a positive number"),
    ],
)
def test_cli_strategy_errors_are_one_line(capsys, monkeypatch, stem_folder, tmp_path, args, tf_config, pattern):
    from stemtf.cli import main

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(tiny_config().to_dict()))
    code = main(["train", str(config_file), "--data", str(stem_folder), "-o", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("stemtf: error: "), err
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "run").exists()


def test_multi_worker_after_other_tensorflow_work_is_one_clear_error(monkeypatch):
    import tensorflow as tf

    tf.constant(1.0) + 1  # TensorFlow has run: collective ops can no longer be configured here
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    ))
    with pytest.raises(ClusterError, match="^`strategy` multi-worker must start before TensorFlow runs anything else") as raised:
        train.distributed.make_cluster("multi-worker")
    assert raised.value.for_cli().startswith("--strategy multi-worker must start")


def test_the_library_names_worker_timeout_by_its_keyword(monkeypatch):
    """A peer that never answers: the library's error names `worker_timeout`; the CLI's (for_cli) names --worker-timeout."""
    def listen_on_loopback(address):  # the library listens on every interface (as TensorFlow's server does); tests never do
        return socket.create_server(("127.0.0.1", int(address.rpartition(":")[2])))

    monkeypatch.setattr(train.distributed, "_listen", listen_on_loopback)
    own, peer = (f"127.0.0.1:{port}" for port in free_ports(2))
    with pytest.raises(ClusterError, match="never answered") as raised:
        train.distributed.wait_for_workers([own, peer], 0, timeout=0.3, poll=0.05)
    assert str(raised.value).endswith("wait longer with `worker_timeout`.") and "--" not in str(raised.value)
    assert raised.value.for_cli().endswith("wait longer with --worker-timeout.")


def _lone_worker(tmp_path, stem_folder, timeout: float) -> tuple[subprocess.Popen, int]:
    """Worker 0 of two whose peer never starts; returns the process and its own port."""
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(tiny_config().to_dict()))
    ports = free_ports(2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": 0}})}
    args = ["train", config_file, "--data", stem_folder, "-o", tmp_path / "run", "--batch-size", "2", "--num-frames", "64",
            "--stem-group", "other=other,piano", "--strategy", "multi-worker", "--worker-timeout", str(timeout), "-q"]
    process = subprocess.Popen([sys.executable, "-c", WORKER, *map(str, args)], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, ports[0]


def test_a_peer_that_never_starts_fails_after_the_worker_timeout(tmp_path, stem_folder):
    process, _ = _lone_worker(tmp_path, stem_folder, timeout=3)
    try:
        _, err = process.communicate(timeout=120)  # TensorFlow's own wait hung for 14 minutes here
    finally:
        process.kill()
    assert process.returncode == 1, err
    (line,) = err.strip().splitlines()
    assert line.startswith("stemtf: error: Worker 0 of 2 waited 3 s for the other workers of TF_CONFIG; 127.0.0.1:")
    assert line.endswith("never answered. Start every worker (each with its own task in TF_CONFIG), or wait longer "
                         "with --worker-timeout.")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_waiting_for_its_peers_obeys_stop_signals(tmp_path, stem_folder, signum):
    process, port = _lone_worker(tmp_path, stem_folder, timeout=600)
    try:
        deadline = time.monotonic() + 120
        while True:  # it listens on its own address once it waits for the other worker
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode != 0 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
