"""Chunk sizes of exported graphs: STFT frames, samples and the default cross-fade."""

from __future__ import annotations

from stemtf import spectral
from stemtf.config import ModelConfig
from stemtf.errors import StemtfError


def segment_frames_for(config: ModelConfig, chunk_seconds: float | None) -> int:
    """STFT frames per chunk for chunks of about ``chunk_seconds`` (None: the config's ``segment_frames``).

    Rounded to a multiple of ``2 ** U-Net depth`` and at least the smallest chunk the model allows.
    """
    if chunk_seconds is None:
        return config.segment_frames
    if not chunk_seconds > 0:
        raise StemtfError(f"--chunk-seconds must be > 0. Received {chunk_seconds:g}.")
    stride = 2 ** len(config.unet.filters)
    minimum = 2 * (config.n_fft // config.hop_length) + stride
    minimum += (-minimum) % stride
    samples = chunk_seconds * config.sample_rate
    frames = (samples + 2 * spectral.front_padding(n_fft=config.n_fft, hop_length=config.hop_length) - config.n_fft) / config.hop_length + 1
    return max(minimum, int(round(frames / stride)) * stride)


def chunk_samples_for(config: ModelConfig, segment_frames: int) -> int:
    """Samples in one chunk of ``segment_frames`` STFT frames."""
    return spectral.segment_samples(segment_frames, n_fft=config.n_fft, hop_length=config.hop_length)


def default_overlap_samples(config: ModelConfig, chunk_samples: int) -> int:
    """The cross-fade :class:`~stemtf.separator.Separator` uses by default: 1 s, at most a quarter chunk."""
    return min(config.sample_rate, chunk_samples // 4)
