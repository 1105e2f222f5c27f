"""Measure separation quality: the SDR of each whole track first, then museval's (BSS-eval v4) windows.

Every track is separated (or, for the baselines, estimated by the ideal ratio mask or by the
unprocessed mixture) and scored twice:

- the SDR of each stem over the whole track (the MDX challenge's global SDR, ``cSDR``): one
  number per stem that every part of the song counts towards, and what to read first;
- museval's SDR/SIR/ISR/SAR on 1 s windows, written as museval's per-track JSON, aggregated as
  SiSEC does (the median over windows of each track, then the median over tracks).

BSS-eval's ratios are only meaningful where every reference stem is audible: on a window where one
stem is near-silent (real songs: stems come and go; lossy files decode silence as faint noise) its
decomposition divides by almost nothing and prints numbers like -30 dB SDR or a SAR of 0.00 for
every stem. Such windows are left out (NaN in the JSON, as museval leaves out digitally silent
ones), and the CLI says how many windows were scored, or that none could be. The references are
also given a faint seeded dither (-100 dBFS) for the decomposition: band-limited references (lossy
files, stems recorded at 24 kHz) otherwise make its least-squares filters singular, and SIR/SAR/ISR
come out as numerical noise while the SDR is unaffected.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stemtf import options
from stemtf.errors import DataError, DependencyError, OptionError

BASELINES = options.EVALUATION_BASELINES
METRICS = ("SDR", "SIR", "ISR", "SAR")
GLOBAL_SDR = "cSDR"
# A window is scored by museval only when every reference stem in it is at least this loud (RMS, dB
# re full scale); quieter references make BSS-eval's ratios degenerate.
AUDIBLE_DBFS = -60.0
# The faint white noise added to the references for BSS-eval's decomposition (RMS, dB re full scale).
DITHER_DBFS = -100.0


@dataclasses.dataclass
class Evaluation:
    """The scores of :func:`evaluate_tracks`.

    Attributes:
        store: ``museval.EvalStore`` with every track's frames.
        global_sdr: ``{track: {stem: dB}}`` MDX-style SDR over each whole track.
        windows: ``{track: (scored windows, all windows)}``: how many windows museval scored
            (those in which every reference stem is audible).
    """

    store: Any
    global_sdr: dict[str, dict[str, float]]
    windows: dict[str, tuple[int, int]]
    baseline_sdr: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict)

    def table(self) -> dict[str, dict[str, float]]:
        """``{stem: {metric: value}}``: SiSEC's medians for museval's metrics, the median over tracks for cSDR."""
        out = aggregate(self.store)
        stems = {stem for track in self.global_sdr.values() for stem in track}
        for stem in stems:
            values = [track[stem] for track in self.global_sdr.values() if stem in track]
            out.setdefault(stem, {})[GLOBAL_SDR] = float(np.median(values))
        return out

    def global_sdr_medians(self, name: str = "model") -> dict[str, dict[str, float]]:
        """``{system: {stem: median over tracks of cSDR}}``: ``name`` first, then every baseline scored alongside."""
        systems = {name: self.global_sdr, **self.baseline_sdr}
        out: dict[str, dict[str, float]] = {}
        for system, per_track in systems.items():
            stems = list(dict.fromkeys(stem for track in per_track.values() for stem in track))
            out[system] = {stem: float(np.median([t[stem] for t in per_track.values() if stem in t])) for stem in stems}
        return out

    def coverage(self) -> float:
        """Share of all windows that museval scored (the rest had a near-silent reference stem)."""
        scored, total = self.window_counts()
        return scored / total if total else 0.0

    def window_counts(self) -> tuple[int, int]:
        """``(scored, total)`` windows over every track."""
        return sum(s for s, _ in self.windows.values()), sum(t for _, t in self.windows.values())

    def coverage_note(self, *, window: float = 1.0) -> str:
        """One sentence saying what share of the song museval's columns stand for, or that they stand for none."""
        scored, total = self.window_counts()
        why = (f"the others have a near-silent stem (below {AUDIBLE_DBFS:g} dBFS), where BSS-eval's ratios "
               "are degenerate")
        if scored == 0:
            return (f"museval scored none of the {total} windows ({window:g} s): every one has a near-silent stem "
                    f"(below {AUDIBLE_DBFS:g} dBFS), where BSS-eval's ratios are degenerate; read the whole-track SDR.")
        return f"museval scored {scored} of the {total} windows ({window:g} s), {scored / total:.0%}; {why}."


def check_dependencies() -> None:
    """Fail at once, with the extra to install, when museval is missing (before any track is separated)."""
    _museval()


def _museval():
    try:
        import museval
    except ImportError:
        raise DependencyError("Evaluation", "museval", "eval") from None
    return museval


def sdr(references: np.ndarray, estimates: np.ndarray, *, epsilon: float = 1e-8) -> np.ndarray:
    """The fast global SDR of the MDX challenge, in dB, per source.

    Args:
        references: ``(num_sources, num_samples, num_channels)``.
        estimates: Same shape.

    Returns:
        ``(num_sources,)`` ``10 log10(|s|^2 / |s - s_hat|^2)``.
    """
    references, estimates = np.asarray(references, np.float64), np.asarray(estimates, np.float64)
    signal = np.sum(references**2, axis=(-2, -1))
    noise = np.sum((references - estimates) ** 2, axis=(-2, -1))
    return 10 * np.log10((signal + epsilon) / (noise + epsilon))


def oracle_estimates(
    mixture: np.ndarray, references: np.ndarray, *, n_fft: int = 4096, hop_length: int = 1024
) -> np.ndarray:
    """Ideal ratio masks (stem magnitude / sum of magnitudes, every bin) applied to the mixture.

    The upper limit of any magnitude-masking model with these STFT settings.

    Args:
        mixture: ``(num_samples, num_channels)``.
        references: ``(num_sources, num_samples, num_channels)`` true stems.

    Returns:
        ``(num_sources, num_samples, num_channels)``.
    """
    import tensorflow as tf

    from stemtf import apply

    transform = apply.ComplexTransform(n_fft=n_fft, hop_length=hop_length)

    # One stem at a time (two passes): whole songs with all stems at once take tens of GB.
    def magnitude(waveform: np.ndarray) -> tf.Tensor:
        return transform.magnitude(transform.analyze(waveform)) + 1e-10

    total = tf.add_n([magnitude(reference) for reference in references])
    mixture_stft = transform.analyze(mixture)
    estimates = np.empty(references.shape, np.float32)
    for index, reference in enumerate(references):
        (estimate,) = apply.masks_to_stems(
            transform, mixture_stft, [magnitude(reference) / total], num_samples=mixture.shape[0]
        )
        estimates[index] = estimate.numpy()
    return estimates


def load_tracks(
    data: str | os.PathLike,
    *,
    stems: Sequence[str],
    stem_groups=None,
    musdb: bool = False,
    subset: str = "test",
    names: Sequence[str] | None = None,
) -> list:
    """The tracks to evaluate: a folder of stems, a CSV manifest, or (``musdb=True``) a MUSDB18 subset.

    Args:
        names: Keep only these tracks (None: all).

    Raises:
        DataError: the data cannot be read.
        OptionError: a name is not one of its tracks.
    """
    from stemtf import data as data_lib

    if musdb:
        tracks = data_lib.musdb_tracks(data, stems=stems, stem_groups=stem_groups, subset=subset)
    elif data_lib.detect_layout(data) == "csv":
        tracks = data_lib.csv_tracks(data, stems=stems, stem_groups=stem_groups)
    else:  # only the named folders are read: another track's files cannot fail the evaluation
        return data_lib.folder_tracks(data, stems=stems, stem_groups=stem_groups, names=names or None,
                                      require_every_stem=not names)
    if names:
        known = {t.name for t in tracks}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise OptionError("names", f"{{option}} {unknown[0]!r} is not in the data; tracks: {', '.join(sorted(known))}.")
        tracks = [t for t in tracks if t.name in names]
    return tracks


def audible_windows(references: np.ndarray, *, window: int, hop: int, threshold_dbfs: float = AUDIBLE_DBFS) -> np.ndarray:
    """Which of museval's windows have every reference stem audible.

    Args:
        references: ``(num_sources, num_samples, num_channels)``.
        window, hop: In samples, as museval frames them.
        threshold_dbfs: The quietest RMS (dB re full scale) a reference may have in a scored window.

    Returns:
        ``(num_windows,)`` booleans, one per window museval evaluates.
    """
    num_samples = references.shape[1]
    num_windows = (num_samples - window + hop) // hop if window < num_samples else 1
    audible = np.zeros(num_windows, bool)
    floor = 10 ** (threshold_dbfs / 10)
    for index in range(num_windows):
        segment = references[:, index * hop: min(index * hop + window, num_samples)]
        audible[index] = bool(np.all(np.mean(np.square(segment, dtype=np.float64), axis=(1, 2)) >= floor))
    return audible


def score_track(
    name: str,
    references: dict[str, np.ndarray],
    estimates: dict[str, np.ndarray],
    *,
    sample_rate: int,
    window: float = 1.0,
    hop: float = 1.0,
):
    """Score one track's estimates with museval on the windows where every reference stem is audible.

    Silent reference stems are left out; windows where a present stem is near-silent (below
    :data:`AUDIBLE_DBFS`) are NaN, like museval's silent windows; see the module's notes.

    Args:
        name: Track name (kept in the JSON).
        references: ``{stem: (num_samples, num_channels)}`` true stems.
        estimates: ``{stem: (num_samples, num_channels)}``, same stems and shapes.
        sample_rate: In Hz; windows are ``window`` seconds long, ``hop`` seconds apart.

    Returns:
        A ``museval.TrackStore`` (its ``.json`` is museval's per-track format).
    """
    museval = _museval()
    store = museval.TrackStore(track_name=name, win=window, hop=hop)
    present = [stem for stem in references if np.any(references[stem])]
    if not present:
        raise DataError(f"Track {name!r} has no non-silent stem to score.")
    refs = np.stack([references[s] for s in present]).astype(np.float64)
    ests = np.stack([estimates[s] for s in present]).astype(np.float64)
    win, step = int(window * sample_rate), int(hop * sample_rate)
    audible = audible_windows(refs, window=win, hop=step)
    values = np.full((4, len(present), len(audible)), np.nan)
    if audible.any():
        rng = np.random.default_rng(0)
        dither = 10 ** (DITHER_DBFS / 20)
        if step == win:
            # Disjoint windows: BSS-eval sees only the scored ones, back to back (its distortion filters
            # are fitted on them; the rest of a long song would only cost time).
            spans = [slice(index * win, (index + 1) * win) for index in np.flatnonzero(audible)]
            scored = np.concatenate([refs[:, span] for span in spans], axis=1)
            scored = scored + dither * rng.standard_normal(scored.shape)
            guesses = np.concatenate([ests[:, span] for span in spans], axis=1)
            values[:, :, audible] = np.array(museval.evaluate(scored, guesses, win=win, hop=step), dtype=np.float64)
        else:
            # Overlapping windows: dithered where scored, digital silence elsewhere (museval skips those).
            scored = np.zeros_like(refs)
            for index in np.flatnonzero(audible):
                span = slice(index * step, min(index * step + win, refs.shape[1]))
                scored[:, span] = refs[:, span] + dither * rng.standard_normal(scored[:, span].shape)
            values = np.array(museval.evaluate(scored, ests, win=win, hop=step), dtype=np.float64)
            values[:, :, ~audible] = np.nan  # a window may reach into a skipped one
    for index, stem in enumerate(present):
        store.add_target(
            target_name=stem,
            values={metric: values[m][index].tolist() for m, metric in zip((0, 1, 2, 3), ("SDR", "ISR", "SIR", "SAR"))},
        )
    return store


def evaluate_tracks(
    tracks: Sequence,
    *,
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int = 2,
    separator=None,
    baseline: str = "model",
    output_dir: str | os.PathLike | None = None,
    n_fft: int = 4096,
    hop_length: int = 1024,
    duration: float | None = None,
    baseline_scores: Sequence[str] = (),
    progress: Callable[[int, int, str], None] | None = None,
):
    """Separate (or estimate) and score every track.

    Args:
        tracks: ``stemtf.data.Track`` objects.
        stems: The stems to score, in order.
        sample_rate: Rate the audio is read and scored at (the model's).
        num_channels: Channels read.
        separator: A :class:`stemtf.separator.Separator`; required for ``baseline="model"``.
        baseline: ``model`` (the separator's output), ``oracle`` (ideal ratio masks, the upper limit
            of masking) or ``mixture`` (every stem estimated as the unprocessed mixture: the floor).
        output_dir: Where ``<track>.json`` files in museval's format go (None: not written).
        n_fft, hop_length: STFT of the oracle masks (the model's).
        duration: Score only the first ``duration`` seconds of every track (None: whole tracks).
        baseline_scores: Other baselines (``oracle``, ``mixture``) whose global SDR (cSDR only, no
            museval: cheap) is computed on the same audio, for comparison (``Evaluation.baseline_sdr``).
        progress: Called with ``(tracks_done, tracks_total, track_name)``.

    Returns:
        An :class:`Evaluation`; ``.table()`` gives the SiSEC table plus the global SDR.
    """
    from stemtf.data import read_crop

    museval = _museval()
    options.check_baseline(baseline)
    if baseline == "model" and separator is None:
        raise ValueError("Argument `separator` is required for baseline='model'.")
    if not tracks:
        raise DataError("No tracks to evaluate.")
    partial = next((track for track in tracks if getattr(track, "partly_labelled", False)), None)
    if partial is not None:
        raise DataError(
            f"Track {partial.name!r} is partly labelled (unknown stems or sums of stems); evaluation needs every "
            "stem labelled: leave it out of the evaluation data."
        )
    for other in baseline_scores:
        options.check_baseline(other)
    baseline_sdr: dict[str, dict[str, dict[str, float]]] = {other: {} for other in baseline_scores if other != baseline}
    if output_dir is not None:
        output_dir = pathlib.Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    results = museval.EvalStore(frames_agg="median", tracks_agg="median")
    global_sdr: dict[str, dict[str, float]] = {}
    windows: dict[str, tuple[int, int]] = {}
    for done, track in enumerate(tracks):
        length = round(track.num_samples * sample_rate / track.sample_rate)
        if duration is not None:
            length = min(length, int(duration * sample_rate))
        crop = read_crop(track, 0, length, sample_rate=sample_rate, num_channels=num_channels, stems=stems)
        mixture, references = crop[0], crop[1:]
        estimates = _estimates(baseline, mixture, references, stems=stems, separator=separator, n_fft=n_fft,
                               hop_length=hop_length, sample_rate=sample_rate)
        store = score_track(
            track.name, dict(zip(stems, references)), dict(zip(stems, estimates)), sample_rate=sample_rate
        )
        present = [i for i, _ in enumerate(stems) if np.any(references[i])]
        scores = sdr(references[present], estimates[present])
        global_sdr[track.name] = {stems[i]: float(score) for i, score in zip(present, scores)}
        for other, per_track in baseline_sdr.items():
            other_estimates = _estimates(other, mixture, references, stems=stems, separator=separator, n_fft=n_fft,
                                         hop_length=hop_length, sample_rate=sample_rate)
            other_scores = sdr(references[present], other_estimates[present])
            per_track[track.name] = {stems[i]: float(score) for i, score in zip(present, other_scores)}
        frames = store.df[store.df.metric == "SDR"].groupby("target")["score"]
        windows[track.name] = (int(frames.count().max()), int(frames.size().max()))
        if output_dir is not None:
            safe = track.name.replace(os.sep, "_")  # CSV track names are relative paths
            tmp = output_dir / f".{safe}.json.tmp"
            tmp.write_text(store.json)
            os.replace(tmp, output_dir / f"{safe}.json")
        results.add_track(store.df)
        if progress is not None:
            progress(done + 1, len(tracks), track.name)
    return Evaluation(results, global_sdr, windows, baseline_sdr)


def _estimates(baseline: str, mixture: np.ndarray, references: np.ndarray, *, stems, separator, n_fft: int,
               hop_length: int, sample_rate: int) -> np.ndarray:
    """``(num_stems, num_samples, num_channels)`` estimates of one system: the model or a baseline."""
    if baseline == "model":
        separated = separator.separate(mixture, sample_rate)
        return np.stack([separated[stem] for stem in stems])
    if baseline == "oracle":
        return oracle_estimates(mixture, references, n_fft=n_fft, hop_length=hop_length)
    return np.broadcast_to(mixture, references.shape)


def aggregate(results) -> dict[str, dict[str, float]]:
    """SiSEC aggregate of an ``EvalStore``: ``{stem: {metric: median over tracks of frame medians}}``."""
    table = results.agg_frames_tracks_scores()
    out: dict[str, dict[str, float]] = {}
    for (target, metric), value in table.items():
        out.setdefault(target, {})[metric] = float(value)
    return out


def plot_global_sdr(evaluation: Evaluation, path: str | os.PathLike, *, name: str = "model", title: str = "") -> pathlib.Path:
    """Write a bar chart of the per-stem cSDR of ``name`` and of the baselines scored alongside, as a PNG.

    Needs matplotlib (``pip install ".[eval]"``). Returns ``path``.
    """
    from stemtf import plots

    return plots.plot_scores(evaluation.global_sdr_medians(name), path, title=title, metric="cSDR (dB), median over tracks")


def format_table(table: dict[str, dict[str, float]], *, title: str = "") -> str:
    """A plain-text table of :meth:`Evaluation.table`, stems as rows: the whole-track SDR first.

    museval's columns read ``-`` where no window could be scored (every window had a near-silent stem).
    """
    lines = [title] if title else []
    columns = (GLOBAL_SDR, *METRICS)
    headers = ("track SDR", *(f"{metric} (1 s)" for metric in METRICS))
    lines.append(f"{'stem':14s}" + "".join(f"{header:>11s}" for header in headers))

    def cell(value: float) -> str:
        return f"{value:11.2f}" if np.isfinite(value) else f"{'-':>11s}"

    for stem, values in table.items():
        lines.append(f"{stem:14s}" + "".join(cell(values.get(m, float("nan"))) for m in columns))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column of NaN has no mean: shown as -
            means = [np.nanmean([v.get(m, np.nan) for v in table.values()]) if table else np.nan for m in columns]
    lines.append(f"{'mean':14s}" + "".join(cell(m) for m in means))
    return "\n".join(lines)
