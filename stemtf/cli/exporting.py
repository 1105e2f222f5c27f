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
    fmt: str = typer.Option(options.DEFAULT_EXPORT_FORMAT, "--format", "-f", help="savedmodel (TF Serving), tflite (phones), onnx, or web (a static page that separates in the browser)."),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help=f"Output folder (default: {options.DEFAULT_EXPORT_DIR}/MODEL_NAME, web: {options.DEFAULT_EXPORT_DIR}/MODEL_NAME-web).", show_default=False),
    output: Optional[pathlib.Path] = typer.Option(None, "--output", hidden=True),  # the old spelling of --output-dir
    quantize: Optional[str] = typer.Option(None, "--quantize", help="TFLite weights: none (float32, the default), float16 or int8 (dynamic range); web: float16 by default (half the download, 55-66 dB from float32).", show_default=False),
    chunk_seconds: Optional[float] = typer.Option(None, "--chunk-seconds", help="Chunk length of the exported models in seconds (default: the model's, ~11.8 s).", show_default=False),
    latency: Optional[float] = typer.Option(None, "--latency", help="Seconds (e.g. 0.65), tflite only: also write NAME_sliding.tflite, the masks model of a stream's sliding window within this latency, its plan in the .json.", show_default=False),
    max_duration: Optional[float] = typer.Option(None, "--max-duration", help=f"Web only: the longest song the page accepts, in seconds (default {options.DEFAULT_WEB_MAX_DURATION:g}: the memory of a phone or laptop tab).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing exported files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Export a model: a SavedModel for TF Serving, TFLite chunk + masks models, ONNX (each with a .json), or a web page."""
    from stemtf.config import load_model_config
    from stemtf.export.artifacts import FORMATS

    if fmt not in (*FORMATS, "web"):  # the list names web too (check_options knows the artifact formats only)
        raise options.OptionError("fmt", f"{{option}} {fmt!r} is not supported ({{option}} must be one of {', '.join((*FORMATS, 'web'))}).")
    if fmt == "web":
        _export_web(model, output_dir or output, quantize=quantize or options.DEFAULT_WEB_QUANTIZE, chunk_seconds=chunk_seconds, latency=latency,
                    max_duration=max_duration, overwrite=overwrite, quiet=quiet)
        return
    if max_duration is not None:
        raise options.OptionError("max_duration", "{option} applies to the web format only.")
    quantize = quantize or options.DEFAULT_QUANTIZE
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


def _export_web(model: str, output_dir: Optional[pathlib.Path], *, quantize: str, chunk_seconds: Optional[float],
                latency: Optional[float], max_duration: Optional[float], overwrite: bool, quiet: bool) -> None:
    """``stemtf export MODEL --format web``: the static folder of :func:`stemtf.export.web.export_web`."""
    from stemtf.config import load_model_config
    from stemtf.errors import OptionError
    from stemtf.export.web import export_web  # not `from stemtf.export import web`: that loads TensorFlow (the package's __getattr__)

    if chunk_seconds is not None:
        raise OptionError("chunk_seconds", "{option} does not apply to the web format (the page runs the model's own chunks).")
    if latency is not None:
        raise OptionError("latency", "{option} applies to the tflite format only.")
    config, directory = load_model_config(model)  # unknown model: fail before anything else
    output_dir = output_dir or pathlib.Path(options.DEFAULT_EXPORT_DIR) / f"{_export_name(config.name, directory)}-web"
    status = None if quiet else (lambda text: typer.echo(text, err=True))
    folder = export_web(model, output_dir, quantize=quantize, overwrite=overwrite, on_status=status,
                            **({} if max_duration is None else {"max_duration": max_duration}))
    if not quiet:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        typer.echo(f"{folder}/ ({size / 1e6:.1f} MB): serve it with any static file server, e.g. "
                   f"python -m http.server -d {folder} 8000, and open http://127.0.0.1:8000/")
        typer.echo(f"Exported model {config.name!r} as web" + (f" ({quantize})." if quantize != "none" else "."))
