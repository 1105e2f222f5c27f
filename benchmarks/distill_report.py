"""A distilled student against its teacher: network cost and how closely it reproduces the teacher.

    .venv/bin/python benchmarks/distill_report.py 4stems data-work/runs/4stems-lite [--seconds 60] [--json out.json]

In one run, on this machine:

* **cost**: parameters, and the median time of one chunk (``segment_frames`` frames; the two models
  timed in turn within each of ``--repeats``) through each model's masks network on TensorFlow
  (Keras, oneDNN: the model as ``separate --runtime keras`` runs it, a dilated head per stem, and
  the inference form: one merged head, sub-pixel convolutions) and on
  LiteRT (float32, XNNPACK, ``--threads``, the inference form ``stemtf separate`` uses), as
  milliseconds per second of audio, and the ratio;
* **fidelity**: both models separate the same held-out real music (the mixture of Caesium's stems,
  ``--offset`` / ``--seconds``; Caesium is held out of every recipe) with ``Separator``; per stem the
  SDR of the student's stem against the teacher's (how well it imitates), and the cSDR of each
  against the real stem, with the unprocessed mixture and uniform masks beside them.

* **more held-out music** (``--held-out PATH``, repeatable: an audio file, or a folder whose audio files
  are summed, e.g. a Frets on Fire song's ``song.ogg`` + ``guitar.ogg``): music no recipe trained on,
  with no stems needed; per recording and pooled over all of them (the recordings' excerpts joined),
  the SDR of the student's stems against the teacher's, and each teacher stem's level against the
  mixture (a stem far below the mixture is where imitation is hardest to score). The recipe's
  choice: the four songs of Debian's ``fretsonfire-songs-muldjord`` (by Muldjord, CC BY-SA 3.0; used
  only to measure, never to train)::

      --held-out /usr/share/games/fretsonfire/data/songs/muldjord/*/

``--no-cost`` skips the cost part (a quick look at a checkpoint while another run trains).

The validation aggregate of ``benchmarks/quality.py`` is the other half of the issue's quality target;
run it on both models.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
CAESIUM = ROOT.parent / "shared" / "data" / "everything-is-free" / "Caesium"


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB over the whole excerpt (the MDX challenge's global SDR)."""
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    noise = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return 10 * np.log10((signal + 1e-10) / (noise + 1e-10))


def real_stems(stems: tuple[str, ...], offset: float, seconds: float, *,
               folder: pathlib.Path = CAESIUM) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """A song's mixture and its stems in the model's stems (piano and anything unnamed go to ``other``), an excerpt.

    ``folder``: one ``.ogg`` per stem, their sum the mixture (default Caesium, held out of every recipe).
    """
    files = {path.stem: path for path in sorted(folder.glob("*.ogg"))}
    if not files:
        raise SystemExit(f"No stems in {folder}.")
    info = sf.info(str(next(iter(files.values()))))
    start, frames = int(offset * info.samplerate), int(seconds * info.samplerate)
    audio = {name: sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)[0] for name, path in files.items()}
    rest = "other" if "other" in stems else stems[-1]
    truth = {stem: np.zeros_like(next(iter(audio.values()))) for stem in stems}
    for name, waveform in audio.items():
        truth[name if name in stems else rest] += waveform
    return sum(audio.values()), truth, info.samplerate


COST_KEYS = ("keras_ms_per_s", "keras_inference_form_ms_per_s", "litert_ms_per_s")


def masks_costs(models: dict[str, str], repeats: int, threads: int) -> dict[str, dict[str, float]]:
    """Per model: parameters and ms per second of audio of one chunk through the masks network, Keras and LiteRT.

    The models are timed in turn within each repeat (``model_cost.time_in_turn``: a change of load
    hits all of them alike).
    """
    import statistics

    from model_cost import masks_forms, time_in_turn  # benchmarks/: one timing loop for every network-cost figure

    rows = {}
    for role, model_dir in models.items():
        model, _, calls, chunk, seconds = masks_forms(model_dir, threads)
        rows[role] = {"calls": calls, "chunk": chunk, "times": ([], [], []), "parameters": float(model.count_params()),
                      "seconds": seconds}
    time_in_turn(list(rows.values()), repeats)
    return {role: {"parameters": row["parameters"], **{key: 1000 * statistics.median(times) / row["seconds"]
                                                        for key, times in zip(COST_KEYS, row["times"])}}
            for role, row in rows.items()}


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def held_out_mixture(path: pathlib.Path, offset: float, seconds: float) -> tuple[np.ndarray, int]:
    """``seconds`` from ``offset`` of a recording (a file, or a folder's audio files summed), stereo float32.

    A recording shorter than ``offset + seconds`` gives its last ``seconds``.
    """
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"No audio files in {path}.")
    infos = [sf.info(str(f)) for f in files]
    rate, length = infos[0].samplerate, min(i.frames for i in infos)
    frames = min(int(seconds * rate), length)
    start = max(0, min(int(offset * rate), length - frames))
    total = np.zeros((frames, 2), np.float32)
    for f in files:
        data = sf.read(str(f), start=start, frames=frames, dtype="float32", always_2d=True)[0]
        total += data if data.shape[1] == 2 else np.repeat(data, 2, axis=1)
    return total, rate


def held_out_fidelity(separators: dict, sources: list[pathlib.Path], offset: float, seconds: float) -> dict:
    """Student-vs-teacher SDR per stem on music without stems: per recording, and pooled over all of them."""
    stems = separators["teacher"].config.stems
    songs, pooled = {}, {role: {stem: [] for stem in stems} for role in separators}
    for source in sources:
        mixture, rate = held_out_mixture(source, offset, seconds)
        estimates = {role: separator.separate(mixture, rate) for role, separator in separators.items()}
        energy = float(np.sum(mixture.astype(np.float64) ** 2)) + 1e-10
        songs[source.name or str(source)] = {stem: {
            "student_vs_teacher_sdr": sdr(estimates["teacher"][stem], estimates["student"][stem]),
            "teacher_level_db": 10 * np.log10(float(np.sum(estimates["teacher"][stem].astype(np.float64) ** 2)) / energy + 1e-10),
        } for stem in stems}
        for role in separators:
            for stem in stems:
                pooled[role][stem].append(estimates[role][stem])
    together = {stem: sdr(np.concatenate(pooled["teacher"][stem]), np.concatenate(pooled["student"][stem])) for stem in stems}
    return {"offset": offset, "seconds": seconds, "recordings": songs, "pooled_student_vs_teacher_sdr": together}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher")
    parser.add_argument("student")
    parser.add_argument("--offset", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtime", default="keras", help="Separator runtime of the fidelity part")
    parser.add_argument("--held-out", type=pathlib.Path, action="append", default=[],
                        help="more held-out music without stems: a file, or a folder whose audio files are summed (repeatable)")
    parser.add_argument("--no-cost", action="store_true", help="skip the network cost")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()

    from stemtf import Separator

    report: dict = {"cost": {}, "fidelity": {}}
    if not args.no_cost:
        report["cost"] = masks_costs({"teacher": args.teacher, "student": args.student}, args.repeats, args.threads)
    separators = {role: Separator.from_pretrained(model, runtime=args.runtime) for role, model in
                  (("teacher", args.teacher), ("student", args.student))}
    stems = separators["teacher"].config.stems
    if separators["student"].config.stems != stems:
        raise SystemExit(f"The student's stems {separators['student'].config.stems} are not the teacher's {stems}.")
    mixture, truth, rate = real_stems(stems, args.offset, args.seconds)
    estimates = {role: separator.separate(mixture, rate) for role, separator in separators.items()}
    for stem in stems:
        if np.sum(truth[stem] ** 2) < 1e-6:
            continue  # a silent reference: nothing to score against
        report["fidelity"][stem] = {
            "student_vs_teacher_sdr": sdr(estimates["teacher"][stem], estimates["student"][stem]),
            "teacher_csdr": sdr(truth[stem], estimates["teacher"][stem]),
            "student_csdr": sdr(truth[stem], estimates["student"][stem]),
            "mixture_csdr": sdr(truth[stem], mixture),
            "uniform_csdr": sdr(truth[stem], mixture / len(stems)),
        }

    if args.held_out:
        report["held_out"] = held_out_fidelity(separators, args.held_out, args.offset, args.seconds)
    print_report(report, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def print_report(report: dict, args) -> None:
    """The report as tables on stdout."""
    cost = report["cost"]
    if not cost:
        print("(network cost skipped: --no-cost)")
    else:
        print_cost(cost)
    print(f"\nCaesium {args.offset:.0f}-{args.offset + args.seconds:.0f} s (held out), dB")
    print(f"{'stem':<14} {'student vs teacher':>19} {'teacher':>8} {'student':>8} {'mixture':>8} {'uniform':>8}")
    for stem, row in report["fidelity"].items():
        print(f"{stem:<14} {row['student_vs_teacher_sdr']:>19.2f} {row['teacher_csdr']:>8.2f} {row['student_csdr']:>8.2f} "
              f"{row['mixture_csdr']:>8.2f} {row['uniform_csdr']:>8.2f}")
    held = report.get("held_out")
    if held:
        stems = list(held["pooled_student_vs_teacher_sdr"])
        print(f"\nMore held-out music, {held['seconds']:.0f} s each: student vs teacher SDR, dB (teacher stem level vs mixture, dB)")
        print(f"{'recording':<24}" + "".join(f"{stem:>18}" for stem in stems))
        for song, rows in held["recordings"].items():
            print(f"{song[:24]:<24}" + "".join(f"{rows[s]['student_vs_teacher_sdr']:>9.2f} ({rows[s]['teacher_level_db']:>5.1f})" for s in stems))
        print(f"{'pooled':<24}" + "".join(f"{held['pooled_student_vs_teacher_sdr'][s]:>18.2f}" for s in stems))


def print_cost(cost: dict) -> None:
    """The network-cost table."""
    print(f"{'model':<10} {'parameters':>12} {'Keras ms/s':>11} {'Keras inf. form':>16} {'LiteRT ms/s':>12}")
    for role in ("teacher", "student"):
        c = cost[role]
        print(f"{role:<10} {c['parameters'] / 1e6:>11.2f}M {c['keras_ms_per_s']:>11.2f} {c['keras_inference_form_ms_per_s']:>16.2f} "
              f"{c['litert_ms_per_s']:>12.2f}")
    ratio = {key: cost["teacher"][key] / cost["student"][key] for key in cost["teacher"] if key.endswith("ms_per_s")}
    print(f"teacher / student: Keras {ratio['keras_ms_per_s']:.2f}x, Keras inference form {ratio['keras_inference_form_ms_per_s']:.2f}x, "
          f"LiteRT {ratio['litert_ms_per_s']:.2f}x")


if __name__ == "__main__":
    main()
