"""Cost of stemtf's shared trunk with one mask head per stem against one U-Net per stem (Spleeter).

Prints parameters and the median time of one 512-frame (11.8 s) spectrogram chunk through each
layout on this machine, and the ratio. Random weights: the cost does not depend on their values.

With ``--train``, instead: the cost of one training step (forward and backward, Adam, a batch of 4
x 256 frames) for trunks of several widths and depths, against Spleeter's size measured in the same
run, with the data pipeline's own cost per batch for scale (``benchmarks/data_pipeline.py``): how
many more steps per CPU-hour a slimmer trunk buys.

With ``--litert``, instead: one chunk of a model's masks network on LiteRT (float32, XNNPACK, every
core) in the form it is trained (strided transposed convolutions, one head per stem) against the
inference form the TFLite exports and ``stemtf separate`` use (``stemtf.export.inference``: sub-pixel
convolutions, one merged head), both converted in this run from the same weights; the masks of the two
are compared too.

With ``--students``, instead: the masks network of a teacher (``--model``) against student
geometries (``--geometry FILTERS/hHEAD/kKERNEL``, repeatable; default: a set of candidates), all with
random weights, on Keras and LiteRT (the inference form ``stemtf separate`` uses, ``--threads``), as
ms per second of audio and the teacher/student ratio, with each network's multiply-adds (full
resolution = the last decoder level and the heads, the part a narrower trunk does not shrink).
Interleaved repeats, so load changes hit every row alike; the ratios are the figure to read (under
load, ``--statistic min``).

Usage: python benchmarks/model_cost.py [--stems 4] [--repeats 5] [--train | --litert [--model 4stems] |
       --students [--model 4stems] [--geometry 8,16,32,64,128,256/h4/k5 ...] [--threads 2]]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from stemtf.config import ModelConfig, UNetConfig  # noqa: E402
from stemtf.model import build_model  # noqa: E402
from stemtf.unet import build_unet  # noqa: E402


def median_seconds(function, argument, repeats: int) -> float:
    function(argument)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(np.asarray, function(argument))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def masks_forms(directory, threads: int) -> tuple:
    """A saved model's masks network in the three forms the cost figures compare, each warmed up.

    Returns ``(model, config, calls, chunk, audio_seconds)``: ``calls`` are the Keras model as
    ``separate --runtime keras`` runs it (a dilated head per stem), its inference form on Keras (one
    merged head, sub-pixel convolutions: what the exports run) and that form on LiteRT (``threads``;
    converted once, cached), to be timed on ``chunk``, one ``segment_frames`` chunk of magnitudes.
    """
    from stemtf import Separator
    from stemtf.export.inference import inference_model
    from stemtf.model import load_model

    model, config = load_model(directory)
    chunk = np.abs(np.random.default_rng(0).normal(size=(1, config.segment_frames, config.max_bins, config.num_channels))).astype(np.float32)
    merged = inference_model(model, config)
    calls = (tf.function(lambda x, m=model: m(x, training=False)), tf.function(lambda x, m=merged: m(x, training=False)),
             Separator.from_pretrained(directory, runtime="litert", num_threads=threads).masks)
    for call in calls:
        call(chunk)  # trace, convert, warm up
    return model, config, calls, chunk, config.segment_frames * config.hop_length / config.sample_rate


def time_in_turn(rows: list[dict], repeats: int) -> None:
    """Append to each row's ``times`` (a list per call) the seconds of its ``calls`` on its ``chunk``.

    Every row is timed in turn within each repeat, so that a change of load or clock, or another
    runtime's threads still spinning, hits all of them alike: timed one model after the other, two
    trained 4stems students measured 2.7x and 2.2x cheaper than their teacher on LiteRT, and timed
    in turn, on the same quiet machine, 3.2-3.3x and 2.8x.
    """
    for _ in range(repeats):
        for row in rows:
            for call, times in zip(row["calls"], row["times"]):
                start = time.perf_counter()
                tf.nest.map_structure(np.asarray, call(row["chunk"]))
                times.append(time.perf_counter() - start)


GEOMETRIES = {
    "Spleeter size (16..512, 6 levels)": (16, 32, 64, 128, 256, 512),
    "3/4 width (12..384, 6 levels)": (12, 24, 48, 96, 192, 384),
    "half width (8..256, 6 levels)": (8, 16, 32, 64, 128, 256),
    "3/4 width, 5 levels (12..192)": (12, 24, 48, 96, 192),
}


def train_step_costs(stems: tuple[str, ...], repeats: int) -> None:
    """Median seconds of one training step per geometry, and the ratio to Spleeter's size."""
    import keras

    from stemtf.train import stem_losses, training_model

    rng = np.random.default_rng(0)
    inputs = rng.uniform(0, 1, (4, 256, 1024, 2)).astype(np.float32)
    targets = {stem: rng.uniform(0, 1, inputs.shape).astype(np.float32) for stem in stems}
    rows = []
    for name, filters in GEOMETRIES.items():
        model = build_model(ModelConfig(stems=stems, unet=UNetConfig(filters=filters)))
        trainer = training_model(model, stems)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-4), loss=stem_losses(stems))
        seconds = median_seconds(lambda batch, t=trainer: tf.constant(t.train_on_batch(*batch)), (inputs, targets), repeats)
        rows.append((name, model.count_params(), seconds))
    baseline = rows[0][2]
    print(f"{'trunk':40s} {'params':>9s} {'s/step':>7s} {'examples/s':>11s} {'steps/h vs Spleeter size':>25s}")
    for name, params, seconds in rows:
        print(f"{name:40s} {params / 1e6:8.2f}M {seconds:7.2f} {4 / seconds:11.2f} {baseline / seconds:24.2f}x")


def litert_forms(model_name: str, frames: int, repeats: int) -> None:
    """Median seconds of one chunk on LiteRT: the training form vs the inference form of the same weights."""
    import pathlib
    import tempfile

    import keras
    from ai_edge_litert.interpreter import Interpreter

    from stemtf.export.graphs import masks_function
    from stemtf.export.inference import inference_model
    from stemtf.model import load_model

    model, config = load_model(model_name)
    magnitude = np.random.default_rng(0).uniform(0, 1, (1, frames, config.max_bins, config.num_channels)).astype(np.float32)
    results = {}
    with tempfile.TemporaryDirectory(prefix="stemtf-bench-") as work:
        for form, network in (("as trained (transposed convolutions, a head per stem)", model),
                              ("inference form (sub-pixel convolutions, one head)", inference_model(model, config))):
            archive = keras.export.ExportArchive()
            archive.track(network)
            archive.add_endpoint("serving_default", masks_function(network, config, segment_frames=frames))
            saved = pathlib.Path(work) / f"form{len(results)}"
            archive.write_out(str(saved), verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            interpreter = Interpreter(model_content=converter.convert(), num_threads=os.cpu_count())
            interpreter.allocate_tensors()
            runner = interpreter.get_signature_runner("serving_default")
            run = lambda x, r=runner: r(magnitude=x)
            seconds = median_seconds(run, magnitude, repeats)
            results[form] = (seconds, run(magnitude))
    (base_name, (base, base_masks)), (_, (fast, fast_masks)) = results.items()
    worst = max(float(np.max(np.abs(base_masks[stem] - fast_masks[stem]))) for stem in config.stems)
    print(f"{model_name}: one chunk of {frames} frames, LiteRT float32, {os.cpu_count()} threads, median of {repeats}")
    print(f"{'form':55s} {'s/chunk':>8s} {'vs as trained':>14s}")
    for form, (seconds, _) in results.items():
        print(f"{form:55s} {seconds:8.3f} {seconds / base:13.2f}x")
    print(f"largest difference between the two forms' masks: {worst:.1e}")


STUDENT_GEOMETRIES = (
    "8,16,32,64,128,256/h8/k5",  # the first 4stems-lite: half width
    "8,16,32,64,128,256/h4/k5",
    "8,16,32,64,128,256/h2/k5",
    "4,16,32,64,128,256/h4/k5",
    "8,16,32,64,128,256/h4/k3",
    "6,12,24,48,96,192/h4/k5",
)


def parse_geometry(text: str) -> tuple[tuple[int, ...], int, int]:
    """``8,16,32/h4/k5`` -> ((8, 16, 32), head_filters 4, kernel 5); ``h`` and ``k`` may be left out (8, 5)."""
    filters, *rest = text.split("/")
    head, kernel = 8, 5
    for part in rest:
        if part[:1] == "h":
            head = int(part[1:])
        elif part[:1] == "k":
            kernel = int(part[1:])
        else:
            raise SystemExit(f"--geometry {text!r}: expected FILTERS[/hHEAD][/kKERNEL], e.g. 8,16,32,64,128,256/h4/k5")
    return tuple(int(f) for f in filters.split(",")), head, kernel


def multiply_adds(config: ModelConfig, frames: int) -> tuple[float, float]:
    """Multiply-adds of one chunk through the masks network, and the share at full resolution (last decoder level + heads)."""
    unet, k = config.unet, config.unet.kernel_size
    positions = frames * config.max_bins  # input positions
    total, inputs = 0.0, config.num_channels
    for level, count in enumerate(unet.filters):  # strided convolutions: output positions x k^2 x in x out
        total += positions / 4 ** (level + 1) * k * k * inputs * count
        inputs = count
    decoder = list(unet.filters[:-1])[::-1] + [unet.head_filters]
    skips = list(unet.filters[:-1])[::-1] + [0]
    depth = len(unet.filters)
    full = 0.0
    for level, count in enumerate(decoder):  # transposed: input positions x k^2 x in x out
        cost = positions / 4 ** (depth - level) * k * k * inputs * count
        total += cost
        if level == depth - 1:
            full += cost
        inputs = count + skips[level]
    heads = positions * 16 * unet.head_filters * config.num_channels * len(config.stems)  # 4x4 (dilated) heads
    return total + heads, full + heads


def student_costs(teacher: str, geometries: list[str], repeats: int, threads: int, statistic: str = "median") -> None:
    """Keras and LiteRT ms per audio second of a teacher's masks network and of student geometries, random weights."""
    import pathlib
    import tempfile

    from stemtf.config import load_model_config
    from stemtf.model import save_model
    from stemtf.train.distill import student_config

    teacher_config, _ = load_model_config(teacher)
    with tempfile.TemporaryDirectory(prefix="stemtf-students-") as work:
        os.environ["STEMTF_CACHE"] = str(pathlib.Path(work) / "cache")  # conversions of random models: not the user's cache
        rows = []
        configs = [("teacher " + teacher_config.name, teacher_config)]
        for text in geometries:
            filters, head, kernel = parse_geometry(text)
            config = student_config(teacher_config, filters=filters)
            configs.append((text, config.replace(unet=dataclasses.replace(config.unet, head_filters=head, kernel_size=kernel))))
        for index, (label, config) in enumerate(configs):
            directory = save_model(build_model(config), config, pathlib.Path(work) / f"model{index}")
            keras_model, _, calls, chunk, audio_s = masks_forms(directory, threads)
            macs, full = multiply_adds(config, config.segment_frames)
            rows.append({"label": label, "params": keras_model.count_params(), "macs": macs, "full": full,
                         "calls": calls, "chunk": chunk, "times": ([], [], []), "audio_s": audio_s})
        time_in_turn(rows, repeats)
    pick = statistics.median if statistic == "median" else min
    for row in rows:
        row["keras"], row["merged"], row["litert"] = (1000 * pick(t) / row["audio_s"] for t in row["times"])
    base = rows[0]
    print(f"masks network, one {configs[0][1].segment_frames}-frame chunk, random weights, {statistic} of {repeats}, "
          f"LiteRT float32 {threads} threads; ms per second of audio")
    print(f"{'geometry (filters/head/kernel)':34s} {'params':>8s} {'GMAC':>6s} {'full-res':>8s} {'Keras':>7s} {'K-inf':>7s} "
          f"{'LiteRT':>7s} {'Keras x':>8s} {'K-inf x':>8s} {'LiteRT x':>9s}")
    for row in rows:
        print(f"{row['label']:34s} {row['params'] / 1e6:7.2f}M {row['macs'] / 1e9:6.2f} {100 * row['full'] / row['macs']:7.0f}% "
              f"{row['keras']:7.2f} {row['merged']:7.2f} {row['litert']:7.2f} {base['keras'] / row['keras']:7.2f}x "
              f"{base['merged'] / row['merged']:7.2f}x {base['litert'] / row['litert']:8.2f}x")
    print("Keras: the model as `stemtf separate --runtime keras` runs it (a head per stem); K-inf: the inference form "
          "(one merged head, sub-pixel convolutions) on Keras; LiteRT: the inference form on LiteRT.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stems", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="training step cost per trunk geometry")
    parser.add_argument("--litert", action="store_true", help="LiteRT chunk cost: training form vs inference form")
    parser.add_argument("--model", default="4stems", help="model for --litert (name or directory; default 4stems)")
    parser.add_argument("--frames", type=int, default=512, help="chunk length in frames for --litert (default 512)")
    parser.add_argument("--students", action="store_true", help="teacher (--model) against student geometries")
    parser.add_argument("--geometry", action="append", help="a student for --students: FILTERS[/hHEAD][/kKERNEL] (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads for --students (default 2: the phone figure)")
    parser.add_argument("--statistic", choices=("median", "min"), default="median",
                        help="--students: median (a quiet machine) or min (the least disturbed run, under load)")
    args = parser.parse_args()
    if args.students:
        student_costs(args.model, args.geometry or list(STUDENT_GEOMETRIES), args.repeats, args.threads, args.statistic)
        return
    stems = tuple(f"stem{i}" for i in range(args.stems))
    if args.litert:
        litert_forms(args.model, args.frames, args.repeats)
        return
    if args.train:
        train_step_costs(stems, args.repeats)
        return
    magnitude = tf.constant(np.random.default_rng(0).uniform(0, 1, (1, 512, 1024, 2)).astype(np.float32))
    rows = []
    for head_filters in (1, 8, 16):
        model = build_model(ModelConfig(stems=stems, unet=UNetConfig(head_filters=head_filters)))
        seconds = median_seconds(tf.function(lambda x, m=model: m(x, training=False)), magnitude, args.repeats)
        rows.append((f"shared trunk + {args.stems} heads (head_filters={head_filters})", model.count_params(), seconds))
    # Spleeter: one full U-Net (ending in a 2-channel sigmoid mask) per stem.
    unets = [build_unet(num_bins=1024, num_channels=2, output_filters=2, name=f"unet_{i}") for i in range(args.stems)]
    seconds = median_seconds(tf.function(lambda x: [u(x, training=False) for u in unets]), magnitude, args.repeats)
    rows.append((f"one U-Net per stem (x{args.stems}, Spleeter)", sum(u.count_params() for u in unets), seconds))
    baseline = rows[-1][2]
    print(f"{'layout':50s} {'params':>10s} {'s/chunk':>8s} {'vs per-stem':>12s}")
    for name, params, seconds in rows:
        print(f"{name:50s} {params / 1e6:9.2f}M {seconds:8.3f} {seconds / baseline:11.2f}x")


if __name__ == "__main__":
    main()
