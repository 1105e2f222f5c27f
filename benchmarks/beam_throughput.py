"""Batch separation: N files through the Beam DirectRunner (multi-process) vs one `Separator` loop.

Both separate the same synthetic stereo files with the same random-weight model and runtime, in
fresh processes, in the same run; the report gives each one's wall time, files per minute and peak
memory of its whole process tree (Beam's workers are child processes), and the throughput ratio.
On a 2-core machine the multi-process runner can at best match the loop (the loop already uses both
cores inside the model); on a cluster each worker is a machine. Nothing is asserted; it exits 0.

Usage::

    .venv/bin/python benchmarks/beam_throughput.py [--files 6] [--seconds 20] [--workers 2] [--runtime litert]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import psutil
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = "import sys, keras; from stemtf.config import load_config; from stemtf.model import build_model, save_model; " \
        "keras.utils.set_random_seed(0); c = load_config(sys.argv[1]); save_model(build_model(c), c, sys.argv[2])"
LOOP = textwrap.dedent("""
    import sys, glob
    from stemtf.separator import Separator
    separator = Separator.from_pretrained(sys.argv[1], runtime=sys.argv[4])
    for path in sorted(glob.glob(sys.argv[2])):
        separator.separate_file(path, output_dir=sys.argv[3], overwrite=True)
""")
BEAM = textwrap.dedent("""
    import sys
    from stemtf import beam
    summary = beam.run(sys.argv[2], output_dir=sys.argv[3], model=sys.argv[1], runtime=sys.argv[4], pipeline_args=[
        "--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={sys.argv[5]}"])
    assert summary.failed == 0, summary.failures
""")


def measure(command: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and the peak summed RSS (GB) of the process and all its children."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    if process.returncode:
        raise SystemExit(f"{command[2][:40]!r} failed: {process.stderr.read().decode(errors='replace')[-800:]}")
    return time.perf_counter() - start, peak / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", default="4stems")
    parser.add_argument("--runtime", default="litert", choices=["keras", "litert"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stemtf-beam-bench-") as work:
        work = pathlib.Path(work)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "STEMTF_CACHE": str(work / "cache")}
        rng = np.random.default_rng(0)
        (work / "in").mkdir()
        for index in range(args.files):
            t = np.arange(int(args.seconds * 44100)) / 44100
            song = 0.2 * np.sin(2 * np.pi * (110 + 20 * index) * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
            sf.write(work / "in" / f"song{index}.wav", song.astype(np.float32), 44100, subtype="PCM_16")
        subprocess.run([sys.executable, "-c", BUILD, args.config, str(work / "model")], check=True, env=env, cwd=ROOT)
        model, pattern = str(work / "model"), str(work / "in" / "*.wav")
        # Untimed: fills the LiteRT cache and the disk cache.
        subprocess.run([sys.executable, "-c", LOOP, model, str(work / "in" / "song0.wav"), str(work / "warm"), args.runtime],
                       check=True, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        loop_s, loop_gb = measure([sys.executable, "-c", LOOP, model, pattern, str(work / "loop"), args.runtime], env)
        beam_s, beam_gb = measure([sys.executable, "-c", BEAM, model, pattern, str(work / "beam"), args.runtime, str(args.workers)], env)
    audio_min = args.files * args.seconds / 60
    print(f"{args.files} files x {args.seconds:g} s, {args.config} (random weights), runtime {args.runtime}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'':34} {'wall s':>8} {'files/min':>10} {'audio min/min':>14} {'peak GB':>8}")
    for name, seconds, gigabytes in (("Separator loop, one process", loop_s, loop_gb),
                                     (f"Beam DirectRunner, {args.workers} processes", beam_s, beam_gb)):
        print(f"{name:34} {seconds:8.1f} {60 * args.files / seconds:10.1f} {60 * audio_min / seconds:14.2f} {gigabytes:8.2f}")
    print(f"throughput Beam / loop: {loop_s / beam_s:.2f}x; peak memory Beam / loop: {beam_gb / loop_gb:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
