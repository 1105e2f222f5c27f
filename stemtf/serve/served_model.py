"""A loaded SavedModel exported by stemtf: finding it, its signatures, running them a few at a time."""

import os
import pathlib
import re
from collections.abc import Iterator

import numpy as np

from stemtf import apply, audio, options
from stemtf.errors import ModelError
from stemtf.export.artifacts import WAV_INPUT, WAV_SIGNATURE, WAVEFORM_INPUT, read_description
from stemtf.serve.protocol import RequestError
from stemtf.serve.signatures import Signature, SlottedModel, TensorSpec, separate_wav, separate_waveform

DEFAULT_MAX_DURATION = options.DEFAULT_MAX_DURATION
DEFAULT_MAX_CONCURRENCY = options.DEFAULT_MAX_CONCURRENCY


def find_savedmodel(path: str | os.PathLike) -> tuple[pathlib.Path, str] | None:
    """``(savedmodel_dir, version)`` for a SavedModel directory or a TF Serving base path; None otherwise.

    A base path holds numbered version folders; the highest one is served.
    """
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path, path.name if path.name.isdigit() else "1"
    if path.is_dir():
        versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
        if versions:
            best = max(versions, key=lambda p: int(p.name))
            return best, best.name
    return None


class ServedModel(SlottedModel):
    """A loaded SavedModel exported by :func:`stemtf.export.export_savedmodel`, thread-safe to call.

    Args:
        path: The SavedModel directory or a TF Serving base path.
        name: The name in URLs (default: the exported model's name).
        max_duration: Longest audio accepted, in seconds.
        max_concurrency: Inferences run at the same time; more requests wait.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        max_duration: float = DEFAULT_MAX_DURATION,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        import tensorflow as tf

        found = find_savedmodel(path)
        if found is None:
            raise ModelError(f"{str(path)!r} is not a SavedModel directory; export one with "
                             "stemtf.export.export(MODEL, fmt='savedmodel', output_dir=FOLDER).")
        self.path, self.version = found
        self.description = read_description(self.path)
        self.name = name or self.description.model
        self.sample_rate = self.description.sample_rate
        self.num_channels = self.description.num_channels
        self.stems = list(self.description.stems)
        self.max_duration = max_duration
        self._loaded = tf.saved_model.load(str(self.path))
        self._functions = dict(self._loaded.signatures)
        self.signatures = {
            key: Signature({name: _spec(spec) for name, spec in function.structured_input_signature[1].items()},
                           {name: _spec(spec) for name, spec in function.structured_outputs.items()})
            for key, function in self._functions.items()
        }
        super().__init__(max_concurrency)

    def infer(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a signature on numpy inputs; call it holding :meth:`slot`.

        A waveform longer than one chunk goes through ``serving_default`` chunk by chunk (the same
        chunks and cross-fade the graph uses), and so does every file given to ``separate_wav``
        (:func:`stemtf.serve.signatures.separate_wav`), so memory stays flat: the graph on a whole
        10-minute waveform holds every chunk's stems at once (gigabytes).
        """
        waveform = inputs.get(WAVEFORM_INPUT)
        if signature_name == "serving_default" and len(inputs) == 1 and waveform is not None \
                and waveform.shape[0] > self.description.chunk_samples:
            stems = separate_waveform(self.separate_stream, waveform, self.sample_rate)
            return {stem: stems[index] for index, stem in enumerate(self.stems)}
        if signature_name == WAV_SIGNATURE and set(inputs) == {WAV_INPUT} and set(self.signatures[WAV_SIGNATURE].outputs) \
                == {f"{stem}_bytes" for stem in self.stems}:
            return separate_wav(inputs[WAV_INPUT], self.separate_stream, stems=self.stems, sample_rate=self.sample_rate,
                                num_channels=self.num_channels)
        return self._call(signature_name, inputs)

    def _call(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        function = self._functions[signature_name]
        try:
            outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise RequestError(_tf_message(error)) from None
        return {name: value.numpy() for name, value in outputs.items()}

    def separate_stream(self, reader: audio.AudioReader) -> Iterator[np.ndarray]:
        """Separate a reader at the model's rate and channels block by block; call it holding :meth:`slot`.

        ``serving_default`` on exactly one chunk is one pass of the network (no padding, no fades),
        and :func:`stemtf.apply.separate_stream` cross-fades the chunks as the graph would.

        Yields:
            float32 ``(num_stems, n, num_channels)`` consecutive blocks.
        """
        def one_chunk(chunk: np.ndarray) -> np.ndarray:
            outputs = self._call("serving_default", {WAVEFORM_INPUT: chunk})
            return np.stack([outputs[stem] for stem in self.stems])

        return apply.separate_stream(
            reader, one_chunk, chunk_samples=self.description.chunk_samples,
            overlap_samples=self.description.overlap_samples,
        )

    def separate(self, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        """Separate a waveform ``(num_samples, 1 or 2)`` of any rate; stems keep its shape and rate."""
        num_samples, num_channels = waveform.shape
        x = apply.to_model_format(waveform, sample_rate, model_rate=self.sample_rate, model_channels=self.num_channels)
        outputs = self.run("serving_default", {WAVEFORM_INPUT: x})
        return {
            stem: apply.from_model_format(
                outputs[stem], model_rate=self.sample_rate, sample_rate=sample_rate, num_channels=num_channels,
                num_samples=num_samples,
            )
            for stem in self.stems
        }


def _spec(spec) -> TensorSpec:
    return TensorSpec(spec.dtype.name, tuple(spec.shape.as_list()))


def _tf_message(error: Exception) -> str:
    """The useful line of a TensorFlow error (assertion text, or the first line)."""
    text = getattr(error, "message", None) or str(error)
    found = re.search(r"assertion failed: \[([^\]]*)\]", text)
    if found:
        return found.group(1)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(("[[", "Detected at", "<stack"))]
    return (lines[-1] if lines else "inference failed")[:500]
