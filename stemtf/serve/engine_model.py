"""TF Serving's REST API on the page's own engine: one ``Separator`` per model, no temporary SavedModel.

``stemtf serve 4stems`` used to export a temporary SavedModel for ``/v1/models/...`` and
``/v1/separate`` and load the model a second time (LiteRT) for the page. An :class:`EngineModel`
answers the same routes with the same signatures (``serving_default``: waveform -> stems;
``separate_wav``: WAV bytes -> WAV bytes, see :mod:`stemtf.serve.signatures`) from the
:class:`~stemtf.separator.Separator` that the page's jobs use. What changes for a client: the
numbers are those of ``stemtf separate`` (the numpy engine, LiteRT masks where installed) rather
than the exported graph's, which agree to the precision the export tests hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from stemtf import audio, options
from stemtf.export.artifacts import WAV_INPUT, WAV_SIGNATURE, WAVEFORM_INPUT
from stemtf.serve.protocol import RequestError
from stemtf.serve.signatures import SlottedModel, separate_wav, separate_waveform, stem_signatures


class EngineModel(SlottedModel):
    """A stemtf model served over TF Serving's REST API through its ``Separator`` (shared with the page).

    Args:
        entry: The page's model: an object with ``stems``, ``sample_rate``, ``num_channels`` and
            ``load()`` returning the ``Separator`` (loaded once, at the first call; see
            :class:`stemtf.serve.jobs.runner.OfferedModel`).
        name: The name in URLs.
        max_duration: Longest audio accepted, in seconds.
        max_concurrency: Inferences run at the same time; more requests wait.
    """

    version = "1"

    def __init__(
        self,
        entry: Any,
        *,
        name: str,
        max_duration: float = options.DEFAULT_MAX_DURATION,
        max_concurrency: int = options.DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.entry = entry
        self.name = name
        self.stems = list(entry.stems)
        self.sample_rate = entry.sample_rate
        self.num_channels = entry.num_channels
        self.max_duration = max_duration
        self.signatures = stem_signatures(self.stems, self.num_channels)
        super().__init__(max_concurrency)

    def infer(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a signature on validated numpy inputs, chunk by chunk; call it holding :meth:`slot`."""
        if signature_name == WAV_SIGNATURE:
            return separate_wav(inputs[WAV_INPUT], self.separate_stream, stems=self.stems, sample_rate=self.sample_rate,
                                num_channels=self.num_channels)
        if signature_name != "serving_default":
            raise RequestError(f"Unknown signature_name {signature_name!r}.")
        stems = separate_waveform(self.separate_stream, inputs[WAVEFORM_INPUT], self.sample_rate)
        return {stem: stems[index] for index, stem in enumerate(self.stems)}

    def separate_stream(self, reader: audio.AudioReader) -> Iterator[np.ndarray]:
        """Separate a reader at the model's rate and channels block by block; call it holding :meth:`slot`.

        Yields:
            float32 ``(num_stems, n, num_channels)`` consecutive blocks.
        """
        return self.entry.load().separate_stream(reader)
