"""Score one track's estimates: the whole-track SDR (``cSDR``) and museval's (BSS-eval v4) windows.

:mod:`stemtf.evaluate` separates a collection and reports; this module scores one track at a time.

BSS-eval's ratios are only meaningful where every reference stem is audible: on a window where one
stem is near-silent (real songs: stems come and go; lossy files decode silence as faint noise) its
decomposition divides by almost nothing and prints numbers like -30 dB SDR or a SAR of 0.00 for
every stem. Such windows are left out (NaN in the JSON, as museval leaves out digitally silent
ones). The references are also given a faint seeded dither (-100 dBFS) for the decomposition:
band-limited references (lossy files, stems recorded at 24 kHz) otherwise make its least-squares
filters singular, and SIR/SAR/ISR come out as numerical noise while the SDR is unaffected.
"""

from __future__ import annotations

import numpy as np

from stemtf.config import ModelConfig
from stemtf.errors import DataError, DependencyError

# A window is scored by museval only when every reference stem in it is at least this loud (RMS, dB
# re full scale); quieter references make BSS-eval's ratios degenerate.
AUDIBLE_DBFS = -60.0
# The faint white noise added to the references for BSS-eval's decomposition (RMS, dB re full scale).
DITHER_DBFS = -100.0


def check_dependencies() -> None:
    """Fail at once, with the extra to install, when museval is missing (before any track is separated)."""
    museval_module()


def museval_module():
    """The ``museval`` module.

    Raises:
        DependencyError: museval is not installed (it comes with the ``eval`` extra).
    """
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
    mixture: np.ndarray, references: np.ndarray, *, n_fft: int = ModelConfig.n_fft, hop_length: int = ModelConfig.hop_length
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
    museval = museval_module()
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
