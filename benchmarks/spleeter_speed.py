"""Speed and memory: an imported Spleeter model under ``stemtf separate`` against ``spleeter separate``, same checkpoint.

Both run as a user runs them, as fresh whole processes on the same file (default 120 s of real
music, the sum of the stems of a song from ``/work/shared/data/everything-is-free``), in the same
run, alternating, ``--repeats`` times; reported: median wall time, peak RSS of the process
(``ru_maxrss`` from ``os.wait4``) and the ratios to Spleeter. stemtf runs with each runtime asked
for (``--runtimes keras,litert``): TensorFlow/oneDNN for the masks, or LiteRT (XNNPACK, no
TensorFlow in the process); the first LiteRT run of a model converts it once into the cache, so
one warm-up run per runtime comes first and is not counted.

The checkpoint is Spleeter's released layout with random values (``spleeter_make_ckpt.py``); the
compute does not depend on the values, but memory does: Spleeter initialises every kernel with
``he_uniform(seed=50)``, so same-shaped kernels hold the same numbers (in every U-Net, and
``conv2d_5`` = ``conv2d_transpose``), and LiteRT's converter stores equal constants once (a 49 MB
instead of a 196 MB ``.tflite`` for 4stems). Released weights are all distinct, so by default this
redraws every kernel (``--same-kernels`` keeps the checkpoint as it is). Nothing is asserted; the
load average is printed, since numbers taken while other work runs on the machine are only
comparable within one run.

    .venv/bin/python benchmarks/spleeter_speed.py --model 4stems --seconds 120 --repeats 3

With ``--phone``, instead: the phone figure of the imported model's masks model (the builtin-ops
``.tflite`` that ``stemtf export --format tflite`` writes as ``NAME_masks*.tflite`` and ``stemtf
separate`` runs) against the shipped ``4stems``'s, converted in this run (``--precisions``), each
one chunk (512 frames = 11.9 s) on LiteRT with ``--threads`` (default 2: a phone's big cores),
interleaved repeats, as milliseconds per second of audio; the ratio to the shipped 4stems is the
figure to read under load (``--statistic min``).

    .venv/bin/python benchmarks/spleeter_speed.py --phone --repeats 7 --threads 2
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


DISTINCT = """
import sys, numpy as np, tensorflow as tf
source, target = sys.argv[1:]
reader = tf.train.load_checkpoint(source)
rng, values, graph = np.random.default_rng(1), {}, tf.Graph()
with graph.as_default():
    for name, shape in sorted(reader.get_variable_to_shape_map().items()):
        value = reader.get_tensor(name)
        if name.endswith("kernel"):  # he_uniform's range, new numbers
            limit = float(np.abs(value).max())
            value = rng.uniform(-limit, limit, shape).astype(value.dtype)
        values[tf.compat.v1.Variable(tf.zeros(shape, value.dtype), name=name)] = value
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        for variable, value in values.items():
            variable.load(value, session)
        tf.compat.v1.train.Saver().save(session, target + "/model")
"""


def distinct_checkpoint(source: pathlib.Path, target: pathlib.Path, env: dict[str, str]) -> pathlib.Path:
    """``source`` with every kernel redrawn (distinct numbers, the same range), as ``target/model*``."""
    target.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", DISTINCT, str(source / "model"), str(target)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (target / ".probe").write_text("OK")
    return target


def phone_cost(model_dir: pathlib.Path, *, precisions: list[str], threads: int, repeats: int, statistic: str) -> None:
    """Print ms per second of audio of the masks models of the shipped 4stems and ``model_dir`` (see ``--phone``)."""
    from ai_edge_litert.interpreter import Interpreter

    from stemtf import runtimes
    from stemtf.config import load_model_config

    interpreters, seconds = {}, {}
    for source in ("4stems", model_dir):
        config, directory = load_model_config(source)
        for precision in precisions:
            path = runtimes.cached_masks_model(directory, config, segment_frames=config.segment_frames, precision=precision)
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
            detail = interpreter.get_input_details()[0]
            interpreter.set_tensor(detail["index"], np.random.default_rng(0).uniform(0, 1, detail["shape"]).astype(np.float32))
            key = (config.name, precision, path.stat().st_size)
            interpreters[key], seconds[key] = interpreter, config.segment_frames * config.hop_length / config.sample_rate
    for interpreter in interpreters.values():
        interpreter.invoke()  # warm-up
    times: dict[tuple, list[float]] = {key: [] for key in interpreters}
    for _ in range(repeats):
        for key, interpreter in interpreters.items():
            start = time.perf_counter()
            interpreter.invoke()
            times[key].append(time.perf_counter() - start)
    pick = min if statistic == "min" else statistics.median
    cost = {key: 1000 * pick(values) / seconds[key] for key, values in times.items()}
    load = os.getloadavg()
    print(f"masks models on LiteRT, {threads} threads, one {seconds[next(iter(seconds))]:.1f} s chunk, {statistic} of "
          f"{repeats}; load average {load[0]:.1f} on {os.cpu_count()} cores")
    print("| model | precision | .tflite | per second of audio | vs shipped 4stems |")
    print("|---|---|---|---|---|")
    for (name, precision, size), value in cost.items():
        base = cost[next(key for key in cost if key[0] == "4stems" and key[1] == precision)]
        print(f"| {name} | {precision} | {size / 1e6:.1f} MB | {value:.1f} ms | {value / base:.2f}x |")


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
    parser.add_argument("--same-kernels", action="store_true",
                        help="keep the checkpoint's kernels (same-shaped ones equal, as Spleeter initialises them)")
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--phone", action="store_true", help="masks model cost on LiteRT against the shipped 4stems")
    parser.add_argument("--precisions", default="float32,float16,int8", help="--phone: LiteRT precisions")
    parser.add_argument("--threads", type=int, default=2, help="--phone: LiteRT threads")
    parser.add_argument("--statistic", choices=("median", "min"), default="median", help="--phone: per chunk")
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    with tempfile.TemporaryDirectory(prefix="spleeter-speed-") as folder:
        work = pathlib.Path(folder)
        env = {**os.environ, "STEMTF_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        song = work / "song.wav"
        write_song(song, args.seconds)
        checkpoint = CHECKPOINTS / args.model
        if not args.same_kernels:
            checkpoint = distinct_checkpoint(checkpoint, work / "checkpoint" / args.model, env)
        model_dir = work / f"spleeter-{args.model}"
        subprocess.run([sys.executable, "-m", "stemtf.cli", "import", "spleeter", str(checkpoint), "--release",
                        args.model, "-o", str(model_dir), "--mask-extension", args.mask_extension, "-q"], env=env, check=True)
        if args.phone:
            os.environ["STEMTF_CACHE"] = env["STEMTF_CACHE"]
            phone_cost(model_dir, precisions=args.precisions.split(","), threads=args.threads, repeats=args.repeats,
                       statistic=args.statistic)
            return
        (work / "spleeter-models").mkdir()
        (work / "spleeter-models" / args.model).symlink_to(checkpoint)
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
    kernels = "same-shaped kernels equal" if args.same_kernels else "every kernel distinct"
    print(f"{args.model} ({kernels}), {args.seconds:.0f} s of music, median of {args.repeats}; "
          f"load average {load[0]:.1f} on {os.cpu_count()} cores")
    print("| command | whole process (s) | peak RSS (GB) | speed vs Spleeter | memory vs Spleeter |")
    print("|---|---|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {median['wall_s']:.1f} | {median['peak_rss_mb'] / 1024:.2f} | "
              f"{base['wall_s'] / median['wall_s']:.2f}x | {median['peak_rss_mb'] / base['peak_rss_mb']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "results": results, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
