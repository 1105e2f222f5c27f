"""Before/after: the same `stemtf separate` run from two source trees, interleaved in one run.

A refactor must not make separation slower or hungrier. Load on a shared machine drifts over
minutes, so instead of two benchmark runs at different times this alternates fresh processes of the
two trees (``PYTHONPATH=TREE python -m stemtf.cli separate ...``) on the same input and the same
random-weight model, and reports medians of wall time, CPU time and peak RSS, with the ratios
after / before. Nothing is asserted; it always exits 0.

Usage (e.g. the last commit against the working tree)::

    git worktree add /tmp/before HEAD
    .venv/bin/python benchmarks/compare_trees.py /tmp/before . --seconds 120 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

BUILD_MODEL = """
import sys, keras
from stemtf.config import load_config
from stemtf.model import build_model, save_model
keras.utils.set_random_seed(0)
config = load_config(sys.argv[1])
save_model(build_model(config), config, sys.argv[2])
"""


def run_once(tree: pathlib.Path, wav: pathlib.Path, model: pathlib.Path, out: pathlib.Path,
             runtime: str | None = None) -> dict[str, float]:
    """One fresh `stemtf separate` process from ``tree``: wall s, CPU s (user + system) and peak RSS in GB."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "stemtf.cli", "separate", str(wav), "--model", str(model), "-o", str(out), "-q", "--overwrite"]
    if runtime:
        command += ["--runtime", runtime]
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{tree}: stemtf separate failed: {child.stderr.read().decode(errors='replace')[-500:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_gb": usage.ru_maxrss * 1024 / 1e9}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=pathlib.Path, help="source tree measured as the baseline")
    parser.add_argument("after", type=pathlib.Path, help="source tree compared with it")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the stereo input (default 120)")
    parser.add_argument("--config", default="4stems", help="preset whose random-weight model is used (default 4stems)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per tree; medians are reported (default 3)")
    parser.add_argument("--model", type=pathlib.Path, help="a model folder to separate with instead of --config's random weights")
    parser.add_argument("--runtime", choices=("auto", "keras", "litert"), help="stemtf separate --runtime (default: its own)")
    args = parser.parse_args()
    before, after = args.before.resolve(), args.after.resolve()
    with tempfile.TemporaryDirectory(prefix="stemtf-compare-") as work:
        work = pathlib.Path(work)
        rng = np.random.default_rng(0)
        seconds = int(args.seconds * 44100)
        t = np.arange(seconds) / 44100
        music = 0.2 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.05 * rng.standard_normal((seconds, 2))
        sf.write(work / "input.wav", music.astype(np.float32), 44100, subtype="PCM_16")
        model = args.model.resolve() if args.model else work / "model"
        if not args.model:  # saved by the baseline: a newer tree reads an older config, not always the reverse
            subprocess.run([sys.executable, "-c", BUILD_MODEL, args.config, str(model)], check=True, cwd=before,
                           env={**os.environ, "PYTHONPATH": str(before), "TF_CPP_MIN_LOG_LEVEL": "2"})
        results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        run_once(before, work / "input.wav", model, work / "out", args.runtime)  # untimed: fills the disk and LiteRT caches
        for _ in range(args.repeats):
            for name, tree in (("before", before), ("after", after)):
                results[name].append(run_once(tree, work / "input.wav", model, work / name, args.runtime))
    what = str(args.model) if args.model else f"{args.config} (random weights)"
    print(f"`stemtf separate`, {args.seconds:g} s stereo, {what}, runtime {args.runtime or 'default'}, median of {args.repeats} "
          f"interleaved fresh processes; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'':8} {'wall s':>8} {'CPU s':>8} {'peak GB':>8}")
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in ("wall", "cpu", "rss_gb")} for name, runs in results.items()}
    for name in ("before", "after"):
        m = medians[name]
        print(f"{name:8} {m['wall']:8.2f} {m['cpu']:8.2f} {m['rss_gb']:8.3f}")
    ratio = {key: medians["after"][key] / medians["before"][key] for key in ("wall", "cpu", "rss_gb")}
    print(f"{'after/before':8} {ratio['wall']:5.2f}x {ratio['cpu']:7.2f}x {ratio['rss_gb']:7.2f}x")
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
