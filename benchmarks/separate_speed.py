"""Measure how fast stemtf separates files, and how much memory it needs, against Spleeter when present.

For every (stem count, track length) this runs fresh processes and reports medians over ``--repeats``:

- **whole process**: ``stemtf separate FILE --model DIR -o OUT -q --overwrite`` as a user runs it
  (TensorFlow import, model load, graph tracing, decode, separate, encode): wall time and the
  child's peak RSS (``ru_maxrss`` from ``os.wait4``);
- **separation only**: a Python child that imports stemtf and TensorFlow and loads the
  :class:`~stemtf.separator.Separator` (reported as import+load), then times ``separate_file`` alone;
- **Spleeter** (the baseline, when its venv is found): ``spleeter separate -p spleeter:Nstems`` whole
  process on the same file, and the ratios stemtf / Spleeter for time and peak memory.

Inputs are deterministic synthetic stereo 44.1 kHz 16-bit WAVs written block by block into a temporary
folder; the models have random weights (built from ``configs/{2,4,5}stems.json``), which costs the same
compute as trained ones. Nothing is asserted: the numbers depend on the machine and its load (the load
average is printed), and the script always exits 0.

Usage::

    .venv/bin/python benchmarks/separate_speed.py [--lengths 30 120 600] [--stems 2 4 5] [--repeats N]
        [--spleeter-venv PATH --spleeter-models PATH] [--spleeter-lengths 30 120] [--json results.json]

Spleeter set-up (speed peer with random weights): see ``../shared/peers/README.md``; by default it is
looked for in ``peers-work/spleeter-venv`` with checkpoints in ``peers-work/spleeter-models``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE_RATE = 44100
BLOCK_SECONDS = 10
DEFAULT_SPLEETER_VENV = ROOT / "peers-work" / "spleeter-venv"
DEFAULT_SPLEETER_MODELS = ROOT / "peers-work" / "spleeter-models"
DEFAULT_SPLEETER_MAX_LENGTH = 120.0  # Spleeter holds the whole track's spectrogram: memory grows with length
PEERS_README = "../shared/peers/README.md"
STEM_COUNTS = (2, 4, 5)


# ----------------------------------------------------------------------------------------------------------
# Inputs and models


def write_synthetic_wav(path: pathlib.Path, seconds: float, seed: int = 0) -> None:
    """Write ``seconds`` of deterministic stereo 16-bit audio: shaped noise + harmonic notes + kicks.

    Written in blocks of ``BLOCK_SECONDS`` with one generator per block, so a 600 s file needs only a
    block's worth of memory and the same (seconds, seed) always gives the same bytes.
    """
    total = int(round(seconds * SAMPLE_RATE))
    block = BLOCK_SECONDS * SAMPLE_RATE
    kick_period, kick_length = SAMPLE_RATE // 2, SAMPLE_RATE // 8
    kick = 0.35 * np.exp(-30.0 * np.arange(kick_length) / SAMPLE_RATE) * np.sin(
        2 * np.pi * 55.0 * np.arange(kick_length) / SAMPLE_RATE
    )
    with sf.SoundFile(path, "w", samplerate=SAMPLE_RATE, channels=2, subtype="PCM_16", format="WAV") as out:
        for index, start in enumerate(range(0, total, block)):
            n = min(block, total - start)
            rng = np.random.default_rng([seed, index])
            # Pink-ish noise: white noise with a 1/sqrt(f) spectrum, shaped per block.
            spectrum = np.fft.rfft(rng.standard_normal((n, 2)), axis=0)
            frequencies = np.arange(spectrum.shape[0], dtype=np.float64)
            spectrum[1:] /= np.sqrt(frequencies[1:])[:, None]
            spectrum[0] = 0
            noise = np.fft.irfft(spectrum, n, axis=0)
            signal = 0.15 * noise / (np.abs(noise).max() + 1e-9)
            # Harmonic notes, a new one every second, different phase per channel.
            for note_second in range(start // SAMPLE_RATE, -(-(start + n) // SAMPLE_RATE)):
                lo = max(note_second * SAMPLE_RATE, start)
                hi = min((note_second + 1) * SAMPLE_RATE, start + n)
                f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12.0)
                tt = (np.arange(lo, hi) - note_second * SAMPLE_RATE) / SAMPLE_RATE
                envelope = np.exp(-3.0 * tt)
                phase = 2 * np.pi * f0 * tt
                for harmonic in range(1, 8):
                    for channel in range(2):
                        signal[lo - start : hi - start, channel] += 0.06 / harmonic * envelope * np.sin(harmonic * phase + channel)
            # Kick every 0.5 s (placed by absolute sample index, so blocks join seamlessly).
            first = -(-start // kick_period) * kick_period - kick_period
            for kick_start in range(max(first, 0), start + n, kick_period):
                a, b = max(kick_start, start), min(kick_start + kick_length, start + n)
                if a < b:
                    signal[a - start : b - start] += kick[a - kick_start : b - kick_start, None]
            out.write(np.clip(signal, -0.99, 0.99).astype(np.float32))


_BUILD_MODELS = textwrap.dedent(
    """
    import json, sys
    import keras
    from stemtf.config import load_config
    from stemtf.model import build_model, save_model
    keras.utils.set_random_seed(0)
    for config_path, directory in json.loads(sys.argv[1]):
        config = load_config(config_path)
        model = build_model(config)
        save_model(model, config, directory)
        print(config.name, ",".join(config.stems), model.count_params(), flush=True)
    """
)

_SEPARATION_ONLY = textwrap.dedent(
    """
    import json, os, resource, sys, time
    model_dir, audio_path, output_dir, runtime = sys.argv[1:5]
    t0 = time.perf_counter()
    if runtime == "keras":
        import tensorflow, keras  # what a program using stemtf imports once
    from stemtf import Separator
    t1 = time.perf_counter()
    separator = Separator.from_pretrained(model_dir, runtime=runtime)
    t2 = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t3 = time.perf_counter()
    paths = separator.separate_file(audio_path, output_dir=output_dir, overwrite=True)
    t4 = time.perf_counter()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("@@RESULT@@" + json.dumps({
        "import_s": t1 - t0, "load_s": t2 - t1, "separate_s": t4 - t3,
        "maxrss_before_separate": rss_before, "maxrss_after_separate": rss_after,
        "outputs": len(paths),
    }), flush=True)
    """
)


# ----------------------------------------------------------------------------------------------------------
# Running children


def _rss_to_mb(maxrss: int) -> float:
    """``ru_maxrss`` is kB on Linux and bytes on macOS; return MB (10^6 bytes)."""
    return maxrss / 1e6 if sys.platform == "darwin" else maxrss * 1024 / 1e6


def run_child(command: list[str], *, env: dict[str, str] | None = None, timeout: float, log_path: pathlib.Path) -> dict:
    """Run ``command`` in a fresh process; wall time, the child's own peak RSS, exit status, stdout."""
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT)
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        # Read stdout before waiting; the children print little, so a pipe never fills up meaningfully.
        stdout = child.stdout.read()
        child.stdout.close()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)  # os.wait4 reaped it; keep Popen consistent
    if stdout:
        with open(log_path, "ab") as log:
            log.write(b"\n--- stdout ---\n" + stdout)
    return {
        "wall_s": wall,
        "peak_rss_mb": _rss_to_mb(usage.ru_maxrss),
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "returncode": child.returncode,
        "stdout": stdout.decode("utf-8", "replace"),
        "log": str(log_path),
    }


def _tail(path: str, lines: int = 6) -> str:
    try:
        text = pathlib.Path(path).read_text("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join("      " + line for line in text[-lines:])


def _count_outputs(folder: pathlib.Path) -> int:
    return sum(1 for p in folder.rglob("*.wav")) if folder.exists() else 0


def stemtf_command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "stemtf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stemtf.cli"]


# ----------------------------------------------------------------------------------------------------------
# Reporting


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda row: "  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def load_text() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} {five:.2f} {fifteen:.2f}"
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=float, nargs="+", default=[30, 120, 600], help="track lengths in seconds (default 30 120 600)")
    parser.add_argument("--stems", type=int, nargs="+", default=[4], choices=STEM_COUNTS, help="models to measure (default 4)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "keras", "litert"], help="stemtf's mask runtime (default auto: litert when installed)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement; the median is reported (default 3)")
    parser.add_argument("--spleeter-venv", type=pathlib.Path, default=None, help=f"Spleeter 2.4.2 venv (default {DEFAULT_SPLEETER_VENV.relative_to(ROOT)} if present)")
    parser.add_argument("--spleeter-models", type=pathlib.Path, default=None, help=f"Spleeter MODEL_PATH (default {DEFAULT_SPLEETER_MODELS.relative_to(ROOT)})")
    parser.add_argument("--spleeter-lengths", type=float, nargs="+", default=None, help=f"lengths to run Spleeter on (default those <= {DEFAULT_SPLEETER_MAX_LENGTH:g} s)")
    parser.add_argument("--no-spleeter", action="store_true", help="skip the Spleeter baseline")
    parser.add_argument("--no-separation-only", action="store_true", help="skip the in-process separate_file timing")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run of each tool (it fills the disk cache)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a child process is killed (default 3600)")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write all results to this JSON file")
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="keep inputs, models and logs here instead of a temporary folder")
    return parser.parse_args(argv)


def find_spleeter(args: argparse.Namespace) -> tuple[pathlib.Path | None, pathlib.Path | None, str]:
    """The Spleeter executable and MODEL_PATH, or (None, None, why it is skipped)."""
    if args.no_spleeter:
        return None, None, "--no-spleeter was given"
    venv = (args.spleeter_venv or DEFAULT_SPLEETER_VENV).resolve()
    models = (args.spleeter_models or DEFAULT_SPLEETER_MODELS).resolve()
    executable = venv / "bin" / "spleeter"
    if not executable.exists():
        return None, None, f"no Spleeter venv at {venv}"
    if not models.is_dir():
        return None, None, f"no Spleeter checkpoints at {models}"
    return executable, models, ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.repeats = max(1, args.repeats)
    lengths = sorted(set(args.lengths))
    stems_list = sorted(set(args.stems))
    spleeter, spleeter_models, skip_reason = find_spleeter(args)
    if spleeter is not None:
        spleeter_lengths = set(args.spleeter_lengths) if args.spleeter_lengths is not None else {
            length for length in lengths if length <= DEFAULT_SPLEETER_MAX_LENGTH
        }
        missing = [s for s in stems_list if not (spleeter_models / f"{s}stems").is_dir()]
        if missing:
            print(f"note: no Spleeter checkpoint for {', '.join(f'{s}stems' for s in missing)} in {spleeter_models}; those are skipped")
    else:
        spleeter_lengths = set()

    temporary = args.workdir is None
    work = pathlib.Path(tempfile.mkdtemp(prefix="stemtf-bench-")) if temporary else args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_start": load_text(),
        },
        "settings": {"lengths": lengths, "stems": stems_list, "repeats": args.repeats, "runtime": args.runtime,
                     "spleeter": str(spleeter) if spleeter else None,
                     "spleeter_lengths": sorted(spleeter_lengths), "spleeter_skipped": skip_reason or None},
        "runs": [],
        "summary": [],
    }
    print(f"stemtf speed benchmark — {os.cpu_count()} CPUs, load average {results['machine']['load_average_start']} "
          f"(1/5/15 min), {args.repeats} fresh process(es) per number, medians reported")
    print(f"work folder: {work}")
    try:
        # Inputs.
        audio: dict[float, pathlib.Path] = {}
        for length in lengths:
            path = work / f"synth_{length:g}s.wav"
            if not path.exists():
                start = time.perf_counter()
                write_synthetic_wav(path, length, seed=int(length))
                print(f"wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s")
            audio[length] = path

        # Models, built in a child so this process never holds TensorFlow.
        model_dirs = {s: work / "models" / f"{s}stems" for s in stems_list}
        todo = [(str(ROOT / "configs" / f"{s}stems.json"), str(d)) for s, d in model_dirs.items()
                if not (d / "model.weights.h5").exists()]
        if todo:
            built = subprocess.run([sys.executable, "-c", _BUILD_MODELS, json.dumps(todo)], cwd=ROOT,
                                   capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if built.returncode:
                print("could not build the models:\n" + built.stderr[-3000:])
                return 0
            for line in built.stdout.split("\n"):
                if line.strip():
                    name, names, params = line.split()
                    print(f"built random-weight model {name} ({names}; {int(params) / 1e6:.1f} M parameters)")

        # The LiteRT conversion is cached (once per model) in a folder of this run; the warm-up fills it.
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STEMTF_CACHE": str(work / "cache")}
        runtime_args = ["--runtime", args.runtime]
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        counter = 0

        if not args.no_warmup:
            # One untimed run of each program on the shortest file, so the first timed run does not pay
            # for reading TensorFlow's libraries from disk or compiling .pyc files.
            shortest, stems = audio[lengths[0]], stems_list[0]
            print("warming up (untimed runs)...", flush=True)
            for model_stems in stems_list:  # also converts every model to LiteRT once (cached)
                run_child(stemtf_command() + ["separate", str(shortest), "--model", str(model_dirs[model_stems]),
                                              "-o", str(work / "out" / "warmup"), "-q", "--overwrite", *runtime_args],
                          env=env, timeout=args.timeout, log_path=logs / f"warmup-stemtf-{model_stems}.log")
            if spleeter is not None and (spleeter_models / f"{stems}stems").is_dir():
                run_child([str(spleeter), "separate", "-p", f"spleeter:{stems}stems", "-o", str(work / "out" / "warmup"), str(shortest)],
                          env={**env, "MODEL_PATH": str(spleeter_models)}, timeout=args.timeout,
                          log_path=logs / "warmup-spleeter.log")
            shutil.rmtree(work / "out" / "warmup", ignore_errors=True)

        for stems in stems_list:
            for length in lengths:
                wav = audio[length]
                use_spleeter = spleeter is not None and length in spleeter_lengths and (spleeter_models / f"{stems}stems").is_dir()
                samples: dict[str, list[dict]] = {"stemtf": [], "separation_only": [], "spleeter": []}
                for repeat in range(args.repeats):
                    # (a) whole stemtf process.
                    counter += 1
                    out = work / "out" / f"run{counter}"
                    run = run_child(stemtf_command() + ["separate", str(wav), "--model", str(model_dirs[stems]),
                                                        "-o", str(out), "-q", "--overwrite", *runtime_args],
                                    env=env, timeout=args.timeout, log_path=logs / f"run{counter}-stemtf.log")
                    run.update(tool="stemtf", stems=stems, length_s=length, repeat=repeat, outputs=_count_outputs(out))
                    shutil.rmtree(out, ignore_errors=True)
                    _record(results, samples["stemtf"], run, expect=stems)

                    # (b) separation only.
                    if not args.no_separation_only:
                        counter += 1
                        out = work / "out" / f"run{counter}"
                        run = run_child([sys.executable, "-c", _SEPARATION_ONLY, str(model_dirs[stems]), str(wav), str(out), args.runtime],
                                        env=env, timeout=args.timeout, log_path=logs / f"run{counter}-separation.log")
                        run.update(tool="separation_only", stems=stems, length_s=length, repeat=repeat)
                        for line in run["stdout"].splitlines():
                            if line.startswith("@@RESULT@@"):
                                inner = json.loads(line[len("@@RESULT@@"):])
                                run.update(inner)
                                run["rss_before_separate_mb"] = _rss_to_mb(inner["maxrss_before_separate"])
                                run["rss_after_separate_mb"] = _rss_to_mb(inner["maxrss_after_separate"])
                        if "separate_s" not in run and run["returncode"] == 0:
                            run["returncode"] = -1000  # finished without a result line
                        shutil.rmtree(out, ignore_errors=True)
                        _record(results, samples["separation_only"], run, expect=stems)

                    # (c) Spleeter whole process, same file.
                    if use_spleeter:
                        counter += 1
                        out = work / "out" / f"run{counter}"
                        run = run_child([str(spleeter), "separate", "-p", f"spleeter:{stems}stems", "-o", str(out), str(wav)],
                                        env={**env, "MODEL_PATH": str(spleeter_models)}, timeout=args.timeout,
                                        log_path=logs / f"run{counter}-spleeter.log")
                        run.update(tool="spleeter", stems=stems, length_s=length, repeat=repeat, outputs=_count_outputs(out))
                        shutil.rmtree(out, ignore_errors=True)
                        _record(results, samples["spleeter"], run, expect=stems)

                summary = _summarise(stems, length, samples)
                results["summary"].append(summary)
                print(f"  {stems}stems {length:g} s: stemtf {_fmt(summary['stemtf_wall_s'], '.2f', ' s')}, "
                      f"{_fmt(summary['stemtf_peak_rss_mb'], '.0f', ' MB')}"
                      + (f"; Spleeter {_fmt(summary['spleeter_wall_s'], '.2f', ' s')}, "
                         f"{_fmt(summary['spleeter_peak_rss_mb'], '.0f', ' MB')}" if use_spleeter else "")
                      + f"  (load {load_text()})", flush=True)

        results["machine"]["load_average_end"] = load_text()
        report(results, spleeter is not None, skip_reason)
        if args.json:
            for run in results["runs"]:
                run.pop("stdout", None)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            print(f"\nresults written to {args.json}")
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _record(results: dict, bucket: list[dict], run: dict, *, expect: int) -> None:
    ok = run["returncode"] == 0 and run.get("outputs", expect) == expect
    run["ok"] = ok
    results["runs"].append({k: v for k, v in run.items() if k != "stdout"})
    if ok:
        bucket.append(run)
    else:
        print(f"  ! {run['tool']} {run['stems']}stems {run['length_s']:g} s failed (exit {run['returncode']}, "
              f"{run.get('outputs', '?')} of {expect} outputs); log {run['log']}:\n{_tail(run['log'])}")


def _summarise(stems: int, length: float, samples: dict[str, list[dict]]) -> dict:
    med = lambda tool, key: _median([r[key] for r in samples[tool] if r.get(key) is not None])
    summary = {
        "stems": stems, "length_s": length,
        "stemtf_runs": len(samples["stemtf"]),
        "stemtf_wall_s": med("stemtf", "wall_s"),
        "stemtf_peak_rss_mb": med("stemtf", "peak_rss_mb"),
        "stemtf_cpu_s": _median([r["user_s"] + r["sys_s"] for r in samples["stemtf"]]),
        "separation_runs": len(samples["separation_only"]),
        "separate_s": med("separation_only", "separate_s"),
        "import_load_s": _median([r["import_s"] + r["load_s"] for r in samples["separation_only"] if "import_s" in r]),
        "separation_peak_rss_mb": med("separation_only", "peak_rss_mb"),
        "rss_before_separate_mb": med("separation_only", "rss_before_separate_mb"),
        "spleeter_runs": len(samples["spleeter"]),
        "spleeter_wall_s": med("spleeter", "wall_s"),
        "spleeter_peak_rss_mb": med("spleeter", "peak_rss_mb"),
        "spleeter_cpu_s": _median([r["user_s"] + r["sys_s"] for r in samples["spleeter"]]),
    }
    summary["stemtf_rtf"] = _ratio(length, summary["stemtf_wall_s"])
    summary["separate_rtf"] = _ratio(length, summary["separate_s"])
    summary["spleeter_rtf"] = _ratio(length, summary["spleeter_wall_s"])
    summary["time_ratio_stemtf_over_spleeter"] = _ratio(summary["stemtf_wall_s"], summary["spleeter_wall_s"])
    summary["cpu_ratio_stemtf_over_spleeter"] = _ratio(summary["stemtf_cpu_s"], summary["spleeter_cpu_s"])
    summary["memory_ratio_stemtf_over_spleeter"] = _ratio(summary["stemtf_peak_rss_mb"], summary["spleeter_peak_rss_mb"])
    return summary


def report(results: dict, have_spleeter: bool, skip_reason: str) -> None:
    machine = results["machine"]
    print(f"\nResults (medians of {results['settings']['repeats']} fresh processes; RTF = audio seconds / wall seconds; "
          f"load average start {machine['load_average_start']}, end {machine['load_average_end']}, {machine['cpus']} CPUs)\n")
    header = ["model", "audio", "whole s", "whole RTF", "peak RSS", "CPU s", "import+load s", "separate s", "separate RTF", "sep. RSS before→peak"]
    rows = []
    for s in results["summary"]:
        rows.append([
            f"{s['stems']}stems", f"{s['length_s']:g} s", _fmt(s["stemtf_wall_s"], ".2f"), _fmt(s["stemtf_rtf"], ".1f", "×"),
            _fmt(s["stemtf_peak_rss_mb"], ".0f", " MB"), _fmt(s["stemtf_cpu_s"], ".1f"), _fmt(s["import_load_s"], ".2f"),
            _fmt(s["separate_s"], ".2f"), _fmt(s["separate_rtf"], ".1f", "×"),
            "—" if s["separation_peak_rss_mb"] is None else
            f"{_fmt(s['rss_before_separate_mb'], '.0f')}→{_fmt(s['separation_peak_rss_mb'], '.0f')} MB",
        ])
    print(f"stemtf, runtime {results['settings'].get('runtime', 'auto')} (whole = `stemtf separate` process; CPU s = its user+system time, steadier than wall time on a busy "
          "machine; separate = separate_file() alone in a fresh process)")
    print_table(header, rows)

    print()
    if not have_spleeter:
        print(f"Spleeter baseline skipped: {skip_reason}. To compare, set up Spleeter 2.4.2 with random-weight "
              f"checkpoints as in {PEERS_README} (venv peers-work/spleeter-venv, checkpoints peers-work/spleeter-models), "
              "or pass --spleeter-venv PATH --spleeter-models PATH.")
        return
    compared = [s for s in results["summary"] if s["spleeter_runs"]]
    if not compared:
        print("Spleeter baseline: no length selected for it (see --spleeter-lengths).")
        return
    header = ["model", "audio", "stemtf s", "Spleeter s", "time stemtf/Spleeter", "stemtf CPU s", "Spleeter CPU s",
              "CPU stemtf/Spleeter", "stemtf RSS", "Spleeter RSS", "memory stemtf/Spleeter"]
    rows = [[
        f"{s['stems']}stems", f"{s['length_s']:g} s", _fmt(s["stemtf_wall_s"], ".2f"), _fmt(s["spleeter_wall_s"], ".2f"),
        _fmt(s["time_ratio_stemtf_over_spleeter"], ".2f"), _fmt(s["stemtf_cpu_s"], ".1f"), _fmt(s["spleeter_cpu_s"], ".1f"),
        _fmt(s["cpu_ratio_stemtf_over_spleeter"], ".2f"), _fmt(s["stemtf_peak_rss_mb"], ".0f", " MB"),
        _fmt(s["spleeter_peak_rss_mb"], ".0f", " MB"), _fmt(s["memory_ratio_stemtf_over_spleeter"], ".2f"),
    ] for s in compared]
    print("stemtf vs Spleeter 2.4.2 (whole process, same file, same run; random weights; ratio < 1: stemtf is faster / smaller)")
    print_table(header, rows)
    skipped = [s for s in results["summary"] if not s["spleeter_runs"]]
    if skipped:
        print("Spleeter not run for: " + ", ".join(f"{s['stems']}stems {s['length_s']:g} s" for s in skipped)
              + " (its memory grows with the track length; --spleeter-lengths selects lengths)")


if __name__ == "__main__":
    try:
        main()
    except SystemExit as exit_:  # argparse: --help and usage errors keep their exit codes
        raise exit_
    except BaseException:  # a benchmark reports problems but never fails a build
        import traceback

        traceback.print_exc()
    sys.exit(0)
