"""Measure separation quality: the SDR of each whole track first, then museval's (BSS-eval v4) windows.

Every track is separated (or, for the baselines, estimated by the ideal ratio mask or by the
unprocessed mixture) and scored twice:

- the SDR of each stem over the whole track (the MDX challenge's global SDR, ``cSDR``): one
  number per stem that every part of the song counts towards, and what to read first;
- museval's SDR/SIR/ISR/SAR on 1 s windows, written as museval's per-track JSON, aggregated as
  SiSEC does (the median over windows of each track, then the median over tracks).

Windows in which a reference stem is near-silent are left out of museval's columns (BSS-eval's
ratios are degenerate there; :mod:`stemtf.scoring` scores each track and says why), and the CLI
says how many windows were scored, or that none could be.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stemtf import options
from stemtf.config import ModelConfig
from stemtf.errors import DataError, OptionError

# The per-track scores live in stemtf.scoring; their names stay importable from here.
from stemtf.scoring import (  # noqa: F401
    AUDIBLE_DBFS,
    DITHER_DBFS,
    audible_windows,
    check_dependencies,
    museval_module,
    oracle_estimates,
    score_track,
    sdr,
)

BASELINES = options.EVALUATION_BASELINES
METRICS = ("SDR", "SIR", "ISR", "SAR")
GLOBAL_SDR = "cSDR"


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



def evaluate_tracks(
    tracks: Sequence,
    *,
    stems: Sequence[str],
    sample_rate: int,
    num_channels: int = ModelConfig.num_channels,
    separator=None,
    baseline: str = "model",
    output_dir: str | os.PathLike | None = None,
    n_fft: int = ModelConfig.n_fft,
    hop_length: int = ModelConfig.hop_length,
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
    museval = museval_module()
    _check_request(tracks, baseline=baseline, separator=separator, baseline_scores=baseline_scores)
    baseline_sdr: dict[str, dict[str, dict[str, float]]] = {other: {} for other in baseline_scores if other != baseline}
    if output_dir is not None:
        output_dir = pathlib.Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    results = museval.EvalStore(frames_agg="median", tracks_agg="median")
    global_sdr: dict[str, dict[str, float]] = {}
    windows: dict[str, tuple[int, int]] = {}
    estimate = functools.partial(_estimates, stems=stems, separator=separator, n_fft=n_fft, hop_length=hop_length,
                                 sample_rate=sample_rate)
    for done, track in enumerate(tracks):
        mixture, references = _read_track(track, stems=stems, sample_rate=sample_rate, num_channels=num_channels,
                                          duration=duration)
        estimates = estimate(baseline, mixture, references)
        store = score_track(
            track.name, dict(zip(stems, references)), dict(zip(stems, estimates)), sample_rate=sample_rate
        )
        global_sdr[track.name] = _global_sdr(stems, references, estimates)
        for other, per_track in baseline_sdr.items():
            per_track[track.name] = _global_sdr(stems, references, estimate(other, mixture, references))
        frames = store.df[store.df.metric == "SDR"].groupby("target")["score"]
        windows[track.name] = (int(frames.count().max()), int(frames.size().max()))
        if output_dir is not None:
            _write_track_json(store, output_dir, track.name)
        results.add_track(store.df)
        if progress is not None:
            progress(done + 1, len(tracks), track.name)
    return Evaluation(results, global_sdr, windows, baseline_sdr)


def _check_request(tracks: Sequence, *, baseline: str, separator, baseline_scores: Sequence[str]) -> None:
    """Refuse what :func:`evaluate_tracks` cannot score, before any track is read."""
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


def _read_track(track, *, stems: Sequence[str], sample_rate: int, num_channels: int,
                duration: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``(mixture, references)`` of a track's first ``duration`` seconds (None: all of it), at ``sample_rate``:
    ``(num_samples, num_channels)`` and ``(num_stems, num_samples, num_channels)``."""
    from stemtf.data import read_crop

    length = round(track.num_samples * sample_rate / track.sample_rate)
    if duration is not None:
        length = min(length, int(duration * sample_rate))
    crop = read_crop(track, 0, length, sample_rate=sample_rate, num_channels=num_channels, stems=stems)
    return crop[0], crop[1:]


def _global_sdr(stems: Sequence[str], references: np.ndarray, estimates: np.ndarray) -> dict[str, float]:
    """``{stem: cSDR}`` of the stems whose reference is not digital silence (a silent one has no SDR)."""
    present = [i for i, _ in enumerate(stems) if np.any(references[i])]
    scores = sdr(references[present], estimates[present])
    return {stems[i]: float(score) for i, score in zip(present, scores)}


def _write_track_json(store, output_dir: pathlib.Path, name: str) -> None:
    """museval's per-track JSON as ``OUTPUT_DIR/<track>.json``, written whole (a temporary file, then renamed)."""
    safe = name.replace(os.sep, "_")  # CSV track names are relative paths
    tmp = output_dir / f".{safe}.json.tmp"
    tmp.write_text(store.json)
    os.replace(tmp, output_dir / f"{safe}.json")


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
