"""Exporting a model by name or directory in one format: what ``stemtf export`` runs."""

from __future__ import annotations

import os
import pathlib

from stemtf.errors import OutputError
from stemtf.export.metadata import metadata_path
from stemtf.export.options import KINDS, SAVEDMODEL_VERSION, check_options
from stemtf.export.sizes import segment_frames_for
from stemtf.export.writers import export_onnx, export_savedmodel, export_tflite


def export(
    model_name_or_path: str | os.PathLike,
    *,
    fmt: str,
    output_dir: str | os.PathLike,
    quantize: str = "none",
    chunk_seconds: float | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Export a model by name or directory; what ``stemtf export`` runs.

    Writes into ``output_dir``: ``savedmodel`` -> ``1/`` (a TF Serving model base path);
    ``tflite`` -> ``NAME[_QUANT].tflite`` (waveform chunk) and ``NAME_masks[_QUANT].tflite``;
    ``onnx`` -> ``NAME.onnx`` and ``NAME_masks.onnx``; each with its ``.json``.

    Returns:
        The artifact paths written.
    """
    from stemtf.model import load_model

    check_options(fmt, quantize)
    model, config = load_model(model_name_or_path)
    frames = segment_frames_for(config, chunk_seconds)
    output_dir = pathlib.Path(output_dir)
    if fmt == "savedmodel":
        targets = {"savedmodel": output_dir / SAVEDMODEL_VERSION}
    else:
        suffix = "" if quantize == "none" else f"_{quantize}"
        targets = {kind: output_dir / f"{config.name}{'' if kind == 'waveform' else '_masks'}{suffix}.{fmt}" for kind in KINDS}
    if not overwrite:  # check every target first, so a clash never leaves half an export
        for target in targets.values():
            for path in (target, metadata_path(target)):
                if path.exists():
                    raise OutputError(f"Output {str(path)!r} already exists; pass --overwrite to replace it.")
    written = []
    for kind, target in targets.items():
        if fmt == "savedmodel":
            written.append(export_savedmodel(model, config, target, segment_frames=frames, overwrite=overwrite))
        elif fmt == "tflite":
            written.append(export_tflite(model, config, target, kind=kind, quantize=quantize, segment_frames=frames, overwrite=overwrite))
        else:
            written.append(export_onnx(model, config, target, kind=kind, segment_frames=frames, overwrite=overwrite))
    return written
