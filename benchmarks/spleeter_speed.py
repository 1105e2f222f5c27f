"""Speed and memory: an imported Spleeter model under ``stemtf separate`` against ``spleeter separate``, same checkpoint.

Both run as a user runs them, as fresh whole processes on the same file (default 120 s of real
music, the sum of the stems of a song from ``/work/shared/data/everything-is-free``), in the same
run, alternating, ``--repeats`` times; reported: median wall time, peak RSS of the process
(``ru_maxrss`` from ``os.wait4``) and the ratios to Spleeter. stemtf runs with each runtime asked
for (``--runtimes keras,litert``): TensorFlow/oneDNN for the masks, or LiteRT (XNNPACK, no
TensorFlow in the process); the first LiteRT run of a model converts it once into the cache, so
one warm-up run per runtime comes first and is not counted.

The checkpoint is Spleeter's released layout with random values (``spleeter_make_ckpt.py``); the
compute does not depend on the values. Nothing is asserted; the load average is printed, since
numbers taken while other work runs on the machine are only comparable within one run.

    .venv/bin/python benchmarks/spleeter_speed.py --model 4stems --seconds 120 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPLEETER_VENV = pathlib.Path("/work/peers-work/spleeter-venv")
CHECKPOINTS = pathlib.Path("/work/peers-work/spleeter-parity")
SONGS = pathlib.Path("/work/shared/data/everything-is-free")


def write_song(path: pathlib.Path, seconds: float) -> None:
    """``seconds`` of real music (a song's stems summed, songs concatenated as needed), 16-bit WAV."""
    pieces, have = [], 0
    for song in sorted(SONGS.iterdir()):
        stems = [sf.read(p, dtype="float32", always_2d=True) for p in sorted(song.glob("*.ogg"))]
        rate = stems[0][1]
        length = min(len(data) for data, _ in stems)
        pieces.append(sum(data[:length] for data, _ in stems))
        have += length
        if have >= seconds * rate:
            break
    audio = np.clip(np.concatenate(pieces)[: int(seconds * rate)], -1, 1)
    sf.write(path, audio, rate, subtype="PCM_16")


def run(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall time and peak RSS of one whole process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read().decode("utf-8", "replace")
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="4stems", help="Spleeter release (2stems, 4stems, 5stems)")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtimes", default="keras,litert")
    parser.add_argument("--mask-extension", default="zeros")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    with tempfile.TemporaryDirectory(prefix="spleeter-speed-") as folder:
        work = pathlib.Path(folder)
        env = {**os.environ, "STEMTF_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        song = work / "song.wav"
        write_song(song, args.seconds)
        model_dir = work / f"spleeter-{args.model}"
        subprocess.run([sys.executable, "-m", "stemtf.cli", "import", "spleeter", str(CHECKPOINTS / args.model), "--release",
                        args.model, "-o", str(model_dir), "--mask-extension", args.mask_extension, "-q"], env=env, check=True)
        (work / "spleeter-models").mkdir()
        (work / "spleeter-models" / args.model).symlink_to(CHECKPOINTS / args.model)
        commands = {
            "spleeter": [str(SPLEETER_VENV / "bin" / "spleeter"), "separate", "-p", f"spleeter:{args.model}", "-o",
                         str(work / "out-spleeter"), str(song)],
        }
        for runtime in runtimes:
            commands[f"stemtf {runtime}"] = [sys.executable, "-m", "stemtf.cli", "separate", str(song), "-m", str(model_dir),
                                             "-o", str(work / f"out-{runtime}"), "--runtime", runtime, "-q", "--overwrite"]
        spleeter_env = {**env, "MODEL_PATH": str(work / "spleeter-models")}
        for name, command in commands.items():  # warm-up: LiteRT conversion, file caches
            if name != "spleeter":
                run(command, env)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                results[name].append(run(command, spleeter_env if name == "spleeter" else env))
    load = os.getloadavg()
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in results.items()}
    base = medians["spleeter"]
    print(f"{args.model}, {args.seconds:.0f} s of music, median of {args.repeats}; load average {load[0]:.1f} on {os.cpu_count()} cores")
    print("| command | whole process (s) | peak RSS (GB) | speed vs Spleeter | memory vs Spleeter |")
    print("|---|---|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {median['wall_s']:.1f} | {median['peak_rss_mb'] / 1024:.2f} | "
              f"{base['wall_s'] / median['wall_s']:.2f}x | {median['peak_rss_mb'] / base['peak_rss_mb']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "results": results, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
