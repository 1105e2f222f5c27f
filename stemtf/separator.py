"""Separate waveforms and files into stems with a trained model.

Chunked inference lives here, outside the network: the input is cut into chunks of
``segment_frames`` STFT frames that overlap by ``overlap`` seconds; each chunk is separated on its
own and neighbouring chunks are cross-faded linearly, so memory stays flat in the track length and
an identity model returns its input exactly. Files are decoded and encoded as streams.
"""

from __future__ import annotations

import os
import pathlib
import string
from collections.abc import Callable, Iterator

import numpy as np

from stemtf import audio
from stemtf.config import ModelConfig
from stemtf.errors import AudioError, OutputError, StemtfError

ProgressCallback = Callable[[int, "int | None"], None]
DEFAULT_FILENAME = "{track}/{stem}.{ext}"
_FILENAME_KEYS = {"track", "stem", "ext", "model"}


def check_filename_template(template: str) -> None:
    """Fail unless ``template`` uses only ``{track}``, ``{stem}``, ``{ext}`` and ``{model}`` and names each stem apart."""
    try:
        keys = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise OutputError(f"--filename {template!r} is not a valid template: {error}.") from None
    unknown = keys - _FILENAME_KEYS
    if unknown:
        raise OutputError(
            f"--filename {template!r} uses unknown field {{{sorted(unknown)[0]}}}; use {{track}}, {{stem}}, {{ext}} and {{model}}."
        )
    if "stem" not in keys:
        raise OutputError(f"--filename {template!r} must contain {{stem}}, or every stem would go to the same file.")


def plan_chunks(num_samples: int, *, chunk_samples: int, overlap_samples: int) -> int:
    """How many chunks :meth:`Separator.separate_stream` uses for ``num_samples`` samples."""
    if num_samples <= chunk_samples:
        return 1
    stride = chunk_samples - overlap_samples
    return 1 + -(-(num_samples - chunk_samples) // stride)


class Separator:
    """Separate audio into stems with a spectrogram-mask model.

    Args:
        model: A model from :func:`stemtf.model.build_model` (mixture magnitudes -> ``{stem: mask}``).
        config: The model's config.
        overlap: Overlap of neighbouring chunks, in seconds (cross-faded); default 1 s, or a quarter
            of a chunk for models with chunks shorter than 4 s.
        wiener_iterations: EM iterations of multichannel Wiener filtering after masking (0: off).
        segment_frames: STFT frames per chunk; defaults to the config's. Memory grows with it.
    """

    def __init__(
        self,
        model,
        config: ModelConfig,
        *,
        overlap: float | None = None,
        wiener_iterations: int = 0,
        segment_frames: int | None = None,
    ) -> None:
        from stemtf import spectral  # TensorFlow is imported only when a separator is made

        self.model = model
        self.config = config
        frames = segment_frames or config.segment_frames
        stride = 2 ** len(config.unet.filters)
        if frames % stride:
            raise ValueError(f"Argument `segment_frames` must be a multiple of {stride}. Received {frames}.")
        self.chunk_samples = spectral.segment_samples(frames, n_fft=config.n_fft, hop_length=config.hop_length)
        if overlap is None:
            self.overlap_samples = min(config.sample_rate, self.chunk_samples // 4)
        else:
            self.overlap_samples = int(round(overlap * config.sample_rate))
        if not 0 <= self.overlap_samples <= self.chunk_samples // 2:
            raise StemtfError(
                f"--overlap must be between 0 and {self.chunk_samples // 2 / config.sample_rate:.3g} s. Received {overlap:g}."
            )
        if wiener_iterations < 0:
            raise StemtfError(f"--wiener iterations must be >= 0. Received {wiener_iterations}.")
        self.wiener_iterations = wiener_iterations
        self._separate_chunk = self._build_chunk_function()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "4stems", **kwargs) -> "Separator":
        """Load a shipped model by name (``2stems``, ``4stems``, ``5stems``, ...) or a model directory."""
        from stemtf.model import load_model

        model, config = load_model(name_or_path)
        return cls(model, config, **kwargs)

    @property
    def stems(self) -> tuple[str, ...]:
        """The stem names, in output order."""
        return self.config.stems

    @property
    def sample_rate(self) -> int:
        """The rate the model works at, in Hz."""
        return self.config.sample_rate

    def _build_chunk_function(self) -> Callable[[np.ndarray], np.ndarray]:
        import tensorflow as tf

        from stemtf import spectral
        from stemtf.wiener import wiener_filter

        config, model = self.config, self.model
        n_fft, hop = config.n_fft, config.hop_length

        @tf.function(
            input_signature=[tf.TensorSpec([self.chunk_samples, config.num_channels], tf.float32)], autograph=False
        )
        def separate_chunk(waveform: tf.Tensor) -> tf.Tensor:
            stft = spectral.stft(waveform, n_fft=n_fft, hop_length=hop)  # (T, bins, C)
            magnitude = tf.abs(stft)[None, :, : config.max_bins, :]
            masks = model(magnitude, training=False)
            estimates = []
            for stem in config.stems:
                mask = spectral.extend_mask(
                    masks[stem][0], num_bins=config.num_bins, how=config.mask_extension,
                    extension_bins=config.extension_bins,
                )
                estimates.append(stft * tf.cast(mask, tf.complex64))
            if self.wiener_iterations:
                estimates = wiener_filter(stft, tf.stack(estimates), iterations=self.wiener_iterations)
                return spectral.istft(estimates, n_fft=n_fft, hop_length=hop, num_samples=self.chunk_samples)
            # An inverse STFT per stem: no stacked (stems, frames, bins) tensor and its frames at once.
            return tf.stack([
                spectral.istft(estimate, n_fft=n_fft, hop_length=hop, num_samples=self.chunk_samples)
                for estimate in estimates
            ])

        return lambda chunk: separate_chunk(chunk).numpy()

    def separate_stream(
        self, reader: audio.AudioReader, *, progress: ProgressCallback | None = None
    ) -> Iterator[np.ndarray]:
        """Separate a reader at the model's sample rate and channel count, block by block.

        Yields:
            float32 ``(num_stems, n, num_channels)`` consecutive blocks; together as long as the input.
        """
        length, overlap = self.chunk_samples, self.overlap_samples
        stride = length - overlap
        total = None if reader.num_samples is None else plan_chunks(
            reader.num_samples, chunk_samples=length, overlap_samples=overlap
        )
        ramp = ((np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1))[:, None]
        buffer = reader.read(length)
        if buffer.shape[0] == 0:
            raise AudioError("The input holds no audio samples.")
        following = reader.read(stride) if buffer.shape[0] == length else buffer[:0]
        carry = None
        done = 0
        if progress is not None:
            progress(0, total)
        while True:
            last = following.shape[0] == 0
            valid = buffer.shape[0]
            chunk = buffer if valid == length else np.pad(buffer, ((0, length - valid), (0, 0)))
            stems = self._separate_chunk(chunk)
            if carry is not None:
                stems[:, :overlap] *= ramp
                stems[:, :overlap] += carry
            done += 1
            if progress is not None:
                progress(done, None if total is None else max(total, done))
            if last:
                yield stems[:, :valid]
                return
            stems[:, stride:] *= 1.0 - ramp
            carry = stems[:, stride:]
            yield stems[:, :stride]
            buffer = np.concatenate([buffer[stride:], following])
            following = reader.read(stride) if buffer.shape[0] == length else buffer[:0]

    def _model_reader(self, reader: audio.AudioReader) -> audio.AudioReader:
        if reader.num_channels not in (1, 2):
            raise AudioError(
                f"The input has {reader.num_channels} channels; stemtf separates mono or stereo audio "
                "(downmix first, e.g. ffmpeg -i in.wav -ac 2 out.wav)."
            )
        if reader.sample_rate != self.sample_rate:
            reader = audio.ResamplingReader(reader, self.sample_rate)
        return _ChannelReader(reader, self.config.num_channels)

    def separate(
        self, waveform: np.ndarray, sample_rate: int, *, progress: ProgressCallback | None = None
    ) -> dict[str, np.ndarray]:
        """Separate an in-memory waveform.

        Args:
            waveform: float ``(num_samples, num_channels)`` with 1 or 2 channels, or ``(num_samples,)`` mono.
            sample_rate: Its sample rate in Hz; resampled to the model's and back.
            progress: Called with ``(chunks_done, chunks_total)``.

        Returns:
            ``{stem: waveform}`` with the input's shape, rate and dtype float32.
        """
        waveform = np.asarray(waveform)
        squeeze = waveform.ndim == 1
        if squeeze:
            waveform = waveform[:, None]
        if waveform.ndim != 2 or waveform.shape[0] == 0:
            raise AudioError(f"`waveform` must be (num_samples, num_channels) with samples. Received shape {waveform.shape}.")
        if not np.issubdtype(waveform.dtype, np.floating):
            raise AudioError(f"`waveform` must be floating point in [-1, 1]. Received dtype {waveform.dtype}.")
        if not np.all(np.isfinite(waveform)):
            raise AudioError("`waveform` contains NaN or infinite values.")
        num_samples, num_channels = waveform.shape
        reader = self._model_reader(audio.ArrayReader(waveform.astype(np.float32), sample_rate))
        blocks = list(self.separate_stream(reader, progress=progress))
        stems = np.concatenate(blocks, axis=1)
        result = {}
        for index, stem in enumerate(self.stems):
            out = stems[index]
            if sample_rate != self.sample_rate:
                import soxr

                out = soxr.resample(out, self.sample_rate, sample_rate).reshape(-1, out.shape[1])
            out = audio.convert_channels(out, num_channels)
            out = np.pad(out[:num_samples], ((0, max(0, num_samples - out.shape[0])), (0, 0)))
            result[stem] = out[:, 0] if squeeze else out
        return result

    def output_paths(
        self,
        path: str | os.PathLike,
        *,
        output_dir: str | os.PathLike = "separated",
        filename: str = DEFAULT_FILENAME,
        fmt: str = "wav",
    ) -> dict[str, pathlib.Path]:
        """Where :meth:`separate_file` writes each stem of ``path``."""
        check_filename_template(filename)
        track = pathlib.Path(path).stem
        fields = {"track": track, "ext": fmt, "model": self.config.name}
        return {stem: pathlib.Path(output_dir) / filename.format(stem=stem, **fields) for stem in self.stems}

    def separate_file(
        self,
        path: str | os.PathLike,
        *,
        output_dir: str | os.PathLike = "separated",
        filename: str = DEFAULT_FILENAME,
        fmt: str = "wav",
        bit_depth: int = 16,
        bitrate: int | None = None,
        offset: float = 0.0,
        duration: float | None = None,
        overwrite: bool = False,
        progress: ProgressCallback | None = None,
    ) -> dict[str, pathlib.Path]:
        """Separate an audio file into one file per stem.

        Output files keep the input's sample rate and channel count. Every stem is written to a
        temporary file and renamed into place only when all stems are complete; on any error no
        output file is left behind.

        Args:
            path: Input audio (WAV/FLAC/OGG/MP3, or anything ffmpeg decodes).
            output_dir: Root folder of the outputs.
            filename: Template of each output path under ``output_dir``, with ``{track}`` (input
                file name without suffix), ``{stem}``, ``{ext}`` and ``{model}``.
            fmt: ``wav``, ``flac``, ``ogg`` or ``mp3``.
            bit_depth: 16, 24 or 32 (float) for WAV and FLAC.
            bitrate: kbps for MP3 and OGG.
            offset: Seconds to skip at the start of the input.
            duration: Seconds to separate (None: to the end).
            overwrite: Replace existing output files instead of failing.
            progress: Called with ``(chunks_done, chunks_total)``.

        Returns:
            ``{stem: path}`` of the written files.

        Raises:
            AudioError: the input cannot be read.
            OutputError: an output exists (without ``overwrite``) or cannot be written.
        """
        audio.check_output_options(fmt, bit_depth, bitrate)
        if duration is not None and duration <= 0:
            raise AudioError(f"--duration must be > 0 seconds. Received {duration:g}.")
        targets = self.output_paths(path, output_dir=output_dir, filename=filename, fmt=fmt)
        if not overwrite:
            existing = [p for p in targets.values() if p.exists()]
            if existing:
                raise OutputError(f"Output {str(existing[0])!r} already exists; pass --overwrite to replace it.")
        source = audio.open_audio(path, offset=offset)
        writers: list[audio.AudioWriter] = []
        try:
            if duration is not None:
                source = audio.LimitedReader(source, int(round(duration * source.sample_rate)))
            input_rate, input_channels = source.sample_rate, source.num_channels
            reader = self._model_reader(source)
            for target in targets.values():
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise OutputError(f"Cannot create output folder {str(target.parent)!r}: {error.strerror}.") from None
                if target.is_dir():
                    raise OutputError(f"Output {str(target)!r} is a directory; choose another --filename.")
                try:
                    writers.append(audio.AudioWriter(
                        target, sample_rate=input_rate, num_channels=input_channels, fmt=fmt,
                        bit_depth=bit_depth, bitrate=bitrate, input_rate=self.sample_rate,
                    ))
                except PermissionError:
                    raise OutputError(f"Cannot write to {str(target.parent)!r} (permission denied); choose another --output-dir.") from None
            for block in self.separate_stream(reader, progress=progress):
                for writer, stem_block in zip(writers, block):
                    writer.write(audio.convert_channels(stem_block, input_channels))
            for writer in writers:
                writer.write(np.zeros((0, input_channels), np.float32), last=True)
            return {stem: writer.commit() for stem, writer in zip(self.stems, writers)}
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        finally:
            source.close()


class _ChannelReader:
    """Convert a reader's blocks to the model's channel count."""

    def __init__(self, reader: audio.AudioReader, num_channels: int) -> None:
        self._reader = reader
        self.sample_rate = reader.sample_rate
        self.num_channels = num_channels
        self.num_samples = reader.num_samples

    def read(self, num_samples: int) -> np.ndarray:
        return audio.convert_channels(self._reader.read(num_samples), self.num_channels)

    def close(self) -> None:
        self._reader.close()
