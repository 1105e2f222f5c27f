"""A Spleeter checkpoint's distilled student: how close to its teacher, and how much faster than ``spleeter separate``.

    .venv/bin/python benchmarks/distill_spleeter_report.py TEACHER STUDENT [--json out.json]
    # e.g. ../data-work/models/spleeter-4stems ../data-work/runs/spleeter-4stems-student (training/distill_spleeter.py)

Two parts, in one run (``--skip-quality`` / ``--skip-cost`` leave one out):

* **quality**: teacher (the imported Spleeter model, Spleeter-exact: ``stemtf separate`` equals
  ``spleeter separate`` on it to 60 dB) and student separate the same held-out real music, Caesium
  ``--offset`` .. ``--offset + --seconds`` (the mixture of its stems; every recipe holds Caesium out),
  with :class:`stemtf.Separator`. Per stem: the SDR of the student's stem against the teacher's (how
  well it imitates) beside that of uniform masks against the teacher's (a teacher whose masks are
  nearly uniform, as a random checkpoint's are, is imitated well by anything: the student's figure
  means something only above this one) and that of the teacher itself started ``--shift`` samples
  later on the same music (its chunks then sit elsewhere: a teacher whose output depends on where
  its windows sit more than on the music cannot be imitated beyond this by a student trained on
  crops), and the cSDR of each against the real stem, with the
  unprocessed mixture and uniform masks beside them; and their mean over the stems. Uniform masks
  are ``1 / num_stems`` applied through the teacher's mask extension: with Spleeter's ``zeros``,
  nothing above 11 kHz, as teacher and student, so the cut-off favours neither side.
* **cost**: ``spleeter separate`` (Spleeter 2.4.2 in its own venv, ``MODEL_PATH`` holding the same
  checkpoint the teacher was imported from), ``stemtf separate -m TEACHER`` and ``stemtf separate -m
  STUDENT`` (``--runtime``, default LiteRT, as a user runs it) on the same ``--cost-seconds`` of real
  music (16-bit WAV), as fresh whole processes, alternating, ``--repeats`` times after one warm-up run
  each (the first LiteRT run of a model converts it into the cache); median wall time and peak RSS
  (``ru_maxrss`` from ``os.wait4``) and the ratios to Spleeter. Times are only worth recording on a
  quiet machine: the load average before and after is printed and saved, and ``under_load`` is set
  when it exceeds the number of cores.

Nothing is asserted; a command that fails stops the report with its stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from distill_report import real_stems, sdr  # noqa: E402  (benchmarks/: the script's own folder)

ROOT = pathlib.Path(__file__).resolve().parents[1]
EIF = ROOT.parent / "shared" / "data" / "everything-is-free"
SPLEETER = pathlib.Path("/work/peers-work/spleeter-venv/bin/spleeter")
SPLEETER_MODELS = pathlib.Path("/work/peers-work/spleeter-parity")  # MODEL_PATH: holds 4stems/ (checkpoint, .probe)
HELD_OUT = "Caesium"
COLUMNS = ("student_vs_teacher_sdr", "uniform_vs_teacher_sdr", "shifted_teacher_vs_teacher_sdr", "teacher_csdr", "student_csdr", "mixture_csdr", "uniform_csdr")


def uniform_masks(mixture: np.ndarray, config) -> np.ndarray:
    """Every stem's estimate with uniform masks (``1 / num_stems``), applied as the model applies its masks.

    That is, through its STFT and its mask extension: with Spleeter's ``zeros`` extension, nothing
    above the network's bins (11 kHz), as the teacher and its student; with a full-band extension,
    ``mixture / num_stems``. float32 ``(num_samples, num_channels)``.
    """
    from stemtf import dsp

    spectrogram = dsp.stft(mixture, n_fft=config.n_fft, hop_length=config.hop_length)
    mask = np.full(spectrogram.shape[:1] + (config.max_bins,) + spectrogram.shape[2:], 1 / len(config.stems), np.float32)
    return dsp.istft(spectrogram, n_fft=config.n_fft, hop_length=config.hop_length, num_samples=len(mixture), mask=mask,
                     mask_extension=config.mask_extension, extension_bins=config.extension_bins)


def quality(teacher: str | os.PathLike, student: str | os.PathLike, *, eif: pathlib.Path = EIF, offset: float = 60.0,
            seconds: float = 60.0, runtime: str = "keras", shift: int = 12345) -> dict:
    """Per stem: the student against the teacher, and both, the mixture and uniform masks against the real stems (dB)."""
    from stemtf import Separator

    separators = {"teacher": Separator.from_pretrained(teacher, runtime=runtime),
                  "student": Separator.from_pretrained(student, runtime=runtime)}
    stems = separators["teacher"].config.stems
    if separators["student"].config.stems != stems:
        raise SystemExit(f"The student's stems {separators['student'].config.stems} are not the teacher's {stems}.")
    mixture, truth, rate = real_stems(stems, offset, seconds, folder=eif / HELD_OUT)
    estimates = {role: separator.separate(mixture, rate) for role, separator in separators.items()}
    uniform = uniform_masks(mixture, separators["teacher"].config)
    # The teacher on the same music, started ``shift`` samples later on its chunk grid: how much of
    # its output is the music and not where its windows sit (no student trained on crops can do better)
    padded = np.concatenate([np.zeros((shift, mixture.shape[1]), mixture.dtype), mixture])
    shifted = {stem: waveform[shift:] for stem, waveform in separators["teacher"].separate(padded, rate).items()}
    rows = {}
    for stem in stems:
        if np.sum(truth[stem] ** 2) < 1e-6:
            continue  # a silent reference: nothing to score against
        rows[stem] = {
            "student_vs_teacher_sdr": sdr(estimates["teacher"][stem], estimates["student"][stem]),
            "uniform_vs_teacher_sdr": sdr(estimates["teacher"][stem], uniform),
            "shifted_teacher_vs_teacher_sdr": sdr(estimates["teacher"][stem], shifted[stem]),
            "teacher_csdr": sdr(truth[stem], estimates["teacher"][stem]),
            "student_csdr": sdr(truth[stem], estimates["student"][stem]),
            "mixture_csdr": sdr(truth[stem], mixture),
            "uniform_csdr": sdr(truth[stem], uniform),
        }
    mean = {column: float(np.mean([row[column] for row in rows.values()])) for column in COLUMNS}
    return {"excerpt": f"{HELD_OUT} {offset:g}-{offset + seconds:g} s", "runtime": runtime, "shift": shift, "stems": rows, "mean": mean}


# Peak RSS of a process is measured by a small launcher, not by this process: Linux carries the RSS
# high-water mark of the process that forks (or vforks) into its child across exec, so a child of
# this report (TensorFlow and two models loaded) would be charged for the report's own gigabyte.
LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        os.execvpe(sys.argv[1], sys.argv[1:], os.environ)
    except OSError as error:
        sys.stderr.write(f"{sys.argv[1]}: {error}\\n")
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}))
"""


def run_process(command: list[str], *, env: dict[str, str] | None) -> dict[str, float]:
    """Wall time and peak RSS (MB) of one whole process; a failure stops the report with its stderr."""
    result = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, *command], env=env, capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise SystemExit(f"{shlex.join(command)} failed to start:\n{result.stderr[-2000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if measured.pop("code") != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{result.stderr[-2000:]}")
    return measured


def medians(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The median of every measure of every command's runs."""
    return {name: {key: statistics.median(run[key] for run in runs) for key in runs[0]} for name, runs in results.items()}


def cost(teacher: str, student: str, *, seconds: float, repeats: int, runtime: str, spleeter: pathlib.Path,
         spleeter_models: pathlib.Path, release: str) -> dict:
    """Whole-process wall time and peak RSS of ``spleeter separate`` and ``stemtf separate`` (teacher, student), same file."""
    from spleeter_speed import write_song  # benchmarks/: 120 s of real music as a 16-bit WAV, as the Spleeter speed figures

    if not (spleeter_models / release / "checkpoint").is_file():
        raise SystemExit(f"No Spleeter checkpoint in {spleeter_models / release} (MODEL_PATH for spleeter:{release}).")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="distill-spleeter-cost-") as folder:
        work = pathlib.Path(folder)
        env = {**os.environ, "STEMTF_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        song = work / "song.wav"
        write_song(song, seconds)
        commands = {
            "spleeter separate": [str(spleeter), "separate", "-p", f"spleeter:{release}", "-o", str(work / "out-spleeter"), str(song)],
            "stemtf separate (teacher)": [sys.executable, "-m", "stemtf.cli", "separate", str(song), "-m", str(teacher), "-o",
                                          str(work / "out-teacher"), "--runtime", runtime, "-q", "--overwrite"],
            "stemtf separate (student)": [sys.executable, "-m", "stemtf.cli", "separate", str(song), "-m", str(student), "-o",
                                          str(work / "out-student"), "--runtime", runtime, "-q", "--overwrite"],
        }
        envs = {name: {**env, "MODEL_PATH": str(spleeter_models)} if name.startswith("spleeter") else env for name in commands}
        for name, command in commands.items():  # warm-up, not counted: LiteRT conversion, file caches
            run_process(command, env=envs[name])
        results: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():
                results[name].append(run_process(command, env=envs[name]))
    load_after = os.getloadavg()
    middle = medians(results)
    base = middle["spleeter separate"]
    for values in middle.values():
        values["speed_vs_spleeter"] = base["wall_s"] / values["wall_s"]
        values["memory_vs_spleeter"] = values["peak_rss_mb"] / base["peak_rss_mb"]
    return {
        "seconds": seconds, "repeats": repeats, "runtime": runtime, "cores": os.cpu_count(),
        "load_before": load_before, "load_after": load_after,
        "under_load": max(load_before[0], load_after[0]) > (os.cpu_count() or 1),
        "commands": {name: "MODEL_PATH=" + str(spleeter_models) + " " + shlex.join(c) if name.startswith("spleeter") else shlex.join(c)
                     for name, c in commands.items()},
        "runs": results, "medians": middle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", help="the imported Spleeter model (a model directory or name)")
    parser.add_argument("student", help="its distilled student (a model directory or name)")
    parser.add_argument("--offset", type=float, default=60.0, help="start of the held-out excerpt of Caesium (s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the held-out excerpt (s)")
    parser.add_argument("--shift", type=int, default=12345, help="samples of silence before the excerpt for the shifted teacher")
    parser.add_argument("--quality-runtime", default="keras", help="Separator runtime of the quality part")
    parser.add_argument("--cost-seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runtime", default="litert", help="stemtf separate's runtime in the cost part")
    parser.add_argument("--spleeter", type=pathlib.Path, default=SPLEETER, help="the spleeter command (Spleeter 2.4.2's venv)")
    parser.add_argument("--spleeter-models", type=pathlib.Path, default=SPLEETER_MODELS,
                        help="MODEL_PATH for spleeter: a folder holding RELEASE/ (the checkpoint the teacher was imported from)")
    parser.add_argument("--release", default="4stems")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()

    if args.shift < 0 or args.seconds <= 0 or args.offset < 0 or args.repeats < 1:
        raise SystemExit("--shift and --offset must be >= 0, --seconds > 0, --repeats >= 1.")
    report: dict = {"teacher": str(args.teacher), "student": str(args.student)}
    if not args.skip_quality:
        report["quality"] = quality(args.teacher, args.student, offset=args.offset, seconds=args.seconds, runtime=args.quality_runtime,
                                    shift=args.shift)
        q = report["quality"]
        print(f"{q['excerpt']} (held out), dB; Separator runtime {q['runtime']}")
        print(f"| stem | student vs teacher (SDR) | uniform masks vs teacher | teacher {q['shift']} samples later vs teacher | "
              "teacher cSDR | student cSDR | mixture cSDR | uniform cSDR |")
        print("|---|---|---|---|---|---|---|---|")
        for stem, row in [*q["stems"].items(), ("mean", q["mean"])]:
            print(f"| {stem} | " + " | ".join(f"{row[c]:.2f}" for c in COLUMNS) + " |")
        print(f"student - teacher cSDR (mean): {q['mean']['student_csdr'] - q['mean']['teacher_csdr']:+.2f} dB; the student's stems "
              f"are {q['mean']['student_vs_teacher_sdr'] - q['mean']['uniform_vs_teacher_sdr']:+.2f} dB closer to the teacher's than "
              "uniform masks' (mean; 10 log10 |teacher - uniform|^2 / |teacher - student|^2)")
    if not args.skip_cost:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        report["cost"] = c = cost(str(args.teacher), str(args.student), seconds=args.cost_seconds, repeats=args.repeats,
                                  runtime=args.runtime, spleeter=args.spleeter, spleeter_models=args.spleeter_models,
                                  release=args.release)
        state = "UNDER LOAD (ratios only)" if c["under_load"] else "quiet"
        print(f"\n{c['seconds']:.0f} s of real music, whole processes, median of {c['repeats']}; load average "
              f"{c['load_before'][0]:.1f} -> {c['load_after'][0]:.1f} on {c['cores']} cores: {state}")
        print("| command | whole process (s) | peak RSS (GB) | speed vs Spleeter | memory vs Spleeter |")
        print("|---|---|---|---|---|")
        for name, m in c["medians"].items():
            print(f"| {name} | {m['wall_s']:.1f} | {m['peak_rss_mb'] / 1024:.2f} | {m['speed_vs_spleeter']:.2f}x | "
                  f"{m['memory_vs_spleeter']:.2f} |")
        for name, command in c["commands"].items():
            print(f"  {name}: {command}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
