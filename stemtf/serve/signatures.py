"""The signatures a stemtf SavedModel exports, as the REST API serves them: specs, metadata, and ``separate_wav`` chunk by chunk.

Both kinds of served model use these: :class:`~stemtf.serve.served_model.ServedModel` (an exported
SavedModel) and :class:`~stemtf.serve.engine_model.EngineModel` (the page's ``Separator``, no
export). ``separate_wav`` is run here in Python for both, through the model's chunked
``serving_default``: the graph's version holds the whole song's stems several times over.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from stemtf import audio
from stemtf.export.artifacts import WAV_INPUT, WAV_SIGNATURE, WAVEFORM_INPUT
from stemtf.serve.protocol import RequestError


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature: ``float32`` or ``string``, and its shape (None for a free dimension)."""

    dtype: str
    shape: tuple[int | None, ...]

    def json(self, name: str) -> dict[str, Any]:
        """This tensor in TF Serving's ``GetModelMetadata`` JSON form, named ``name``."""
        dtype = {"float32": "DT_FLOAT", "string": "DT_STRING"}.get(self.dtype, f"DT_{self.dtype.upper()}")
        dims = [{"size": str(-1 if d is None else d), "name": ""} for d in self.shape]
        return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": name}


@dataclasses.dataclass(frozen=True)
class Signature:
    """A signature's inputs and outputs, by name."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


def stem_signatures(stems: Sequence[str], num_channels: int) -> dict[str, Signature]:
    """``serving_default`` (waveform -> stems) and ``separate_wav`` (WAV bytes -> WAV bytes), as :func:`stemtf.export.export_savedmodel` writes them."""
    waveform = TensorSpec("float32", (None, num_channels))
    strings = TensorSpec("string", (None,))
    return {
        "serving_default": Signature({WAVEFORM_INPUT: waveform}, {stem: waveform for stem in stems}),
        WAV_SIGNATURE: Signature({WAV_INPUT: strings}, {f"{stem}_bytes": strings for stem in stems}),
    }


def metadata_json(signatures: dict[str, Signature]) -> dict[str, Any]:
    """The signatures in TF Serving's ``GetModelMetadata`` JSON form."""
    return {
        key: {
            "inputs": {name: spec.json(f"{key}_{name}:0") for name, spec in signature.inputs.items()},
            "outputs": {name: spec.json(f"StatefulPartitionedCall:{index}")
                        for index, (name, spec) in enumerate(sorted(signature.outputs.items()))},
            "method_name": "tensorflow/serving/predict",
        }
        for key, signature in signatures.items()
    }


def separate_waveform(
    separate_stream: Callable[[audio.AudioReader], Iterator[np.ndarray]], waveform: np.ndarray, sample_rate: int
) -> np.ndarray:
    """``serving_default`` on a whole waveform ``(num_samples, C)``, chunk by chunk: float32 ``(num_stems, num_samples, C)``."""
    blocks = list(separate_stream(audio.ArrayReader(waveform, sample_rate)))
    return np.concatenate(blocks, axis=1)


def separate_wav(
    items: np.ndarray,
    separate_stream: Callable[[audio.AudioReader], Iterator[np.ndarray]],
    *,
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int,
) -> dict[str, np.ndarray]:
    """``separate_wav`` as the exported graph computes it, one file and one chunk at a time.

    Args:
        items: ``(batch,)`` object array of WAV files (bytes) at ``sample_rate``, mono or stereo.
        separate_stream: The model's chunked separation of a reader at its rate and channels.
        stems: The model's stems.
        sample_rate: The model's rate in Hz; a WAV at another rate is refused, as by the graph.
        num_channels: The model's channels.

    Returns:
        ``{stem + "_bytes": (batch,) object array}`` of 16-bit PCM WAV files, each with its input's
        channel count, clipped to [-1, 1].

    Raises:
        RequestError: not a WAV, another rate, more than two channels.
    """
    import soundfile as sf

    outputs: dict[str, list[bytes]] = {f"{stem}_bytes": [] for stem in stems}
    for item in items.reshape(-1):
        try:
            waveform, rate = sf.read(io.BytesIO(item), dtype="float32", always_2d=True)
        except Exception:  # soundfile raises several kinds for bytes that are not audio
            raise RequestError("An audio_bytes value is not a WAV file.") from None
        if rate != sample_rate:
            raise RequestError(f"the WAV must be {sample_rate} Hz (resample it, or use /v1/separate)")
        have = waveform.shape[1]
        if have > 2:
            raise RequestError("the WAV must be mono or stereo")
        reader = audio.ArrayReader(audio.convert_channels(waveform, num_channels), sample_rate)
        del waveform
        buffers = [io.BytesIO() for _ in stems]
        writers = [sf.SoundFile(buffer, "w", samplerate=sample_rate, channels=have, format="WAV", subtype="PCM_16")
                   for buffer in buffers]
        try:
            for block in separate_stream(reader):  # (num_stems, n, C): written as it comes, never the whole song's stems
                for writer, stem_block in zip(writers, block):
                    writer.write(np.clip(audio.convert_channels(stem_block, have), -1.0, 1.0))
        finally:
            for writer in writers:
                writer.close()
        del reader
        for stem, buffer in zip(stems, buffers):
            outputs[f"{stem}_bytes"].append(buffer.getvalue())
    result = {}
    for name, files in outputs.items():
        array = np.empty(len(files), dtype=object)
        array[:] = files
        result[name] = array
    return result


class SlottedModel:
    """What every served model shares: its signatures as TF Serving metadata, and ``max_concurrency``
    slots around :meth:`infer` (subclasses set ``signatures`` and implement ``infer``)."""

    signatures: dict[str, Signature]

    def __init__(self, max_concurrency: int) -> None:
        self._semaphore = threading.BoundedSemaphore(max(1, max_concurrency))

    def signature_metadata(self) -> dict[str, Any]:
        """The signatures in TF Serving's ``GetModelMetadata`` JSON form."""
        return metadata_json(self.signatures)

    def slot(self) -> threading.BoundedSemaphore:
        """One of the ``max_concurrency`` slots: hold it for all of a request's heavy work (decode, model, encode)."""
        return self._semaphore

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a signature on numpy inputs, one of ``max_concurrency`` at a time (see :meth:`infer`)."""
        with self._semaphore:
            return self.infer(signature_name, inputs)

    def infer(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError
