"""Separate waveforms and files into stems with a trained model.

The separator is the waveform-level front of the engine: it cuts the input into chunks of
``segment_frames`` STFT frames that overlap by ``overlap`` seconds, separates each chunk with
:func:`stemtf.dsp.separate_chunk` and cross-fades neighbours linearly (:class:`stemtf.plans.ChunkPlan`), so memory stays flat in the
track length and an identity model returns its input exactly. Files are decoded and encoded as streams.
A model with ``chunking: spleeter`` (imported Spleeter models, Spleeter-exact) is cut as ``spleeter
separate`` cuts a song instead (:class:`stemtf.plans.SpleeterPlan`).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from stemtf import apply, audio, dsp, options, outputs, plans, runtimes
from stemtf.config import ModelConfig
from stemtf.errors import AudioError, ModelError, OptionError, OutputError, OutputOptionError

ProgressCallback = apply.ProgressCallback
DEFAULT_FILENAME = options.DEFAULT_FILENAME


class Separator:
    """Separate audio into stems with a spectrogram-mask model.

    The masks come from a Keras model or from its LiteRT conversion (see :mod:`stemtf.runtimes`);
    everything else (STFT, full-band masks, Wiener filtering, chunking, files) is the same numpy code.

    Args:
        model: A Keras model from :func:`stemtf.model.build_model` (mixture magnitudes ->
            ``{stem: mask}``), or a mask predictor from :mod:`stemtf.runtimes`.
        config: The model's config.
        overlap: Overlap of neighbouring chunks, in seconds (cross-faded); default 1 s, or a quarter
            of a chunk for models with chunks shorter than 4 s.
        wiener_iterations: EM iterations of multichannel Wiener filtering after masking (0: off).
        segment_frames: STFT frames per chunk; defaults to the config's. Memory grows with it.

    A config with ``chunking: spleeter`` cuts the input as ``spleeter separate`` does
    (:meth:`separation_plan`): no overlap (``overlap`` is not used) and no Wiener filtering.

    Attributes:
        masks: The mask predictor: magnitudes ``(1, segment_frames, max_bins, C)`` -> masks
            ``(num_stems, segment_frames, max_bins, C)``.
        runtime: ``keras`` or ``litert``.

    Raises:
        OptionError: an option is out of range (the message names the keyword).
    """

    def __init__(
        self,
        model,
        config: ModelConfig,
        *,
        overlap: float | None = None,
        wiener_iterations: int = options.DEFAULT_WIENER_ITERATIONS,
        segment_frames: int | None = None,
    ) -> None:
        frames = options.check_segment_frames(segment_frames, config)
        self.overlap_samples = options.check_overlap(overlap, config, segment_frames=frames)
        options.check_wiener_iterations(wiener_iterations)
        if wiener_iterations and config.chunking == "spleeter":
            raise OptionError("wiener_iterations", "{option} needs a model with chunking 'crossfade' (this one cuts songs as "
                                                   "spleeter separate does, one STFT for the whole song).")
        if getattr(model, "runtime", None) is None:  # a Keras model: wrap it
            keras_model = model
            model = runtimes.KerasMasks(model, config, segment_frames=frames)
            self._masks_for = lambda window: runtimes.KerasMasks(keras_model, config, segment_frames=window)
        elif isinstance(model, runtimes.KerasMasks):
            self._masks_for = lambda window: runtimes.KerasMasks(model.model, config, segment_frames=window)
        else:
            self._masks_for = None  # set by from_pretrained for LiteRT
        self.masks = model
        self.runtime: str = model.runtime
        self.config = config
        self.chunk_samples = config.chunk_samples_for(frames)
        self.segment_frames = frames
        self.wiener_iterations = wiener_iterations
        self._separate_chunk = self._build_chunk_function()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = options.DEFAULT_MODEL,
        *,
        runtime: str = options.DEFAULT_RUNTIME,
        precision: str = runtimes.DEFAULT_PRECISION,
        num_threads: int | None = None,
        on_status: Callable[[str], None] | None = None,
        defer_loading: bool = False,
        **kwargs,
    ) -> "Separator":
        """Load a shipped model by name (``2stems``, ``4stems``, ``5stems``, ...) or a model directory.

        Args:
            name_or_path: The model.
            runtime: ``litert`` (no TensorFlow; the masks model is converted once and cached),
                ``keras``, or ``auto``: ``litert`` where ``ai-edge-litert`` is installed.
            precision: LiteRT weights: ``float32`` (default: matches Keras to > 120 dB), ``float16``
                (65-74 dB) or ``int8`` (faster, 22-37 dB from Keras).
            num_threads: LiteRT interpreter threads (default: every core).
            on_status: Called with a line when the model is converted to LiteRT (once per model).
            defer_loading: LiteRT: convert and load the chunk model on its first use instead of now
                (a stream with a sliding plan only uses :meth:`masks_for` models).
            **kwargs: :class:`Separator` options (``overlap``, ``wiener_iterations``, ``segment_frames``).
        """
        from stemtf.config import load_model_config

        runtimes.check_runtime(runtime, precision)
        config, directory = load_model_config(name_or_path)
        frames = options.check_segment_frames(kwargs.get("segment_frames"), config)
        if runtimes.resolve_runtime(runtime) == "litert":
            def litert_masks(window: int) -> runtimes.LiteRTMasks:
                return runtimes.load_masks(directory, config, segment_frames=window, precision=precision,
                                           num_threads=num_threads, on_status=on_status)

            if defer_loading:
                masks = runtimes.DeferredMasks(lambda: litert_masks(frames), runtime="litert")
            else:
                masks = litert_masks(frames)
            separator = cls(masks, config, **kwargs)
            separator._masks_for = litert_masks
            return separator
        from stemtf.model import load_model

        model, config = load_model(directory)
        return cls(model, config, **kwargs)

    def masks_for(self, window_frames: int):
        """A mask predictor like :attr:`masks` for windows of ``window_frames`` frames (a stream's sliding plan).

        Raises:
            ModelError: the separator was made from a LiteRT masks object directly (use ``from_pretrained``).
        """
        if self._masks_for is None:
            raise ModelError("This separator's masks model has one fixed window; make it with Separator.from_pretrained.")
        return self._masks_for(window_frames)

    @property
    def stems(self) -> tuple[str, ...]:
        """The stem names, in output order."""
        return self.config.stems

    @property
    def sample_rate(self) -> int:
        """The rate the model works at, in Hz."""
        return self.config.sample_rate

    def _build_chunk_function(self) -> Callable[[np.ndarray], np.ndarray]:
        spectral, masks, iterations = dsp.Spectral.of(self.config), self.masks, self.wiener_iterations
        return lambda chunk: dsp.separate_chunk(masks, spectral, chunk, wiener_iterations=iterations)

    def separate_chunk(self, chunk: np.ndarray) -> np.ndarray:
        """One model-format chunk float32 ``(chunk_samples, C)`` -> stems ``(num_stems, chunk_samples, C)``."""
        return self._separate_chunk(chunk)

    def chunk_plan(self) -> plans.ChunkPlan:
        """A fresh :class:`stemtf.plans.ChunkPlan` of this separator (its chunks, overlap and masks)."""
        return plans.ChunkPlan(
            self._separate_chunk, num_stems=len(self.stems), num_channels=self.config.num_channels,
            chunk_samples=self.chunk_samples, overlap_samples=self.overlap_samples,
        )

    def separation_plan(self) -> plans.ChunkPlan | plans.SpleeterPlan:
        """A fresh plan of what :meth:`separate` does: :meth:`chunk_plan`, or for a model with
        ``chunking: spleeter`` a :class:`stemtf.plans.SpleeterPlan` of ``segment_frames`` frames."""
        if self.config.chunking == "spleeter":
            return plans.SpleeterPlan(self.masks, self.config, num_stems=len(self.stems),
                                      num_channels=self.config.num_channels, segment_frames=self.segment_frames)
        return self.chunk_plan()

    def num_chunks(self, num_samples: int) -> int:
        """How many chunks (segments, for ``chunking: spleeter``) :meth:`separate` runs for ``num_samples`` model-format samples."""
        if self.config.chunking == "spleeter":
            return plans.spleeter_segments(num_samples, n_fft=self.config.n_fft, hop_length=self.config.hop_length,
                                           segment_frames=self.segment_frames)
        return dsp.num_chunks(num_samples, chunk_samples=self.chunk_samples, overlap_samples=self.overlap_samples)

    def separate_stream(
        self, reader: audio.AudioReader, *, progress: ProgressCallback | None = None
    ) -> Iterator[np.ndarray]:
        """Separate a reader at the model's sample rate and channel count, block by block.

        Yields:
            float32 ``(num_stems, n, num_channels)`` consecutive blocks; together as long as the input.
        """
        total = None if reader.num_samples is None else self.num_chunks(reader.num_samples)
        return plans.run(self.separation_plan(), reader, progress=progress, total_chunks=total)

    def _model_reader(self, reader: audio.AudioReader) -> audio.AudioReader:
        return apply.model_reader(reader, sample_rate=self.sample_rate, num_channels=self.config.num_channels)

    def separate(
        self,
        waveform: np.ndarray,
        sample_rate: int,
        *,
        groups: Mapping[str, Sequence[str]] | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, np.ndarray]:
        """Separate an in-memory waveform.

        Args:
            waveform: float ``(num_samples, num_channels)`` with 1 or 2 channels, or ``(num_samples,)`` mono.
            sample_rate: Its sample rate in Hz; resampled to the model's and back.
            groups: ``{name: [stem, ...]}`` sums stems into one output each (``{"accompaniment":
                ["drums", "bass", "other"]}``); stems in no group are kept. None: the model's stems.
            progress: Called with ``(chunks_done, chunks_total)``.

        Returns:
            ``{stem or group: waveform}`` with the input's shape, rate and dtype float32.

        Raises:
            OptionError: a group names an unknown stem, or a stem is in two groups.
        """
        plan = self._plan(groups)
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
        stems = _apply_plan(np.concatenate(blocks, axis=1), plan)
        result = {}
        for index, stem in enumerate(name for name, _ in plan):
            out = apply.from_model_format(
                stems[index], model_rate=self.sample_rate, sample_rate=sample_rate, num_channels=num_channels,
                num_samples=num_samples,
            )
            result[stem] = out[:, 0] if squeeze else out
        return result

    def _plan(self, groups: Mapping[str, Sequence[str]] | None) -> list[tuple[str, tuple[int, ...]]]:
        """``[(output name, model stem indices summed into it)]``: the stems themselves without groups."""
        return options.check_groups(groups, self.stems) or [(stem, (index,)) for index, stem in enumerate(self.stems)]

    def output_paths(
        self,
        path: str | os.PathLike,
        *,
        output_dir: str | os.PathLike = options.DEFAULT_OUTPUT_DIR,
        filename: str = DEFAULT_FILENAME,
        fmt: str = options.DEFAULT_FORMAT,
        groups: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, pathlib.Path]:
        """Where :meth:`separate_file` writes each stem of ``path``; always inside ``output_dir``.

        A track name made only of dots (an input named ``...wav``) would make ``{track}`` mean the
        folder itself or its parent, so its dots become underscores (``__``).

        Raises:
            OutputOptionError: ``filename`` is not a usable template or a path would leave ``output_dir``.
        """
        options.check_filename(filename)
        track = pathlib.Path(path).stem
        if not track.strip("."):
            track = "_" * len(track)
        fields = {"track": track, "ext": fmt, "model": self.config.name}
        targets = {}
        for stem, _ in self._plan(groups):
            relative = filename.format(stem=stem, **fields)
            options.check_output_path(filename, relative)
            targets[stem] = pathlib.Path(output_dir) / relative
        return targets

    def separate_file(
        self,
        path: str | os.PathLike,
        *,
        output_dir: str | os.PathLike = options.DEFAULT_OUTPUT_DIR,
        filename: str = DEFAULT_FILENAME,
        fmt: str = options.DEFAULT_FORMAT,
        bit_depth: int = options.DEFAULT_BIT_DEPTH,
        bitrate: int | None = None,
        offset: float = options.DEFAULT_OFFSET,
        duration: float | None = None,
        overwrite: bool = False,
        groups: Mapping[str, Sequence[str]] | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, pathlib.Path]:
        """Separate an audio file into one file per stem (or group of stems).

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
            groups: ``{name: [stem, ...]}`` sums stems into one file each; stems in no group are
                written as themselves (see :meth:`separate`).
            progress: Called with ``(chunks_done, chunks_total)``.

        Returns:
            ``{stem or group: path}`` of the written files.

        Raises:
            AudioError: the input cannot be read.
            OutputError: an output exists (without ``overwrite``) or cannot be written.
        """
        options.check_output(fmt, bit_depth, bitrate)
        options.check_offset(offset)
        options.check_duration(duration)
        plan = self._plan(groups)
        targets = self.output_paths(path, output_dir=output_dir, filename=filename, fmt=fmt, groups=groups)
        if not overwrite:
            existing = [p for p in targets.values() if p.exists()]
            if existing:
                raise outputs.exists_error(existing[0])
        outputs.remove_stale_temporaries(targets.values())  # what a killed run left next to these outputs
        source = audio.open_audio(path, offset=offset)
        try:
            source = audio.FiniteReader(source, f"Input {str(path)!r}")
            if duration is not None:
                source = audio.LimitedReader(source, int(round(duration * source.sample_rate)))
            writer_options = dict(sample_rate=source.sample_rate, num_channels=source.num_channels, fmt=fmt,
                                  bit_depth=bit_depth, bitrate=bitrate, input_rate=self.sample_rate)
            return self._write(source, targets, plan, writer_options, overwrite=overwrite, progress=progress)
        finally:
            source.close()

    def _write(self, source: audio.AudioReader, targets: dict[str, pathlib.Path], plan, writer_options: dict, *,
               overwrite: bool, progress: ProgressCallback | None) -> dict[str, pathlib.Path]:
        """Separate ``source`` into ``targets``: all of them in place, or none (and no folder this made)."""
        writers: list[audio.AudioWriter] = []
        created: list[pathlib.Path] = []  # folders this call made: removed again if it fails
        committed: list[pathlib.Path] = []
        channels = source.num_channels
        try:
            for target in targets.values():
                writers.append(_open_writer(target, created, **writer_options))
            for block in self.separate_stream(self._model_reader(source), progress=progress):
                for writer, stem_block in zip(writers, _apply_plan(block, plan)):
                    writer.write(audio.convert_channels(stem_block, channels))
            for writer in writers:
                writer.write(np.zeros((0, channels), np.float32), last=True)
            for writer in writers:
                # Each move refuses to replace a file that appeared since the check above (another
                # process writing the same outputs), unless overwrite: the first writer's files survive.
                committed.append(writer.commit(overwrite=overwrite))
            return dict(zip(targets, committed))
        except BaseException:
            for writer in writers:
                writer.abort()
            for done in committed:  # this track's earlier stems: a track is written whole or not at all
                done.unlink(missing_ok=True)
            outputs.remove_folders(created)
            raise


def _open_writer(target: pathlib.Path, created: list[pathlib.Path], **options) -> audio.AudioWriter:
    """A writer of ``target``, its folders made (and added to ``created``); one-line errors."""
    try:
        created += outputs.make_folders(target.parent)
    except OSError as error:
        raise OutputError(f"Cannot create output folder {str(target.parent)!r}: {error.strerror}.") from error
    if target.is_dir():
        raise OutputOptionError("filename", f"Output {str(target)!r} is a directory; choose another {{option}}.")
    try:
        return audio.AudioWriter(target, **options)
    except PermissionError as error:
        raise OutputOptionError(
            "output_dir", f"Cannot write to {str(target.parent)!r} (permission denied); choose another {{option}}."
        ) from error
    except OSError as error:
        raise outputs.disk_error(target, error) from error


def _apply_plan(stems: np.ndarray, plan: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    """``(num_stems, n, C)`` -> ``(num_outputs, n, C)``: each output the sum of its stems (stems sum to the mixture, so groups do too)."""
    if len(plan) == stems.shape[0] and all(indices == (index,) for index, (_, indices) in enumerate(plan)):
        return stems
    return np.stack([stems[list(indices)].sum(axis=0) for _, indices in plan])
