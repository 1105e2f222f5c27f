"""Shared fixtures: a tiny model (saved to disk like a real one) and real audio files."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import soundfile as sf

from stemtf.config import ModelConfig, UNetConfig

SAMPLE_RATE = 44100
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "caesium_excerpt.ogg"

# Test modules that need more than the package and its pip dependencies, or minutes: every test in
# them is marked `system`, and `make check` (-m "not slow and not system") leaves them out.
SYSTEM_MODULES = {
    "test_web_browser": "drives Debian's Chromium and Firefox",
    "test_web_export": "drives Chromium on the exported web page (LiteRT.js from npm)",
    "test_synth_render": "renders songs with FluidSynth, a SoundFont and Festival",
    "test_apt_install": "runs the apt scripts and make against fake package tools",
    "test_notebooks": "executes the notebooks in a Jupyter kernel",
    "test_install": "builds the wheel and installs it into a fresh virtual environment",
    "test_train_multiworker": "trains with several TensorFlow worker processes",
    "test_shipped_models": "runs the full-size shipped models on real music",
}

# Tests of other modules that take half a minute or more on 2 loaded cores (a LiteRT conversion, a
# real-shaped model, several processes): marked `slow` here, so `make check` leaves them out. Keyed
# by module, then by test function (every parametrisation); tests/test_tiers.py checks they exist.
SLOW_TESTS = {
    "test_runtimes": {"test_litert_runtime_matches_keras_and_converts_once", "test_two_processes_converting_at_once_share_one_file",
                      "test_shipped_model_litert_parity_on_real_music", "test_deferred_litert_chunk_model_converts_only_when_used",
                      "test_a_damaged_cached_conversion_is_converted_again", "test_litert_matches_keras_with_a_mask_exponent"},
    "test_streaming": {"test_cli_stream_with_a_latency_converts_only_the_window_model", "test_cli_stream_with_a_short_latency",
                       "test_exported_streaming_step_runs_on_litert"},
    "test_sliding_runner": {  # the module's `exported` fixture converts a window model to LiteRT
        "test_cli_export_writes_the_window_model_and_its_plan", "test_sliding_runner_on_the_exported_model_equals_the_library_stream",
        "test_sliding_runner_never_imports_tensorflow", "test_runner_command_line_refuses_to_overwrite_and_groups_stems_by_track"},
    "test_quality_benchmark": {"test_museval_medians_come_beside_csdr"},
    "test_export": {"test_savedmodel_chunking_matches_separator_at_every_length", "test_wav_signature_returns_wav_per_stem_with_input_layout",
                    "test_tflite_int8_keeps_the_stft_bases_float"},
    "test_evaluate": {"test_baselines_bracket_each_other"},
    "test_spleeter": {"test_download_import_verifies_converts_and_downloads_once", "test_import_folder_and_archive_give_the_same_model"},
    "test_distill_spleeter": {"test_recipe_imports_distils_resumes_and_the_student_separates",
                              "test_distill_report_scores_a_student_on_held_out_music_without_stems",
                              "test_distill_report_times_teacher_and_student_in_turn"},
    "test_spleeter_surfaces": {"test_serve_page_jobs_and_rest_api_run_an_imported_model_by_name",
                               "test_evaluate_scores_an_imported_model_by_name"},
    "test_distill": {"test_distill_writes_a_student_that_resumes_and_validates", "test_a_spleeter_layout_teacher_gets_one_shared_trunk_student",
                     "test_distill_prunes_from_an_earlier_student", "test_cli_distill",  # each trains a few steps
                     "test_cached_teacher_stems_train_without_the_teacher_in_the_loop",
                     "test_the_recipe_ships_only_a_student_that_meets_the_targets"},
}
# Module fixtures that convert or import a model for every test that uses them: those tests are slow too.
SLOW_FIXTURES = {
    "test_export": "exports",  # every TFLite and ONNX artifact of the tiny model
    "test_spleeter_pipeline": "imported",  # a Spleeter checkpoint imported, then run on both runtimes
    "test_student_surfaces": "student",  # a student distilled, then sent through every surface
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module is not None else ""
        if module in SYSTEM_MODULES:
            item.add_marker(pytest.mark.system)
        heavy_fixture = SLOW_FIXTURES.get(module)
        if getattr(item, "originalname", item.name) in SLOW_TESTS.get(module, ()) or heavy_fixture in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def tiny_config(**changes) -> ModelConfig:
    """A model small enough to build and run in well under a second; chunks of 3904 samples."""
    base = dict(
        name="tiny",
        stems=("vocals", "drums", "other"),
        n_fft=256,
        hop_length=64,
        max_bins=64,
        extension_bins=16,
        segment_frames=64,
        unet=UNetConfig(filters=(4, 8, 16), head_filters=2),
    )
    base.update(changes)
    return ModelConfig(**base)


def music_like(num_samples: int, *, num_channels: int = 2, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Deterministic harmonic tones plus noise bursts, float32 ``(num_samples, num_channels)`` in [-0.8, 0.8]."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    out = np.zeros((num_samples, num_channels), np.float32)
    for channel in range(num_channels):
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * h * t + channel) / h for h in range(1, 6))
        noise = rng.standard_normal(num_samples) * (np.sin(2 * np.pi * 2 * t) > 0.5)
        out[:, channel] = 0.3 * tone / 2.3 + 0.1 * noise
    return np.clip(out, -0.8, 0.8).astype(np.float32)


@pytest.fixture(scope="session", autouse=True)
def _litert_cache(tmp_path_factory):
    """LiteRT conversions of the test session go to a temporary folder, never the user's cache."""
    os.environ["STEMTF_CACHE"] = str(tmp_path_factory.mktemp("stemtf-cache"))


@pytest.fixture(scope="session")
def tiny_model():
    """``(model, config)`` of a tiny random-weight model."""
    import keras

    from stemtf.model import build_model

    keras.utils.set_random_seed(1)
    config = tiny_config()
    return build_model(config), config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model):
    """A saved model directory (config.json + weights) of the tiny model."""
    from stemtf.model import save_model

    model, config = tiny_model
    return save_model(model, config, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def stem_folder(tmp_path) -> pathlib.Path:
    """Three 1 s tracks of four distinct stems (vocals, drums, other, piano) as WAV files."""
    root = tmp_path / "stems"
    for index, name in enumerate(["one", "two", "three"]):
        (root / name).mkdir(parents=True)
        for offset, stem in enumerate(["vocals", "drums", "other", "piano"]):
            sf.write(root / name / f"{stem}.wav", 0.3 * music_like(SAMPLE_RATE, seed=10 * index + offset), SAMPLE_RATE)
    return root


@pytest.fixture
def stereo_wav(tmp_path) -> pathlib.Path:
    """A 1.5 s stereo 44.1 kHz 16-bit WAV file."""
    path = tmp_path / "song.wav"
    sf.write(path, music_like(int(1.5 * SAMPLE_RATE)), SAMPLE_RATE, subtype="PCM_16")
    return path
