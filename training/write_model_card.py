"""Recipe: write saved_models/<preset>/MODEL_CARD.md from a training run and its evaluation tables.

    .venv/bin/python training/write_model_card.py 4stems --run-dir data-work/runs/4stems \
        --eval-dir data-work/eval --history "steps 0-500 on the 3 real songs only, ..." > saved_models/4stems/MODEL_CARD.md

The tables are the text `stemtf evaluate` printed (training/evaluate_presets.sh writes them as
``<set>-<preset>-<baseline>.txt``); everything else comes from the run's ``runs.jsonl`` and config.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from stemtf.config import load_config

SETS = {
    "caesium": "held-out real song: \"Caesium\" (Software-Entwicklungskit, CC0), whole song, 3:56",
    "synth-test": "held-out synthetic songs: 4 songs x 45 s rendered with --seed 2 (never in training)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--eval-dir", required=True)
    parser.add_argument("--history", default="", help="how the run went (interruptions, data changes), one paragraph")
    parser.add_argument("--limitations", default="")
    args = parser.parse_args()
    run_dir, eval_dir = pathlib.Path(args.run_dir), pathlib.Path(args.eval_dir)
    config = load_config(run_dir / "config.json")
    runs = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines() if line.strip()]
    last = runs[-1]
    weights = pathlib.Path("saved_models") / args.preset / "model.weights.h5"
    size = f"{weights.stat().st_size / 1e6:.1f} MB (float16 on disk)" if weights.exists() else "(not shipped)"
    real = sorted(t for t in last["train_tracks"] if not t.startswith("synth"))
    speed = tuple(last["args"].get("speed_range") or (1.0, 1.0))
    augmentation = "per-stem gain, channel swap, remixing" + (
        f", speed (tempo and pitch) x{speed[0]:g}-{speed[1]:g}" if speed != (1.0, 1.0) else "")
    synthetic = [t for t in last["train_tracks"] if t.startswith("synth")]
    out = [
        f"# stemtf `{args.preset}`",
        "",
        f"Stems: {', '.join(config.stems)}. Architecture: stemtf's default (U-Net trunk with filters "
        f"{list(config.unet.filters)}, one sigmoid mask head per stem, ratio masks; network on the lowest "
        f"{config.max_bins} of {config.num_bins} STFT bins, {config.mask_extension} extension above), "
        f"{config.sample_rate} Hz, n_fft {config.n_fft}, hop {config.hop_length}. Weights: {size}.",
        "",
        "## Training data",
        "",
        f"- Real: {', '.join(real)} from `../shared/data/everything-is-free` (CC0), each listed "
        f"{last['args'].get('real_weight', 1)}x among the training tracks so they are drawn that much more often.",
        f"- Synthetic: {len(synthetic)} songs rendered by `training/synth/render.py --seed 1` "
        f"({last['train_minutes']} min of audio in all, real included).",
        f"- Validation (loss and spectrogram SDR during training): {', '.join(last['validation_tracks']) or 'none'}.",
        "- Never seen in training or validation: Caesium and the synthetic test set below.",
        "",
        "## Training",
        "",
        f"- Recipe: `training/train_presets.py {args.preset}` (see training/README.md); "
        f"steps: {last['step']}, batch {last['args']['batch_size']} x {last['args']['num_frames']} frames "
        f"(~6 s), Adam, cosine schedule from {last['args']['learning_rate']:g} with "
        f"{last['args']['warmup_steps']} warm-up steps; augmentation: {augmentation} (last run).",
        f"- Started from: {last['args'].get('from_model') or 'random initialisation'}.",
        "- Hardware: 2-core x86-64 CPU, no GPU, shared with other jobs.",
    ]
    if args.history:
        out.append(f"- History: {args.history}")
    if last.get("last"):
        logs = {k: round(v, 3) for k, v in last["last"].items() if isinstance(v, (int, float))}
        out.append(f"- Last logged metrics: `{json.dumps(logs)}`")
    out += ["", "## Evaluation", "",
            "`stemtf evaluate`: first the SDR of each stem over the whole track (\"track SDR\", the MDX "
            "challenge's global SDR; the median over tracks), the number to read; then museval's BSS-eval v4 "
            "SDR/SIR/ISR/SAR on the 1 s windows in which every stem is audible (louder than -60 dBFS; median "
            "over windows, then tracks). On a window with a near-silent stem BSS-eval's ratios are degenerate, "
            "so those windows are left out and the line under each table says how many were scored (`-`: none). "
            f"Reproduce with `training/evaluate_presets.sh {args.preset} saved_models/{args.preset}`.", ""]
    for name, description in SETS.items():
        tables = [(b, eval_dir / f"{name}-{args.preset}-{b}.txt") for b in ("model", "oracle", "mixture")]
        if not any(path.exists() for _, path in tables):
            continue
        out += [f"### {description}", ""]
        for baseline, path in tables:
            if path.exists():
                out += ["```", path.read_text().strip(), "```", ""]
    if args.limitations:
        out += ["## Limitations", "", args.limitations, ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
