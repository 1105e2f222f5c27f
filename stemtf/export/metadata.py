"""The JSON description written next to every artifact (``ARTIFACT.json``)."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from stemtf import __version__
from stemtf.config import ModelConfig
from stemtf.export.sizes import chunk_samples_for, default_overlap_samples


def metadata_path(artifact: str | os.PathLike) -> pathlib.Path:
    """Where the JSON description of ``artifact`` goes: ``ARTIFACT.json`` next to it."""
    artifact = pathlib.Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def _tensor_info(name: str, shape, dtype: str) -> dict[str, Any]:
    return {"name": name, "shape": [None if d is None else int(d) for d in shape], "dtype": dtype}


def _metadata(config: ModelConfig, *, fmt: str, kind: str, segment_frames: int, quantization: str, inputs, outputs, **extra) -> dict:
    length = chunk_samples_for(config, segment_frames)
    return {
        "format": fmt,
        "kind": kind,
        "model": config.name,
        "stems": list(config.stems),
        "sample_rate": config.sample_rate,
        "num_channels": config.num_channels,
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "max_bins": config.max_bins,
        "mask_extension": config.mask_extension,
        "extension_bins": config.extension_bins,
        "segment_frames": segment_frames,
        "chunk_samples": length,
        "overlap_samples": default_overlap_samples(config, length),
        "inputs": inputs,
        "outputs": outputs,
        "quantization": quantization,
        "stemtf_version": __version__,
        **extra,
    }


def _write_json(path: pathlib.Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
