"""The TensorFlow side of separation (exported graphs), and the model's format in and out.

The numpy engine that runs in production is :mod:`stemtf.dsp` (STFT pair, masks, Wiener, one chunk)
and :mod:`stemtf.plans` (the chunk and sliding plans); this module keeps:

- **one chunk in TensorFlow ops**, for graphs (:func:`separate_chunk`): STFT -> magnitudes -> the
  network's masks -> masks extended to every bin -> masked spectrograms -> (optional Wiener
  filtering) -> inverse STFT. The STFT pair is passed in: :class:`ComplexTransform` (``tf.signal``,
  what the SavedModel uses) or :class:`MatmulTransform` (the DFT as matrix products, for TFLite and
  ONNX). Tests pin it to :func:`stemtf.dsp.separate_chunk`. The oracle baseline applies ideal masks
  with the same :func:`masks_to_stems`.
- **the chunk count in graphs** (:func:`num_chunks` on TensorFlow scalars) and
  :func:`separate_stream`, the chunk plan over a reader (:func:`stemtf.plans.run`).
- **the model's format**: resampling and channel conversion in and out
  (:func:`model_reader`, :func:`to_model_format`, :func:`from_model_format`).

The numpy names of earlier versions (``stft_numpy``, ``separate_chunk_numpy``, ...) are the engine's
functions under their old names. TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from stemtf import audio, dsp, plans
from stemtf.config import ModelConfig
from stemtf.errors import AudioError

ProgressCallback = Callable[[int, "int | None"], None]
ChunkFunction = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------------------
# One chunk


class Transform(Protocol):
    """An STFT pair: what :func:`separate_chunk` needs to analyse, mask and resynthesise a chunk."""

    def analyze(self, waveform: Any) -> Any:
        """Waveform ``(L, C)`` -> spectrogram (opaque to callers)."""

    def magnitude(self, spectrogram: Any) -> Any:
        """float32 ``(num_frames, num_bins, C)`` magnitudes of a spectrogram."""

    def apply(self, spectrogram: Any, mask: Any) -> Any:
        """The spectrogram multiplied by a real mask ``(num_frames, num_bins, C)``."""

    def synthesize(self, spectrogram: Any, num_samples: int) -> Any:
        """Spectrogram -> float32 waveform ``(num_samples, C)``."""


class ComplexTransform:
    """:func:`stemtf.spectral.stft` / ``istft`` (``tf.signal``): complex64 spectrograms."""

    supports_wiener = True

    def __init__(self, *, n_fft: int, hop_length: int) -> None:
        self.n_fft, self.hop_length = n_fft, hop_length

    def analyze(self, waveform):
        from stemtf import spectral

        return spectral.stft(waveform, n_fft=self.n_fft, hop_length=self.hop_length)

    def magnitude(self, spectrogram):
        import tensorflow as tf

        return tf.abs(spectrogram)

    def apply(self, spectrogram, mask):
        import tensorflow as tf

        return spectrogram * tf.cast(mask, tf.complex64)

    def synthesize(self, spectrogram, num_samples):
        from stemtf import spectral

        return spectral.istft(spectrogram, n_fft=self.n_fft, hop_length=self.hop_length, num_samples=num_samples)


class MatmulTransform:
    """:func:`stemtf.spectral.stft_matmul` / ``istft_matmul``: ``(real, imag)`` pairs, builtin ops only."""

    supports_wiener = False

    def __init__(self, *, n_fft: int, hop_length: int) -> None:
        self.n_fft, self.hop_length = n_fft, hop_length

    def analyze(self, waveform):
        from stemtf import spectral

        return spectral.stft_matmul(waveform, n_fft=self.n_fft, hop_length=self.hop_length)

    def magnitude(self, spectrogram):
        import tensorflow as tf

        real, imag = spectrogram
        return tf.sqrt(tf.square(real) + tf.square(imag))

    def apply(self, spectrogram, mask):
        real, imag = spectrogram
        return real * mask, imag * mask

    def synthesize(self, spectrogram, num_samples):
        from stemtf import spectral

        real, imag = spectrogram
        return spectral.istft_matmul(real, imag, n_fft=self.n_fft, hop_length=self.hop_length, num_samples=num_samples)


def transform_for(config: ModelConfig, *, portable: bool = False) -> ComplexTransform | MatmulTransform:
    """The STFT pair of ``config``: ``tf.signal`` by default, matrix products when ``portable``."""
    kind = MatmulTransform if portable else ComplexTransform
    return kind(n_fft=config.n_fft, hop_length=config.hop_length)


def predict_masks(model, magnitude, config: ModelConfig) -> list:
    """The network's masks for one chunk, extended to every frequency bin.

    Args:
        model: The spectrogram -> ``{stem: mask}`` network of :func:`stemtf.model.build_model`.
        magnitude: float32 ``(num_frames, num_bins, num_channels)`` mixture magnitudes (all bins).
        config: The model's config.

    Returns:
        float32 ``(num_frames, num_bins, num_channels)`` masks, one per stem in ``config.stems`` order.
    """
    from stemtf import spectral

    masks = model(magnitude[None, :, : config.max_bins, :], training=False)
    return [
        spectral.extend_mask(
            masks[stem][0], num_bins=config.num_bins, how=config.mask_extension, extension_bins=config.extension_bins
        )
        for stem in config.stems
    ]


def masks_to_stems(
    transform: Transform, spectrogram, masks: Sequence, *, num_samples, wiener_iterations: int = 0
) -> list:
    """Apply masks to a mixture spectrogram and return the stems' waveforms.

    Args:
        transform: The STFT pair ``spectrogram`` came from.
        spectrogram: The mixture's, from ``transform.analyze``.
        masks: float32 ``(num_frames, num_bins, num_channels)`` per stem.
        num_samples: Length of the transformed waveform.
        wiener_iterations: Multichannel Wiener filter EM iterations after masking (0: off);
            needs a complex transform.

    Returns:
        float32 ``(num_samples, num_channels)`` per stem, in the order of ``masks``.
    """
    estimates = [transform.apply(spectrogram, mask) for mask in masks]
    if wiener_iterations:
        if not getattr(transform, "supports_wiener", False):
            raise ValueError("Wiener filtering needs complex spectrograms (ComplexTransform).")
        import tensorflow as tf

        from stemtf.wiener import wiener_filter

        filtered = wiener_filter(spectrogram, tf.stack(estimates), iterations=wiener_iterations)
        return tf.unstack(transform.synthesize(filtered, num_samples))
    # One inverse STFT per stem: never every stem's frames at once.
    return [transform.synthesize(estimate, num_samples) for estimate in estimates]


def separate_chunk(
    model, config: ModelConfig, waveform, *, transform: Transform | None = None, wiener_iterations: int = 0
) -> list:
    """Separate one chunk: STFT, the network's masks, masking, (Wiener), inverse STFT.

    Args:
        model: The spectrogram -> masks network.
        config: Its config.
        waveform: float32 ``(num_samples, num_channels)`` at the model's rate and channel count.
        transform: The STFT pair (default: ``tf.signal``).
        wiener_iterations: Wiener filter EM iterations (complex transform only).

    Returns:
        float32 ``(num_samples, num_channels)`` per stem, in ``config.stems`` order.
    """
    import tensorflow as tf

    transform = transform or transform_for(config)
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    # A static length keeps exported graphs static-shaped (TFLite runs those much faster).
    num_samples = waveform.shape[0] if waveform.shape[0] is not None else tf.shape(waveform)[0]
    spectrogram = transform.analyze(waveform)
    masks = predict_masks(model, transform.magnitude(spectrogram), config)
    if not wiener_iterations and len(masks) > 1 and _has_ratio_masks(model) and config.mask_extension != "zeros":
        # As separate_chunk_numpy: ratio masks sum to one in every bin (the extension keeps that, but
        # ``zeros`` leaves nothing above max_bins, so not there) and the
        # STFT pair gives back its input, so the last stem is the chunk minus the others: one inverse
        # STFT fewer (in the exported waveform graphs, a quarter of their DFT work with 4 stems).
        others = masks_to_stems(transform, spectrogram, masks[:-1], num_samples=num_samples)
        return [*others, waveform - tf.add_n(others)]
    return masks_to_stems(transform, spectrogram, masks, num_samples=num_samples, wiener_iterations=wiener_iterations)


def _has_ratio_masks(model) -> bool:
    """Whether ``model`` ends in :class:`stemtf.model.RatioMasks` (its masks sum to one), as every stemtf model does."""
    try:
        model.get_layer("ratio_masks")
    except (AttributeError, ValueError):
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# One chunk in numpy (what the separator runs, with either runtime's masks): stemtf.dsp, named here too

MaskPredictor = dsp.MaskPredictor
fast_rfft = dsp.fast_rfft
stft_numpy = dsp.stft
istft_numpy = dsp.istft
mask_fill_numpy = dsp.mask_fill
extend_masks_numpy = dsp.extend_masks
wiener_numpy = dsp.wiener
crossfade_ramp = dsp.crossfade_ramp
check_overlap = dsp.check_overlap


def separate_chunk_numpy(
    predict: MaskPredictor, config: ModelConfig, waveform: np.ndarray, *, wiener_iterations: int = 0
) -> np.ndarray:
    """:func:`separate_chunk` in numpy with masks from ``predict`` (Keras or LiteRT): :func:`stemtf.dsp.separate_chunk`."""
    return dsp.separate_chunk(predict, config, waveform, wiener_iterations=wiener_iterations)


# ----------------------------------------------------------------------------------------------------------
# Many chunks


def num_chunks(num_samples, *, chunk_samples: int, overlap_samples: int):
    """How many chunks of ``chunk_samples`` overlapping by ``overlap_samples`` cover ``num_samples``.

    Works on Python ints (:func:`stemtf.dsp.num_chunks`) and on TensorFlow scalars (for graphs of a
    whole waveform).
    """
    if isinstance(num_samples, (int, np.integer)):
        return dsp.num_chunks(num_samples, chunk_samples=chunk_samples, overlap_samples=overlap_samples)
    import tensorflow as tf

    stride = chunk_samples - overlap_samples
    return 1 + (tf.maximum(num_samples - chunk_samples, 0) + stride - 1) // stride


def separate_stream(
    reader: audio.AudioReader,
    separate: ChunkFunction,
    *,
    chunk_samples: int,
    overlap_samples: int,
    progress: ProgressCallback | None = None,
) -> Iterator[np.ndarray]:
    """Separate a reader chunk by chunk, cross-fading neighbours, and yield the stems block by block.

    :func:`stemtf.plans.run` with a :class:`stemtf.plans.ChunkPlan`: at most two chunks are held at once.

    Args:
        reader: Audio at the model's rate and channel count.
        separate: One chunk float32 ``(chunk_samples, C)`` -> ``(num_stems, chunk_samples, C)``;
            the last chunk is zero-padded to full length.
        chunk_samples: Samples per chunk.
        overlap_samples: Samples shared by neighbouring chunks (at most half a chunk).
        progress: Called with ``(chunks_done, chunks_total)``; the total is None when the
            reader's length is unknown.

    Yields:
        float32 ``(num_stems, n, C)`` consecutive blocks; together exactly as long as the input.

    Raises:
        AudioError: the reader holds no samples.
    """
    dsp.check_overlap(overlap_samples, chunk_samples)
    total = None if reader.num_samples is None else dsp.num_chunks(
        reader.num_samples, chunk_samples=chunk_samples, overlap_samples=overlap_samples
    )
    # num_stems only shapes the empty answers, which plans.run never yields
    plan = plans.ChunkPlan(separate, num_stems=0, num_channels=reader.num_channels, chunk_samples=chunk_samples,
                           overlap_samples=overlap_samples)
    return plans.run(plan, reader, progress=progress, total_chunks=total)


# ----------------------------------------------------------------------------------------------------------
# The model's format (rate and channels) in and out


def check_num_channels(num_channels: int) -> None:
    """Raise :class:`AudioError` for audio that is neither mono nor stereo."""
    if num_channels not in (1, 2):
        raise AudioError(
            f"The input has {num_channels} channels; stemtf separates mono or stereo audio "
            "(downmix first, e.g. ffmpeg -i in.wav -ac 2 out.wav)."
        )


def model_reader(reader: audio.AudioReader, *, sample_rate: int, num_channels: int) -> audio.AudioReader:
    """``reader`` resampled (streaming) to ``sample_rate`` and converted to ``num_channels``."""
    check_num_channels(reader.num_channels)
    if reader.sample_rate != sample_rate:
        reader = audio.ResamplingReader(reader, sample_rate)
    return _ChannelReader(reader, num_channels)


def to_model_format(waveform: np.ndarray, sample_rate: int, *, model_rate: int, model_channels: int) -> np.ndarray:
    """A whole waveform ``(num_samples, 1 or 2)`` resampled and channel-converted for the model; float32."""
    check_num_channels(waveform.shape[1])
    if sample_rate != model_rate:
        import soxr

        waveform = soxr.resample(waveform, sample_rate, model_rate).reshape(-1, waveform.shape[1])
    return audio.convert_channels(np.ascontiguousarray(waveform, dtype=np.float32), model_channels)


def from_model_format(
    stem: np.ndarray, *, model_rate: int, sample_rate: int, num_channels: int, num_samples: int
) -> np.ndarray:
    """A stem from the model back to the input's rate, channels and exact length (trimmed or zero-padded)."""
    if sample_rate != model_rate:
        import soxr

        stem = soxr.resample(stem, model_rate, sample_rate).reshape(-1, stem.shape[1])
    stem = audio.convert_channels(stem, num_channels)
    return np.pad(stem[:num_samples], ((0, max(0, num_samples - stem.shape[0])), (0, 0))).astype(np.float32, copy=False)


class _ChannelReader:
    """A reader's blocks converted to another channel count."""

    def __init__(self, reader: audio.AudioReader, num_channels: int) -> None:
        self._reader = reader
        self.sample_rate = reader.sample_rate
        self.num_channels = num_channels
        self.num_samples = reader.num_samples

    def read(self, num_samples: int) -> np.ndarray:
        return audio.convert_channels(self._reader.read(num_samples), self.num_channels)

    def close(self) -> None:
        self._reader.close()
