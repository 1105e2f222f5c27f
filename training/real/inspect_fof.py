"""Measure what each Frets on Fire backing (``song.ogg``) holds, to label it only where the label is exact.

    .venv/bin/python training/real/inspect_fof.py [--model saved_models/2stems] [--json data-work/real/fof-inspect.json]

For every FoF song (and, as a calibration, for the everything-is-free songs with and without their
vocals) it prints:

* the levels of the isolated guitar and of the backing, and how much of the guitar the backing
  already holds (least-squares gain of the guitar in the backing: ~0 means the backing is the band
  without the lead guitar, so backing + guitar is the full song);
* where the backing's energy sits (share below 150 Hz: kick and bass; 150 Hz - 2 kHz; above 2 kHz);
* the share of the backing that a 4-stem model puts in each stem (a rough description);
* a rough vocal detector: the shipped ``2stems`` model's vocal estimate on the backing, as its level
  relative to the accompaniment estimate over the whole song and in the loudest 10 % of 1 s windows.
  The EIF rows show what the detector reads on real instrumental music (its false-positive floor)
  and on songs that have vocals, so the FoF numbers can be read against both.

This is an inspection tool, not part of the training data path; its conclusions (which backing is
instrumental) are written into ``training/real/sources.json`` by hand and explained in
``training/DATA_SOURCES.md``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from sources import EIF_ROOT, fof_songs  # noqa: E402


def band_shares(waveform: np.ndarray, sample_rate: int) -> tuple[float, float, float]:
    """Shares of the energy below 150 Hz, 150 Hz - 2 kHz and above 2 kHz.

    Args:
        waveform: ``(num_samples, num_channels)`` float audio.
        sample_rate: In Hz.
    """
    mono = waveform.mean(axis=1)
    # Welch-style average power spectrum over 1 s frames: a whole song in one FFT is wasteful.
    frame = sample_rate
    frames = mono[: len(mono) // frame * frame].reshape(-1, frame)
    power = (np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(frame, 1 / sample_rate)
    total = power.sum() + 1e-20
    return (float(power[freqs < 150].sum() / total), float(power[(freqs >= 150) & (freqs < 2000)].sum() / total),
            float(power[freqs >= 2000].sum() / total))


def db(x: float) -> float:
    return float(10 * np.log10(max(x, 1e-20)))


def vocal_profile(separator, waveform: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Vocal estimate of a 2-stem model relative to its accompaniment estimate, in dB.

    Returns the whole-song ratio and the 90th percentile over 1 s windows (vocals come and go, so
    a song with a sung part shows it in its loudest windows).
    """
    stems = separator.separate(waveform, sample_rate)
    vocals, accompaniment = stems["vocals"], stems["accompaniment"]
    n = len(vocals) // sample_rate * sample_rate
    v = (vocals[:n] ** 2).reshape(-1, sample_rate * vocals.shape[1]).mean(axis=1)
    a = (accompaniment[:n] ** 2).reshape(-1, sample_rate * accompaniment.shape[1]).mean(axis=1)
    loud = a + v > 1e-3 * np.max(a + v)  # ignore near-silent windows (fades, breaks)
    ratios = 10 * np.log10((v[loud] + 1e-12) / (a[loud] + 1e-12))
    return {"vocal_to_accompaniment_db": db(float(np.sum(vocals**2)) / float(np.sum(accompaniment**2) + 1e-20)),
            "vocal_p90_window_db": float(np.percentile(ratios, 90)), "vocal_max_window_db": float(ratios.max())}


def stem_shares(separator, waveform: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Level of each stem a 4-stem model estimates in ``waveform``, in dB relative to the whole.

    A rough description of what a backing holds (drums? bass? other parts?), not a label.
    """
    stems = separator.separate(waveform, sample_rate)
    total = float(np.sum(waveform**2)) + 1e-20
    return {f"{stem}_share_db": db(float(np.sum(x**2)) / total) for stem, x in stems.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "saved_models" / "2stems"))
    parser.add_argument("--stems-model", default=str(REPO / "saved_models" / "4stems"),
                        help="4-stem model whose estimates describe each backing")
    parser.add_argument("--json", default=None, help="write the numbers here")
    parser.add_argument("--no-calibration", action="store_true", help="skip the everything-is-free rows")
    args = parser.parse_args()

    from stemtf.separator import Separator

    separator = Separator.from_pretrained(args.model)
    describer = Separator.from_pretrained(args.stems_model)
    rows = []
    for song in fof_songs():
        guitar, rate = sf.read(song.guitar, dtype="float32", always_2d=True)
        backing, _ = sf.read(song.backing, dtype="float32", always_2d=True)
        gain = float(np.sum(backing * guitar) / (np.sum(guitar**2) + 1e-20))
        low, mid, high = band_shares(backing, rate)
        row = {"source": song.package, "song": song.name,
               "guitar_rms_db": db(float(np.mean(guitar**2))), "backing_rms_db": db(float(np.mean(backing**2))),
               "guitar_gain_in_backing": gain, "backing_below_150hz": low, "backing_150hz_2khz": mid,
               "backing_above_2khz": high, **vocal_profile(separator, backing, rate),
               **stem_shares(describer, backing, rate)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not args.no_calibration:
        for folder in sorted(p for p in EIF_ROOT.iterdir() if p.is_dir()):
            stems = {p.stem: sf.read(p, dtype="float32", always_2d=True) for p in folder.glob("*.ogg")}
            rate = next(iter(stems.values()))[1]
            instrumental = sum(x for name, (x, _) in stems.items() if name != "vocals")
            for label, waveform in (("without vocals", instrumental), ("full mix", instrumental + stems["vocals"][0])):
                row = {"source": "everything-is-free (calibration)", "song": f"{folder.name}, {label}",
                       **vocal_profile(separator, waveform, rate)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
