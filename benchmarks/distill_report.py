"""A distilled student against its teacher: network cost and how closely it reproduces the teacher.

    .venv/bin/python benchmarks/distill_report.py 4stems data-work/runs/4stems-lite [--seconds 60] [--json out.json]

In one run, on this machine:

* **cost**: parameters, and the median time of one chunk (``segment_frames`` frames) through each
  model's masks network on TensorFlow (Keras, oneDNN: the model as ``separate --runtime keras`` runs
  it, a dilated head per stem, and the inference form: one merged head, sub-pixel convolutions) and on
  LiteRT (float32, XNNPACK, ``--threads``, the inference form ``stemtf separate`` uses), as
  milliseconds per second of audio, and the ratio;
* **fidelity**: both models separate the same held-out real music (the mixture of Caesium's stems,
  ``--offset`` / ``--seconds``; Caesium is held out of every recipe) with ``Separator``; per stem the
  SDR of the student's stem against the teacher's (how well it imitates), and the cSDR of each
  against the real stem, with the unprocessed mixture and uniform masks beside them.

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


def real_stems(stems: tuple[str, ...], offset: float, seconds: float) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Caesium's mixture and its stems in the model's stems (piano and anything unnamed go to ``other``)."""
    files = {path.stem: path for path in sorted(CAESIUM.glob("*.ogg"))}
    info = sf.info(str(next(iter(files.values()))))
    start, frames = int(offset * info.samplerate), int(seconds * info.samplerate)
    audio = {name: sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)[0] for name, path in files.items()}
    rest = "other" if "other" in stems else stems[-1]
    truth = {stem: np.zeros_like(next(iter(audio.values()))) for stem in stems}
    for name, waveform in audio.items():
        truth[name if name in stems else rest] += waveform
    return sum(audio.values()), truth, info.samplerate


def masks_cost(model_dir: str, repeats: int, threads: int) -> dict[str, float]:
    """Parameters and ms per second of audio of one chunk through the masks network, Keras and LiteRT."""
    import tensorflow as tf

    from model_cost import median_seconds  # benchmarks/: one timing loop for every network-cost figure

    from stemtf import Separator
    from stemtf.export.inference import inference_model
    from stemtf.model import load_model

    model, config = load_model(model_dir)
    chunk = np.abs(np.random.default_rng(0).normal(size=(1, config.segment_frames, config.max_bins, config.num_channels))).astype(np.float32)
    seconds = config.segment_frames * config.hop_length / config.sample_rate
    keras_call = tf.function(lambda x: model(x, training=False))
    merged = inference_model(model, config)  # one merged head, sub-pixel convolutions: what the exports run
    merged_call = tf.function(lambda x: merged(x, training=False))

    litert = Separator.from_pretrained(model_dir, runtime="litert", num_threads=threads).masks  # converted once, cached
    return {
        "parameters": float(model.count_params()),
        "keras_ms_per_s": 1000 * median_seconds(keras_call, chunk, repeats) / seconds,
        "keras_inference_form_ms_per_s": 1000 * median_seconds(merged_call, chunk, repeats) / seconds,
        "litert_ms_per_s": 1000 * median_seconds(litert, chunk, repeats) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher")
    parser.add_argument("student")
    parser.add_argument("--offset", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtime", default="keras", help="Separator runtime of the fidelity part")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()

    from stemtf import Separator

    report: dict = {"cost": {}, "fidelity": {}}
    for role, model in (("teacher", args.teacher), ("student", args.student)):
        report["cost"][role] = masks_cost(model, args.repeats, args.threads)
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

    cost = report["cost"]
    print(f"{'model':<10} {'parameters':>12} {'Keras ms/s':>11} {'Keras inf. form':>16} {'LiteRT ms/s':>12}")
    for role in ("teacher", "student"):
        c = cost[role]
        print(f"{role:<10} {c['parameters'] / 1e6:>11.2f}M {c['keras_ms_per_s']:>11.2f} {c['keras_inference_form_ms_per_s']:>16.2f} "
              f"{c['litert_ms_per_s']:>12.2f}")
    ratio = {key: cost["teacher"][key] / cost["student"][key] for key in cost["teacher"] if key.endswith("ms_per_s")}
    print(f"teacher / student: Keras {ratio['keras_ms_per_s']:.2f}x, Keras inference form {ratio['keras_inference_form_ms_per_s']:.2f}x, "
          f"LiteRT {ratio['litert_ms_per_s']:.2f}x")
    print(f"\nCaesium {args.offset:.0f}-{args.offset + args.seconds:.0f} s (held out), dB")
    print(f"{'stem':<14} {'student vs teacher':>19} {'teacher':>8} {'student':>8} {'mixture':>8} {'uniform':>8}")
    for stem, row in report["fidelity"].items():
        print(f"{stem:<14} {row['student_vs_teacher_sdr']:>19.2f} {row['teacher_csdr']:>8.2f} {row['student_csdr']:>8.2f} "
              f"{row['mixture_csdr']:>8.2f} {row['uniform_csdr']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
