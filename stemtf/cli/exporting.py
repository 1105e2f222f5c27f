"""``stemtf export``."""

from __future__ import annotations

import pathlib
from typing import Optional

import typer

from stemtf.cli.app import app, import_tensorflow_quietly
from stemtf import options


def _export_name(name: str, directory: pathlib.Path) -> str:
    """The default export folder's name: the model's, unless a model of that name lives elsewhere.

    A model fine-tuned from ``configs/4stems.json`` is also called ``4stems``; exporting it to
    ``exported/4stems`` would mix it up with the shipped model's export, so it gets
    ``PARENT-FOLDER`` of its directory instead (``runs/4stems`` -> ``exported/runs-4stems``).
    """
    from stemtf.config import available_models

    same_name = available_models().get(name)
    if same_name is None or same_name.resolve() == directory.resolve():
        return name
    return f"{directory.resolve().parent.name}-{directory.resolve().name}"


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="Model name (see `stemtf models`) or model directory.", show_default=False),
    fmt: str = typer.Option("savedmodel", "--format", "-f", help="savedmodel (TF Serving), tflite (phones) or onnx."),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help=f"Output folder (default: {options.DEFAULT_EXPORT_DIR}/MODEL_NAME).", show_default=False),
    output: Optional[pathlib.Path] = typer.Option(None, "--output", hidden=True),  # the old spelling of --output-dir
    quantize: str = typer.Option("none", "--quantize", help="TFLite weights: none (float32), float16 or int8 (dynamic range)."),
    chunk_seconds: Optional[float] = typer.Option(None, "--chunk-seconds", help="Chunk length of the exported models in seconds (default: the model's, ~11.8 s).", show_default=False),
    latency: Optional[float] = typer.Option(None, "--latency", help="Seconds (e.g. 0.65), tflite only: also write NAME_sliding.tflite, the masks model of a stream's sliding window within this latency, its plan in the .json.", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing exported files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Export a model: a SavedModel for TF Serving, TFLite chunk + masks models, or ONNX; each with a .json."""
    from stemtf.config import load_model_config
    from stemtf.export.artifacts import check_options  # no TensorFlow: bad options fail before it loads

    check_options(fmt, quantize, latency=latency)
    options.check_chunk_seconds(chunk_seconds)
    config, directory = load_model_config(model)  # unknown model: fail before the TensorFlow import
    if latency is not None:
        from stemtf import sliding

        sliding.plan_for_latency(latency, config)  # a latency the model cannot meet
    output_dir = output_dir or output or pathlib.Path(options.DEFAULT_EXPORT_DIR) / _export_name(config.name, directory)

    import_tensorflow_quietly()
    from stemtf.export import export

    written = export(model, fmt=fmt, output_dir=output_dir, quantize=quantize, chunk_seconds=chunk_seconds, latency=latency,
                     overwrite=overwrite)
    if not quiet:
        from stemtf.export.artifacts import read_description

        for path in written:
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
            typer.echo(f"{path} ({size / 1e6:.1f} MB) + {path.name}.json")
            meta = read_description(path)
            if meta.window_frames is not None:
                typer.echo(f"  sliding plan: window {meta.window_frames} frames, step {meta.step_frames}, lookahead "
                           f"{meta.lookahead_frames}; latency {meta.latency_samples / meta.sample_rate:.3f} s "
                           f"({meta.latency_samples} samples)")
        typer.echo(f"Exported model {config.name!r} as {fmt}" + (f" ({quantize})." if quantize != "none" else "."))
