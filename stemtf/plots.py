"""Pictures of separations: spectrograms of a mixture and its stems, masks, and SDR bar charts.

Everything here draws on a :class:`matplotlib.figure.Figure` made without ``pyplot`` (no global
figure state, no GUI backend), so it works in scripts, servers, the CLI and notebooks alike
(in a notebook, ``display(figure)`` shows it). matplotlib is optional and imported on first use;
without it :func:`check_available` raises a one-line error naming the extra to install.

Spectrograms are summarised before they are drawn, so a picture of a 10-minute song costs little
more than a picture of 10 seconds: the power of the STFT frames is averaged into at most
``num_columns`` time columns and into ``num_rows`` log-spaced frequency rows, reading the audio
block by block (flat memory). A long input has far more frames than a picture has columns, so its
hop grows to half a window (Hann windows half overlapping still weigh every sample alike: no drum
hit falls between two frames), which halves the transforms of ``separate --plot``.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import numpy as np

from stemtf import audio
from stemtf.errors import MissingExtraError, install_hint

PLOT_N_FFT = 2048
PLOT_HOP_LENGTH = 512
MIN_FREQUENCY = 30.0
DB_RANGE = 80.0
FREQUENCY_TICKS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
_BLOCK = 1 << 18  # samples decoded at a time: ~2 MB of stereo float32
# Inputs with at least this many STFT frames per time column are transformed at a hop of half a window.
FRAMES_PER_COLUMN = 4


def check_available() -> None:
    """Raise :class:`~stemtf.errors.MissingExtraError` (one line) unless matplotlib is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"Plots need matplotlib: {install_hint('plots')} (from the stemtf folder).") from None


def _figure(width: float, height: float):
    check_available()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


# ----------------------------------------------------------------------------------------------------------
# Summarised spectrograms


def log_frequency_edges(sample_rate: int, *, num_rows: int = 256, min_frequency: float = MIN_FREQUENCY) -> np.ndarray:
    """``num_rows + 1`` log-spaced row edges in Hz, from ``min_frequency`` to the Nyquist frequency."""
    return np.geomspace(min_frequency, sample_rate / 2, num_rows + 1)


def _to_log_rows(power: np.ndarray, bin_frequencies: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Linear-bin power ``(T, bins)`` -> log-spaced rows ``(T, rows)``: the mean of the bins in each row.

    Low rows are narrower than one bin; they take the power interpolated at their centre instead,
    so the picture has no empty stripes at the bottom.
    """
    cumulative = np.concatenate([np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)], axis=1)
    low = np.searchsorted(bin_frequencies, edges[:-1], side="left")
    high = np.searchsorted(bin_frequencies, edges[1:], side="left")
    count = high - low
    means = (cumulative[:, high] - cumulative[:, low]) / np.maximum(count, 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    interpolated = np.stack([np.interp(centres, bin_frequencies, frame) for frame in power]) if power.size else means
    return np.where(count > 0, means, interpolated)


def spectrogram_rows(
    reader: audio.AudioReader,
    num_samples: int,
    *,
    num_columns: int = 1000,
    num_rows: int = 256,
    n_fft: int = PLOT_N_FFT,
    hop_length: int = PLOT_HOP_LENGTH,
) -> np.ndarray:
    """The power spectrogram of a reader, summarised for a picture, reading it block by block.

    Args:
        reader: Any :class:`stemtf.audio.AudioReader`; it is read to the end (or ``num_samples``).
        num_samples: How many samples it holds (sets the time columns).
        num_columns: Most time columns; every column averages the power of the frames it covers.
        num_rows: Log-spaced frequency rows (see :func:`log_frequency_edges`).
        n_fft, hop_length: The STFT (Hann window).

    Returns:
        float64 ``(columns, num_rows)`` power, averaged over channels (not a downmix, which would
        cancel anything out of phase between the channels).
    """
    all_frames = max(1, 1 + (num_samples - n_fft) // hop_length) if num_samples >= n_fft else 1
    columns = max(1, min(num_columns, all_frames))
    # Long inputs: a hop of half a window (Hann windows half overlapping cover every sample alike).
    hop = max(hop_length, n_fft // 2) if all_frames >= columns * FRAMES_PER_COLUMN else hop_length
    num_frames = max(1, 1 + (num_samples - n_fft) // hop) if num_samples >= n_fft else 1
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    power = np.zeros((columns, n_fft // 2 + 1))
    counts = np.zeros(columns)
    buffer = np.zeros((0, reader.num_channels), np.float32)
    frame, remaining = 0, num_samples

    def add(frames: np.ndarray) -> None:  # frames: (T, C, n_fft)
        nonlocal frame
        spectrum = np.fft.rfft(frames * window, axis=-1)  # float32 in, complex64 out
        frame_power = (np.square(spectrum.real) + np.square(spectrum.imag)).mean(axis=1)
        index = np.minimum((frame + np.arange(frames.shape[0])) * columns // num_frames, columns - 1)
        # Frames come in time order, so each column's frames are one run: sum the runs.
        targets, starts = np.unique(index, return_index=True)
        power[targets] += np.add.reduceat(frame_power, starts, axis=0)
        counts[targets] += np.diff(np.append(starts, index.size))
        frame += frames.shape[0]

    while remaining > 0:
        block = reader.read(min(_BLOCK, remaining))
        if block.shape[0] == 0:
            break
        remaining -= block.shape[0]
        buffer = np.concatenate([buffer, block.astype(np.float32)])
        if buffer.shape[0] >= n_fft:
            frames = np.lib.stride_tricks.sliding_window_view(buffer, n_fft, axis=0)[::hop]
            add(frames)
            buffer = buffer[frames.shape[0] * hop :]
    if frame == 0:  # shorter than one window: one zero-padded frame
        padded = np.pad(buffer, ((0, n_fft - buffer.shape[0]), (0, 0)))
        add(padded.T[None])
    power /= np.maximum(counts, 1)[:, None]
    frequencies = np.arange(n_fft // 2 + 1) * reader.sample_rate / n_fft
    return _to_log_rows(power, frequencies, log_frequency_edges(reader.sample_rate, num_rows=num_rows))


def waveform_rows(waveform: np.ndarray, sample_rate: int, **kwargs) -> np.ndarray:
    """:func:`spectrogram_rows` of an in-memory waveform ``(num_samples, num_channels)`` or ``(num_samples,)``."""
    waveform = np.asarray(waveform, np.float32)
    waveform = waveform[:, None] if waveform.ndim == 1 else waveform
    return spectrogram_rows(audio.ArrayReader(waveform, sample_rate), waveform.shape[0], **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Figures


def _log_frequency_axis(axis, edges: np.ndarray) -> None:
    axis.set_yscale("log")
    axis.set_ylim(edges[0], edges[-1])
    ticks = [tick for tick in FREQUENCY_TICKS if edges[0] <= tick <= edges[-1]]
    axis.set_yticks(ticks, [f"{tick // 1000}k" if tick >= 1000 else str(tick) for tick in ticks])
    axis.minorticks_off()
    axis.set_ylabel("frequency (Hz)")


def spectrogram_figure(
    panels: Mapping[str, np.ndarray], *, sample_rate: int, duration: float, start: float = 0.0, title: str = "",
    db_range: float = DB_RANGE,
):
    """One log-frequency spectrogram panel per entry, on one dB scale whose 0 is the loudest value of the first.

    Args:
        panels: ``{label: power (columns, rows)}`` from :func:`spectrogram_rows`, first the mixture.
        sample_rate: In Hz (sets the frequency rows).
        duration: Seconds the columns span.
        start: Time of the first column in seconds (the input's time, after an offset).
        title: Figure title.
        db_range: dB below the reference shown (darker is clipped).

    Returns:
        A :class:`matplotlib.figure.Figure`.
    """
    if not panels:
        raise ValueError("Argument `panels` must hold at least one spectrogram.")
    first = next(iter(panels.values()))
    reference = 10 * np.log10(max(float(first.max()), 1e-20))
    figure = _figure(10, 1.1 + 1.55 * len(panels))
    axes = figure.subplots(len(panels), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    edges = log_frequency_edges(sample_rate, num_rows=first.shape[1])
    image = None
    for axis, (label, power) in zip(axes, panels.items()):
        times = start + np.linspace(0, duration, power.shape[0] + 1)
        decibels = 10 * np.log10(np.maximum(power, 1e-20)) - reference
        image = axis.pcolormesh(times, edges, decibels.T, cmap="magma", vmin=-db_range, vmax=0, shading="flat")
        _log_frequency_axis(axis, edges)
        axis.set_title(label, loc="left", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    colorbar = figure.colorbar(image, ax=list(axes), shrink=0.9, pad=0.01)
    colorbar.set_label(f"dB (0 = loudest of the {next(iter(panels))})")
    if title:
        figure.suptitle(title)
    return figure


def mask_figure(masks: Mapping[str, np.ndarray], *, sample_rate: int, n_fft: int, hop_length: int, title: str = ""):
    """One panel per stem's mask on a log frequency axis, 0 (none of the mixture) to 1 (all of it).

    Args:
        masks: ``{stem: (num_frames, num_bins)}`` or ``(num_frames, num_bins, num_channels)`` masks
            with ``num_bins = n_fft // 2 + 1`` (channels are averaged).
        sample_rate, n_fft, hop_length: The STFT the masks apply to.
        title: Figure title.
    """
    if not masks:
        raise ValueError("Argument `masks` must hold at least one mask.")
    figure = _figure(10, 1.1 + 1.55 * len(masks))
    axes = figure.subplots(len(masks), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    edges = log_frequency_edges(sample_rate)
    image = None
    for axis, (stem, mask) in zip(axes, masks.items()):
        mask = np.asarray(mask, np.float64)
        mask = mask.mean(axis=-1) if mask.ndim == 3 else mask
        frequencies = np.arange(mask.shape[1]) * sample_rate / n_fft
        rows = _to_log_rows(mask, frequencies, edges)
        times = np.arange(mask.shape[0] + 1) * hop_length / sample_rate
        image = axis.pcolormesh(times, edges, rows.T, cmap="viridis", vmin=0, vmax=1, shading="flat")
        _log_frequency_axis(axis, edges)
        axis.set_title(stem, loc="left", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    colorbar = figure.colorbar(image, ax=list(axes), shrink=0.9, pad=0.01)
    colorbar.set_label("mask (share of the mixture)")
    if title:
        figure.suptitle(title)
    return figure


def sdr_figure(scores: Mapping[str, Mapping[str, float]], *, title: str = "", metric: str = "SDR (dB)"):
    """Grouped bars: one group per stem, one bar per system (model, baselines), value labels on the bars.

    Args:
        scores: ``{system: {stem: dB}}``, e.g. ``{"4stems": {...}, "oracle": {...}, "mixture": {...}}``;
            a stem a system lacks (NaN or missing) gets no bar.
        title: Figure title.
        metric: The y axis label.
    """
    if not scores:
        raise ValueError("Argument `scores` must hold at least one system.")
    stems: list[str] = []
    for values in scores.values():
        stems += [stem for stem in values if stem not in stems]
    figure = _figure(max(5.0, 1.3 + 1.4 * len(stems)), 3.8)
    axis = figure.subplots()
    width = 0.8 / len(scores)
    colours = ("#2f6db5", "#7fb34a", "#c8752b", "#8a5fb0", "#b5402f", "#777777")
    for index, (system, values) in enumerate(scores.items()):
        heights = np.array([float(values.get(stem, np.nan)) for stem in stems])
        positions = np.arange(len(stems)) + (index - (len(scores) - 1) / 2) * width
        bars = axis.bar(positions, np.nan_to_num(heights), width, label=system, color=colours[index % len(colours)])
        for bar, height in zip(bars, heights):
            if np.isnan(height):
                bar.set_visible(False)
                continue
            axis.annotate(f"{height:.1f}", (bar.get_x() + bar.get_width() / 2, height), ha="center",
                          va="bottom" if height >= 0 else "top", fontsize=8, xytext=(0, 2 if height >= 0 else -2),
                          textcoords="offset points")
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(np.arange(len(stems)), stems)
    axis.set_ylabel(metric)
    axis.margins(y=0.15)
    axis.grid(axis="y", alpha=0.3)
    axis.set_axisbelow(True)
    axis.legend(fontsize=8, loc="best")
    if title:
        axis.set_title(title)
    return figure


def save_figure(figure, path: str | os.PathLike) -> pathlib.Path:
    """Write ``figure`` as a PNG to ``path`` atomically (a temporary file, then a rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    try:
        figure.savefig(temporary, format="png")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def figure_png(figure) -> bytes:
    """The PNG bytes of ``figure`` (for TensorBoard images)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------
# Files


def plot_separation(
    mixture: str | os.PathLike,
    stems: Mapping[str, str | os.PathLike],
    path: str | os.PathLike,
    *,
    offset: float = 0.0,
    title: str | None = None,
) -> pathlib.Path:
    """Write a PNG of the spectrograms of an input file and of its stem files (what ``stemtf separate --plot`` draws).

    Args:
        mixture: The separated input file (any format :func:`stemtf.audio.open_audio` reads).
        stems: ``{stem: file}`` of the separated stems, all of the same length and rate.
        path: The PNG to write.
        offset: Seconds of the input that were skipped (``--offset``); the input is drawn from there,
            for as long as the stems last.
        title: Figure title (default: the input's file name).

    Returns:
        ``path``.
    """
    check_available()
    panels: dict[str, np.ndarray] = {}
    lengths: list[int] = []
    rate = None
    for stem, stem_path in stems.items():
        reader = audio.open_audio(stem_path)
        try:
            rate = reader.sample_rate
            length = reader.num_samples if reader.num_samples is not None else audio.probe_audio(stem_path).num_samples
            lengths.append(int(length or 0))
            panels[stem] = spectrogram_rows(reader, lengths[-1])
        finally:
            reader.close()
    if rate is None:
        raise ValueError("Argument `stems` must name at least one stem file.")
    length = min(lengths)
    source = audio.open_audio(mixture, offset=offset)
    try:
        # Stems are written at the input's rate; resample only for stems from elsewhere, then cut to their length.
        reader = source if source.sample_rate == rate else audio.ResamplingReader(source, rate)
        mixture_power = spectrogram_rows(audio.LimitedReader(reader, length), length)
    finally:
        source.close()
    figure = spectrogram_figure({"mixture": mixture_power, **panels}, sample_rate=rate, duration=length / rate,
                                start=offset, title=pathlib.Path(mixture).name if title is None else title)
    return save_figure(figure, path)


def plot_scores(scores: Mapping[str, Mapping[str, float]], path: str | os.PathLike, *, title: str = "",
                metric: str = "SDR (dB)") -> pathlib.Path:
    """Write :func:`sdr_figure` of ``scores`` as a PNG to ``path``."""
    return save_figure(sdr_figure(scores, title=title, metric=metric), path)



def track_plot_path(input_path: str | os.PathLike, stems: Mapping[str, str | os.PathLike]) -> pathlib.Path:
    """Where :func:`plot_track` writes: ``TRACK_spectrograms.png`` in the folder of the first stem."""
    first = pathlib.Path(next(iter(stems.values())))
    return first.parent / f"{pathlib.Path(input_path).stem}_spectrograms.png"


def plot_track(input_path: str | os.PathLike, stems: Mapping[str, str | os.PathLike], *, offset: float = 0.0) -> pathlib.Path:
    """``stemtf separate --plot``: the spectrograms of an input and its just-written stems, next to the stems.

    The picture belongs to the stems: it is rewritten whenever they are (a run that may not replace
    the stems stops before it gets here).

    Returns:
        The PNG written (see :func:`track_plot_path`).
    """
    return plot_separation(input_path, stems, track_plot_path(input_path, stems), offset=offset)
