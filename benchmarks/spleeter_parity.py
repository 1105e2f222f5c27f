"""Parity of imported Spleeter models with Spleeter 2.4.2 itself, on the same checkpoint.

Two checks, each against Spleeter's own code running in its own venv (a subprocess: Spleeter pins
TensorFlow 2.12 and Python packages stemtf does not use):

1. **masks**: one 512-frame patch of real music's magnitudes through Spleeter's graph
   (``EstimatorSpecBuilder.masks``: its U-Nets, ratio masks and mask extension, restored from the
   checkpoint) and through the imported stemtf model (Keras, and the LiteRT masks model), every bin
   of the 2049; SNR per stem in dB (target >= 100 dB).
2. **separate**: ``spleeter separate`` and ``stemtf separate`` (Spleeter-exact mode, i.e. the imported
   config with ``mask_extension: zeros``) on the same 30 s of real music, WAV out; SNR per stem of
   stemtf's file against Spleeter's (target >= 40 dB).

Use a checkpoint whose every variable is random, batch-norm statistics included
(``../shared/peers/spleeter_make_ckpt.py --all-random``), so no term hides::

    MODEL_PATH=/work/peers-work/spleeter-parity /work/peers-work/spleeter-venv/bin/python \\
        /work/shared/peers/spleeter_make_ckpt.py --all-random 2stems 4stems 5stems
    .venv/bin/python benchmarks/spleeter_parity.py --models 2stems,4stems,5stems

``spleeter_make_ckpt.py`` keeps Spleeter's kernel initialiser, ``he_uniform(seed=50)``, whose numbers
depend only on the shape: every U-Net holds the same kernels (their batch norms differ), so a kernel
taken from the wrong U-Net would not show. ``--distinct-kernels`` redraws every kernel first (as
``benchmarks/spleeter_speed.py`` does) and checks that too.

Prints one table (and ``--json`` writes the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPLEETER_PYTHON = pathlib.Path("/work/peers-work/spleeter-venv/bin/python")
CHECKPOINTS = pathlib.Path("/work/peers-work/spleeter-parity")
SONG = pathlib.Path("/work/shared/data/everything-is-free/Caesium")

# Runs in Spleeter's venv: its masks for one magnitude patch, from its own graph code.
SPLEETER_MASKS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    from spleeter.model import EstimatorSpecBuilder
    from spleeter.utils.configuration import load_configuration

    release, checkpoint, patch_path, out_path = sys.argv[1:5]
    params = load_configuration(f"spleeter:{release}")
    patch = np.load(patch_path)  # (1, T, F, 2) magnitudes
    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.train.get_or_create_global_step()
        num_frames = patch.shape[1]
        features = {
            "mix_spectrogram": tf.constant(patch),
            # only its length is read by _build_masks (the crop of the padded masks)
            "mix_stft": tf.zeros((num_frames, params["frame_length"] // 2 + 1, 2), tf.complex64),
        }
        builder = EstimatorSpecBuilder(features, params)
        masks = builder.masks
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, tf.train.latest_checkpoint(checkpoint))
            values = session.run(masks)
    np.savez(out_path, **values)
    """
)


def snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - estimate|^2), in dB (inf when equal)."""
    noise = float(np.sum((np.asarray(reference, np.float64) - estimate) ** 2))
    power = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(power / noise)


def mixture(seconds: float, offset: float = 30.0) -> tuple[np.ndarray, int]:
    """``seconds`` of the real song (the sum of its stems) from ``offset``, float32 ``(L, 2)``."""
    import soundfile as sf

    total, rate = None, None
    for path in sorted(SONG.glob("*.ogg")):
        info = sf.info(path)
        rate = info.samplerate
        data, _ = sf.read(path, start=int(offset * rate), frames=int(seconds * rate), dtype="float32", always_2d=True)
        total = data if total is None else total[: len(data)] + data[: len(total)]
    return np.clip(total, -1, 1).astype(np.float32), rate


def import_model(release: str, store: pathlib.Path) -> pathlib.Path:
    from stemtf.spleeter_import import import_spleeter

    return import_spleeter(str(CHECKPOINTS / release.replace("-16kHz", "")), release=release, name=f"spleeter-{release}",
                           output_dir=store / f"spleeter-{release}", overwrite=True)


def mask_parity(release: str, model_dir: pathlib.Path, work: pathlib.Path, *, litert: bool = True) -> dict[str, float]:
    """SNR (dB) of stemtf's masks (Keras, LiteRT) against Spleeter's on one 512-frame patch, every bin."""
    from stemtf import apply
    from stemtf.model import load_model
    from stemtf.runtimes import LiteRTMasks, cached_masks_model

    model, config = load_model(model_dir)
    waveform, _ = mixture(config.chunk_samples / config.sample_rate + 1)
    spectrogram = apply.stft_numpy(waveform, n_fft=config.n_fft, hop_length=config.hop_length)[: config.segment_frames]
    patch = np.abs(spectrogram)[None, :, : config.max_bins, :].astype(np.float32)
    np.save(work / "patch.npy", patch)
    subprocess.run(
        [str(SPLEETER_PYTHON), "-c", SPLEETER_MASKS, release, str(CHECKPOINTS / release.replace("-16kHz", "")),
         str(work / "patch.npy"), str(work / "masks.npz")],
        check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    reference = np.load(work / "masks.npz")
    keras_masks = model(patch, training=False)
    runtimes = {"keras": lambda stem, index: np.asarray(keras_masks[stem])[0]}
    if litert:
        litert_masks = LiteRTMasks(cached_masks_model(model_dir, config, segment_frames=config.segment_frames, precision="float32"),
                                   config.stems)(patch)
        runtimes["litert"] = lambda stem, index: litert_masks[index]
    above = config.num_bins - config.max_bins
    result = {}
    for index, stem in enumerate(config.stems):
        theirs = reference[stem]  # (T, 2049, 2): Spleeter's masks, extended by its mask_extension
        for runtime, get in runtimes.items():
            mask = get(stem, index)
            # Spleeter-exact: zeros above max_bins (stemtf's "zeros" extension)
            full = np.concatenate([mask, np.zeros((mask.shape[0], above, mask.shape[2]), np.float32)], axis=1)
            result[f"{stem} {runtime}"] = snr(theirs, full)
        result[f"{stem} max above F"] = float(np.max(np.abs(theirs[:, config.max_bins:])))
    return result


def spleeter_grid_separation(model, config, waveform: np.ndarray) -> dict[str, np.ndarray]:
    """The imported model's stems computed on Spleeter's own grid (to locate the residual of ``stemtf separate``).

    Spleeter takes one STFT of the whole song with ``n_fft`` zeros in front (stemtf's STFT pads
    ``n_fft - hop_length``: Spleeter's frame ``k + 1`` is stemtf's frame ``k``), cuts it into
    512-frame segments without overlap (the last one zero-padded), and inverts the masked STFT once.
    Here the same with stemtf's numpy STFT (one hop of zeros more in front) and the Keras model.
    """
    from stemtf import dsp

    hop, frames = config.hop_length, config.segment_frames
    shifted = np.concatenate([np.zeros((hop, waveform.shape[1]), np.float32), waveform])
    spectrogram = dsp.stft(shifted, n_fft=config.n_fft, hop_length=hop)
    magnitude = np.abs(spectrogram)[:, : config.max_bins]
    pad = (-len(magnitude)) % frames
    magnitude = np.concatenate([magnitude, np.zeros((pad,) + magnitude.shape[1:], np.float32)])
    masks = {stem: [] for stem in config.stems}
    for start in range(0, len(magnitude), frames):
        outputs = model(magnitude[None, start : start + frames], training=False)
        for stem in config.stems:
            masks[stem].append(np.asarray(outputs[stem])[0])
    stems = {}
    for stem in config.stems:
        mask = np.concatenate(masks[stem])[: len(spectrogram)]
        full = np.concatenate([mask, np.zeros((len(mask), config.num_bins - config.max_bins, mask.shape[2]), np.float32)], axis=1)
        stems[stem] = dsp.istft(spectrogram * full, n_fft=config.n_fft, hop_length=hop, num_samples=len(shifted))[hop:]
    return stems


def separate_parity(release: str, model_dir: pathlib.Path, work: pathlib.Path, seconds: float, runtime: str) -> dict[str, float]:
    """SNR (dB) per stem of ``stemtf separate`` against ``spleeter separate`` on ``seconds`` of the song."""
    import soundfile as sf

    from stemtf.config import load_model_config

    config, _ = load_model_config(model_dir)
    waveform, rate = mixture(seconds)
    song = work / "song.wav"
    sf.write(song, waveform, rate, subtype="PCM_16")
    models = work / "spleeter-models"
    (models / release.replace("-16kHz", "")).parent.mkdir(parents=True, exist_ok=True)
    link = models / release.replace("-16kHz", "")
    if not link.exists():
        link.symlink_to(CHECKPOINTS / release.replace("-16kHz", ""))
    subprocess.run(
        [str(SPLEETER_PYTHON.parent / "spleeter"), "separate", "-p", f"spleeter:{release}", "-o", str(work / "spleeter"), str(song)],
        check=True, capture_output=True, env={**os.environ, "MODEL_PATH": str(models), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    subprocess.run(
        [sys.executable, "-m", "stemtf.cli", "separate", str(song), "-m", str(model_dir), "-o", str(work / "stemtf"),
         "--runtime", runtime, "--bit-depth", "32", "--quiet", "--overwrite"],
        check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    from stemtf.model import load_model

    model, _ = load_model(model_dir)
    song_16bit, _ = sf.read(song, dtype="float32", always_2d=True)
    grid = spleeter_grid_separation(model, config, song_16bit)
    result = {}
    for stem in config.stems:
        theirs, _ = sf.read(work / "spleeter" / "song" / f"{stem}.wav", dtype="float32", always_2d=True)
        result[f"{stem} grid"] = snr(theirs, grid[stem][: len(theirs)])
        ours, _ = sf.read(work / "stemtf" / "song" / f"{stem}.wav", dtype="float32", always_2d=True)
        length = min(len(theirs), len(ours))
        result[stem] = snr(theirs[:length], ours[:length])
        # where the differences are: Spleeter's 512-frame segments vs stemtf's cross-faded chunks
        error = np.sum((theirs[:length] - ours[:length]) ** 2, axis=1)
        seconds = np.add.reduceat(error, np.arange(0, length, rate))
        result[f"{stem} worst second"] = float(np.argmax(seconds))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="2stems,4stems,5stems")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runtime", default="keras", choices=["keras", "litert"])
    parser.add_argument("--skip-separate", action="store_true")
    parser.add_argument("--skip-masks", action="store_true")
    parser.add_argument("--skip-litert", action="store_true", help="masks: Keras only (no LiteRT conversion)")
    parser.add_argument("--distinct-kernels", action="store_true", help="redraw every kernel of the checkpoints first")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    results = {}
    global CHECKPOINTS
    with tempfile.TemporaryDirectory(prefix="spleeter-parity-") as folder:
        work = pathlib.Path(folder)
        os.environ.setdefault("STEMTF_CACHE", str(work / "cache"))
        if args.distinct_kernels:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from spleeter_speed import distinct_checkpoint

            for release in {release.replace("-16kHz", "") for release in args.models.split(",")}:
                distinct_checkpoint(CHECKPOINTS / release, work / "checkpoints" / release, dict(os.environ))
            CHECKPOINTS = work / "checkpoints"
        for release in args.models.split(","):
            release_work = work / release
            release_work.mkdir()
            model_dir = import_model(release, work / "models")
            results[release] = {"masks": {} if args.skip_masks else mask_parity(release, model_dir, release_work, litert=not args.skip_litert)}
            if not args.skip_separate:
                results[release]["separate"] = separate_parity(release, model_dir, release_work, args.seconds, args.runtime)
    print(f"| model | stem | masks, Keras (dB) | masks, LiteRT (dB) | separate {args.seconds:.0f} s, {args.runtime} (dB) "
          "| Spleeter's segment grid (dB) |")
    print("|---|---|---|---|---|---|")

    def cell(value) -> str:
        return "-" if value is None else f"{value:.1f}"

    for release, result in results.items():
        stems = [key for key in result.get("separate", {}) if " " not in key]
        stems = stems or [key[: -len(" keras")] for key in result["masks"] if key.endswith(" keras")]
        for stem in stems:
            print(f"| {release} | {stem} | {cell(result['masks'].get(stem + ' keras'))} | "
                  f"{cell(result['masks'].get(stem + ' litert'))} | {cell(result.get('separate', {}).get(stem))} | "
                  f"{cell(result.get('separate', {}).get(stem + ' grid'))} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
