"""Read and write waveforms: soundfile first, ffmpeg for other containers; streaming, numpy only.

A waveform is float32 ``(num_samples, num_channels)``. Readers and writers work block by block so
that separating a file of any length keeps memory flat: :func:`open_audio` returns a reader,
:class:`AudioWriter` writes to a temporary file and renames it into place on :meth:`~AudioWriter.commit`.
:func:`probe_audio` and :func:`read_segment` serve the training data (header facts, and short reads
from anywhere in a file, including one stream of a multi-stream container).

This is the only package that decodes or probes files: every reader tries soundfile first (WAV,
FLAC, OGG, MP3) and falls back to ffmpeg for anything else.
"""

from stemtf.audio.formats import BIT_DEPTHS, FORMATS, AudioInfo, AudioReader
from stemtf.audio.reading import (
    ArrayReader,
    FiniteReader,
    LimitedReader,
    ResamplingReader,
    check_input_file,
    convert_channels,
    open_audio,
    probe_audio,
    read_audio,
    read_segment,
)
from stemtf.audio.writing import AudioWriter, Clipped, clipping_report, output_subtype, write_audio

__all__ = [
    "BIT_DEPTHS",
    "FORMATS",
    "ArrayReader",
    "AudioInfo",
    "AudioReader",
    "AudioWriter",
    "Clipped",
    "FiniteReader",
    "LimitedReader",
    "ResamplingReader",
    "check_input_file",
    "clipping_report",
    "convert_channels",
    "open_audio",
    "output_subtype",
    "probe_audio",
    "read_audio",
    "read_segment",
    "write_audio",
]
