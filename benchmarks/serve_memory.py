"""Peak memory of ``stemtf serve`` under what its limits allow, for two trees in one run (issue 26 items 5-7).

Each scenario starts a fresh server (``python -m stemtf.cli serve MODEL``) from a tree of the
package, waits until it answers, runs the requests, and reads the server's peak resident memory
(``VmHWM`` in ``/proc/PID/status``), then stops it. The trees are extracted with ``git archive``
(``--before`` and ``--after`` revisions), so uncommitted work in the checkout does not count.

Scenarios (sizes are options):

- ``predict``: one TF Serving ``:predict`` in row format just under the 8 M-number limit
  (``--predict-seconds`` of stereo audio, ~71 MB of JSON in, ~750 MB out); the response is read
  and thrown away as it comes.
- ``separate_wav``: the ``separate_wav`` signature with one mono 16-bit WAV of ``--wav-seconds``.
- ``graph``: not the server: the ``separate_wav`` graph of a SavedModel exported by the tree (what
  TF Serving runs), on the same WAV as ``separate_wav``, in a fresh process.
- ``uploads``: ``--max-concurrency 1`` and ``--uploads`` concurrent ``/v1/separate`` uploads of
  ``--upload-mb`` each; the peak is read ``--wait`` seconds after the last upload was sent (while
  all but one wait for the slot), then the server is killed.

Usage::

    python benchmarks/serve_memory.py --before 164083a --after HEAD --out /tmp/serve_memory.json

Prints one line per (tree, scenario): seconds, memory after start-up and peak, in GB.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]


def extract(revision: str, target: pathlib.Path) -> pathlib.Path:
    """The ``stemtf`` package (and its models) of ``revision`` under ``target``."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "stemtf", "saved_models"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory(pid: int) -> tuple[float, float]:
    """``(resident now, peak resident)`` of a process in GB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1e6, int(fields["VmHWM"].split()[0]) / 1e6


@contextlib.contextmanager
def server(tree: pathlib.Path, model: str, work: pathlib.Path, *extra: str):
    """A ``stemtf serve`` of ``tree`` on a free port; yields ``(port, process)``; killed at the end."""
    port = free_port()
    temp = work / f"tmp-{port}"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tree), "TMPDIR": str(temp), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "stemtf.cli", "serve", model, "--port", str(port), "--cache-dir", str(work / f"cache-{port}"),
         "--max-upload-mb", "100", *extra], cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()[-2000:])
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", f"/v1/models/{model}")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.5)
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
        yield port, process
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(temp, ignore_errors=True)


def post(port: int, path: str, body: bytes, content_type: str, timeout: float = 3600) -> int:
    """POST and read the answer in 1 MB pieces (thrown away); the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    while response.read(1 << 20):
        pass
    connection.close()
    return response.status


def music(seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 44100)
    t = np.arange(n) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.05 * rng.standard_normal((n, channels))
    return tone.astype(np.float32) * np.ones((1, channels), np.float32)


def wav(waveform: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, waveform, 44100, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def predict_body(seconds: float) -> bytes:
    rows = np.round(music(seconds, 2), 6)
    text = ",".join(f"[{left:.6f},{right:.6f}]" for left, right in rows.tolist())
    return b'{"instances":[' + text.encode() + b"]}"


def run_predict(port: int, model: str, args) -> None:
    status = post(port, f"/v1/models/{model}:predict", predict_body(args.predict_seconds), "application/json")
    assert status == 200, status


def run_separate_wav(port: int, model: str, args) -> None:
    data = base64.b64encode(wav(music(args.wav_seconds, 1))).decode()
    body = json.dumps({"signature_name": "separate_wav", "inputs": {"audio_bytes": [{"b64": data}]}}).encode()
    status = post(port, f"/v1/models/{model}:predict", body, "application/json")
    assert status == 200, status


def run_uploads(port: int, model: str, args, pid: int) -> None:
    seconds = args.upload_mb * 1e6 / (44100 * 2 * 2)
    bodies = [wav(music(seconds, 2, seed)) for seed in range(args.uploads)]
    def upload(body: bytes) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):  # the server is killed mid-answer
            post(port, "/v1/separate", body, "audio/wav")

    threads = [threading.Thread(target=upload, args=(body,), daemon=True) for body in bodies]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    time.sleep(args.wait)  # the first is separated, the others wait for the slot


EXPORT = """
import sys
from stemtf.export import export_savedmodel
from stemtf.model import load_model
network, config = load_model(sys.argv[1])
export_savedmodel(network, config, sys.argv[2])
"""

RUN_GRAPH = """
import pathlib, sys, time
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = pathlib.Path(sys.argv[2]).read_bytes()
def memory():
    fields = dict(line.split(":", 1) for line in pathlib.Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1e6, int(fields["VmHWM"].split()[0]) / 1e6
start = memory()[0]
began = time.monotonic()
outputs = loaded.signatures["separate_wav"](audio_bytes=tf.constant([data]))
del outputs
now, peak = memory()
print(round(time.monotonic() - began, 1), start, peak, now)
"""


def run_graph(tree: pathlib.Path, model: str, work: pathlib.Path, args) -> dict:
    """The exported SavedModel's own ``separate_wav`` graph (what TF Serving runs), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    target = work / f"export-{tree.name}"
    subprocess.run([sys.executable, "-c", EXPORT, model, str(target)], env=env, check=True, capture_output=True)
    song = work / "graph.wav"
    song.write_bytes(wav(music(args.wav_seconds, 1)))
    done = subprocess.run([sys.executable, "-c", RUN_GRAPH, str(target), str(song)], env=env, check=True,
                          capture_output=True, text=True)
    seconds, started, peak, now = (float(value) for value in done.stdout.split())
    return {"seconds": seconds, "start_gb": round(started, 2), "peak_gb": round(peak, 2), "after_gb": round(now, 2)}


SCENARIOS = {"predict": ([], run_predict), "separate_wav": ([], run_separate_wav), "uploads": (["--max-concurrency", "1"], None),
             "graph": (None, None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="164083a", help="Revision measured first (default: before issue 26's server fixes).")
    parser.add_argument("--after", default="HEAD", help="Revision measured second.")
    parser.add_argument("--model", default="4stems")
    parser.add_argument("--scenarios", default="predict,separate_wav,uploads,graph")
    parser.add_argument("--predict-seconds", type=float, default=90.0, help="Stereo seconds in the :predict body (90 s: 7.9 M numbers).")
    parser.add_argument("--wav-seconds", type=float, default=590.0)
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--upload-mb", type=float, default=50.0)
    parser.add_argument("--wait", type=float, default=20.0)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="Also write the results as JSON here.")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="serve-memory-") as scratch:
        work = pathlib.Path(scratch)
        for label in ("before", "after"):  # what a revision like HEAD was when measured
            setattr(args, label, subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", getattr(args, label)],
                                                check=True, capture_output=True, text=True).stdout.strip())
        trees = {label: extract(getattr(args, label), work / label) for label in ("before", "after")}
        for scenario in args.scenarios.split(","):
            extra, run = SCENARIOS[scenario]
            for label, tree in trees.items():
                if scenario == "graph":
                    row = {"tree": label, "revision": getattr(args, label), "scenario": scenario,
                           **run_graph(tree, args.model, work, args)}
                    results.append(row)
                    print(f"{label:6s} {scenario:12s} {row['seconds']:7.1f} s  start {row['start_gb']:.2f} GB  "
                          f"peak {row['peak_gb']:.2f} GB  after {row['after_gb']:.2f} GB", flush=True)
                    continue
                with server(tree, args.model, work, *extra) as (port, process):
                    started, _ = memory(process.pid)
                    began = time.monotonic()
                    if scenario == "uploads":
                        run_uploads(port, args.model, args, process.pid)
                    else:
                        run(port, args.model, args)
                    now, peak = memory(process.pid)
                    row = {"tree": label, "revision": getattr(args, label), "scenario": scenario,
                           "seconds": round(time.monotonic() - began, 1), "start_gb": round(started, 2),
                           "peak_gb": round(peak, 2), "after_gb": round(now, 2)}
                results.append(row)
                print(f"{label:6s} {scenario:12s} {row['seconds']:7.1f} s  start {row['start_gb']:.2f} GB  "
                      f"peak {row['peak_gb']:.2f} GB  after {row['after_gb']:.2f} GB", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"options": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
