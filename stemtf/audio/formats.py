"""What the audio modules share: output formats, the facts of an input, and the reader protocol."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from stemtf.options import BIT_DEPTHS, OUTPUT_FORMATS

FORMATS = OUTPUT_FORMATS  # soundfile's name of each output format (defined with the option checks)
__all__ = ["BIT_DEPTHS", "FORMATS", "AudioInfo", "AudioReader"]


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about its audio (see :func:`probe_audio`).

    Attributes:
        sample_rate: Sample rate, in Hz.
        num_channels: Number of channels.
        num_samples: Length in samples at ``sample_rate``, or None when the container does not say.
    """

    sample_rate: int
    num_channels: int
    num_samples: int | None


class AudioReader(Protocol):
    """A source of float32 ``(n, num_channels)`` blocks."""

    sample_rate: int
    num_channels: int
    num_samples: int | None  # None when the length is not known in advance

    def read(self, num_samples: int) -> np.ndarray:
        """Up to ``num_samples`` samples; fewer only at the end, an empty array after it."""

    def close(self) -> None:
        """Release the file or process."""
