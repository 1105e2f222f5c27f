"""training/learning_curves.py: validation quality against training time, on tiny made-up run records."""

from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

import learning_curves  # noqa: E402


def _quality(aggregate: float, caesium: float) -> dict:
    mean = lambda model: {"model": model, "mixture": -6.0, "uniform": 0.5}  # noqa: E731
    return {"aggregate": mean(aggregate),
            "sources": {"everything-is-free": {"mean": mean(caesium)}, "synth-test": {"mean": mean(round(2 * aggregate - caesium, 6))}}}


def _run(root: pathlib.Path, name: str, segments: list[tuple[int, float]], scores: dict[int, tuple[float, float]]) -> pathlib.Path:
    run = root / "runs" / name
    run.mkdir(parents=True)
    run.joinpath("runs.jsonl").write_text("".join(json.dumps({"step": s, "seconds_this_run": t}) + "\n" for s, t in segments))
    quality = root / "quality"
    quality.mkdir(exist_ok=True)
    for step, (aggregate, caesium) in scores.items():
        (quality / f"{name}-at{step}.json").write_text(json.dumps(_quality(aggregate, caesium)))
    return run


def test_points_carry_cumulative_training_time_and_scores(tmp_path):
    run = _run(tmp_path, "half", [(300, 600.0), (600, 630.0), (900, 570.0)], {300: (0.9, 0.1), 900: (1.8, 1.2), 600: (1.4, 0.8)})
    _run(tmp_path, "half-b", [(300, 10.0)], {300: (9.0, 9.0)})  # a run whose name extends this one's: not mixed in
    points = learning_curves.curve(run, tmp_path / "quality")
    assert [p["step"] for p in points] == [300, 600, 900]
    assert [p["seconds"] for p in points] == [600.0, 1230.0, 1800.0]
    assert [p["aggregate"] for p in points] == [0.9, 1.4, 1.8]
    assert points[2]["sources"] == {"everything-is-free": 1.2, "synth-test": 2.4}
    rows = learning_curves.table({"half": points}).splitlines()
    assert rows[4] == "| half | 900 | 30 | 1.20 |  | 2.40 |  | **1.80** |"


def test_main_writes_the_table_and_the_plot(tmp_path, capsys):
    half = _run(tmp_path, "half", [(300, 600.0)], {300: (0.9, 0.1)})
    full = _run(tmp_path, "full", [(300, 900.0)], {300: (1.1, 0.3)})
    reference = tmp_path / "shipped.json"
    reference.write_text(json.dumps(_quality(2.66, 1.59)))
    png = tmp_path / "curves.png"
    assert learning_curves.main([str(half), str(full), "--quality-dir", str(tmp_path / "quality"),
                                 "--reference", str(reference), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| half | 300 | 10 |" in out and "| full | 300 | 15 |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_scored_snapshot_is_a_one_line_error(tmp_path, capsys):
    run = _run(tmp_path, "empty", [], {})
    assert learning_curves.main([str(run), "--quality-dir", str(tmp_path / "quality")]) == 1
    assert capsys.readouterr().err.strip() == f"error: no scored snapshots of empty in {tmp_path / 'quality'}"
