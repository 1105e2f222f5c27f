"""A distilled student through every surface a model goes: `separate` (Keras and LiteRT), `export` to phones,
`stream`, Beam's `separate-batch` and the page's jobs (issue 28: "take it like any model").

The module distils one tiny student from the tiny teacher with the real CLI, with a geometry of its own
(narrower filters, fewer head maps, 3x3 kernels where the teacher has 5x5), then sends it through each surface
and checks the surface's numbers against the student's own :class:`Separator`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from stemtf.cli import main
from stemtf.separator import Separator

from conftest import SAMPLE_RATE, music_like

STUDENT_FILTERS, STUDENT_HEAD_FILTERS, STUDENT_KERNEL = (2, 4, 8), 1, 3
QUANTUM = 1 / 32768  # one step of the 16-bit files `stemtf separate` writes by default


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-noise ratio of ``estimate`` against ``reference``, in dB."""
    noise = np.sum((np.asarray(reference, np.float64) - estimate) ** 2)
    return float(10 * np.log10(np.sum(np.asarray(reference, np.float64) ** 2) / max(noise, 1e-30)))


def read(path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_model_dir):
    """The model directory of a student distilled from the tiny teacher by `stemtf distill` (4 steps)."""
    root = tmp_path_factory.mktemp("student")
    music = root / "music"
    music.mkdir()
    for seed in (1, 2):
        sf.write(music / f"song{seed}.wav", music_like(int(1.5 * SAMPLE_RATE), seed=seed), SAMPLE_RATE)
    out = root / "lite"
    code = main(["distill", str(tiny_model_dir), "--audio", str(music), "-o", str(out), "--steps", "4", "--batch-size", "2",
                 "--checkpoint-every", "4", "--filters", ",".join(map(str, STUDENT_FILTERS)),
                 "--head-filters", str(STUDENT_HEAD_FILTERS), "--kernel-size", str(STUDENT_KERNEL), "-q"])
    assert code == 0
    teacher = json.loads((tiny_model_dir / "config.json").read_text())
    config = json.loads((out / "config.json").read_text())
    # A geometry of its own: every surface below builds the student's network, not the teacher's.
    assert (config["unet"]["filters"], config["unet"]["head_filters"], config["unet"]["kernel_size"]) == (
        list(STUDENT_FILTERS), STUDENT_HEAD_FILTERS, STUDENT_KERNEL)
    assert (teacher["unet"]["filters"], teacher["unet"]["head_filters"], teacher["unet"].get("kernel_size", 5)) != (
        config["unet"]["filters"], config["unet"]["head_filters"], config["unet"]["kernel_size"])
    assert (config["trunk"], config["masks"], config["mask_exponent"]) == ("shared", "ratio", 1.0)
    return out


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A 2 s stereo 16-bit WAV (many of the tiny model's 3904-sample chunks)."""
    path = tmp_path_factory.mktemp("song") / "song.wav"
    sf.write(path, music_like(2 * SAMPLE_RATE, seed=11), SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def separated(student, song, tmp_path_factory):
    """``{stem: path}`` of what `stemtf separate SONG -m STUDENT` writes (the defaults: LiteRT, 16-bit WAV)."""
    out = tmp_path_factory.mktemp("separated")
    assert main(["separate", str(song), "-m", str(student), "-o", str(out), "-q"]) == 0
    stems = Separator.from_pretrained(student, runtime="keras").stems
    assert sorted(p.name for p in (out / "song").iterdir()) == sorted(f"{stem}.wav" for stem in stems)
    return {stem: out / "song" / f"{stem}.wav" for stem in stems}


def test_separate_writes_the_students_own_stems_on_both_runtimes(student, song, separated, tiny_model_dir, tmp_path):
    waveform = read(song)
    # The default run (LiteRT): byte for byte what the student's Separator writes for the same file.
    separator = Separator.from_pretrained(student)
    assert separator.runtime == "litert" and separator.config.unet.kernel_size == STUDENT_KERNEL
    expected = separator.separate_file(song, output_dir=tmp_path / "api")
    assert sorted(expected) == sorted(separated)
    for stem, path in separated.items():
        assert path.read_bytes() == expected[stem].read_bytes(), stem
    offline = separator.separate(waveform, SAMPLE_RATE)
    for stem, path in separated.items():
        np.testing.assert_allclose(read(path), offline[stem], atol=1.01 * QUANTUM)
    # Ratio masks: the written stems sum back to the mixture, and each holds part of the music.
    np.testing.assert_allclose(sum(read(p) for p in separated.values()), waveform, atol=len(separated) * QUANTUM)
    assert all(np.std(read(p)) > 1e-3 for p in separated.values())

    # Both runtimes in float: Keras gives the Keras separator's numbers, LiteRT agrees with it (test_runtimes' 60 dB).
    stems = {}
    for runtime in ("keras", "litert"):
        assert main(["separate", str(song), "-m", str(student), "-o", str(tmp_path / runtime), "--runtime", runtime,
                     "--bit-depth", "32", "-q"]) == 0
        stems[runtime] = {stem: read(tmp_path / runtime / "song" / f"{stem}.wav") for stem in separated}
    keras_offline = Separator.from_pretrained(student, runtime="keras").separate(waveform, SAMPLE_RATE)
    teacher = Separator.from_pretrained(tiny_model_dir, runtime="keras").separate(waveform, SAMPLE_RATE)
    for stem in separated:
        np.testing.assert_allclose(stems["keras"][stem], keras_offline[stem], atol=1e-6)
        assert snr_db(stems["keras"][stem], stems["litert"][stem]) > 60, stem
        assert snr_db(stems["litert"][stem], offline[stem]) > 80, stem  # the CLI's LiteRT run is the Separator's
        # The student's own network ran, not the teacher's: a cheaper one, near but not equal to it.
        assert snr_db(teacher[stem], keras_offline[stem]) < 40, stem  # ~20 dB after 4 steps


def test_export_to_tflite_gives_the_students_numbers(student, tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    from stemtf import export, litert_runner, spectral
    from stemtf.model import load_model

    model, config = load_model(student)
    capsys.readouterr()
    assert main(["export", str(student), "--format", "tflite", "-o", str(tmp_path / "phone")]) == 0
    assert f"Exported model {config.name!r} as tflite." in capsys.readouterr().out
    chunk_path, masks_path = tmp_path / "phone" / f"{config.name}.tflite", tmp_path / "phone" / f"{config.name}_masks.tflite"
    waveform = music_like(2 * SAMPLE_RATE, seed=12)

    # The phone's masks model: the student's masks for a magnitude patch (test_export's float32 goal, 60 dB).
    meta = json.loads(export.description_path(masks_path).read_text())
    assert meta["inputs"][0]["shape"] == [1, config.segment_frames, config.max_bins, 2]
    interpreter = Interpreter(model_path=str(masks_path))
    assert not {op["op_name"] for op in interpreter._get_ops_details()
                if op["op_name"].startswith("Flex") or op["op_name"] == "CUSTOM"}  # built-in ops only: runs on a phone
    spectrogram = spectral.stft(waveform[: meta["chunk_samples"]], n_fft=config.n_fft, hop_length=config.hop_length)
    magnitude = np.abs(spectrogram.numpy())[None, :, : config.max_bins].astype(np.float32)
    outputs = interpreter.get_signature_runner("serving_default")(magnitude=magnitude)
    expected = model(magnitude, training=False)
    for stem in config.stems:
        assert snr_db(expected[stem].numpy(), outputs[stem]) >= 60.0, stem
    np.testing.assert_allclose(sum(outputs[stem] for stem in config.stems), 1.0, atol=1e-4)  # ratio masks

    # The chunk model through the reference runner: a whole song like the student's Separator.
    chunk_model = litert_runner.ChunkModel(chunk_path)
    assert chunk_model.stems == list(config.stems)
    separator = Separator(model, config, overlap=chunk_model.overlap_samples / SAMPLE_RATE)
    offline = separator.separate(waveform, SAMPLE_RATE)
    stems = litert_runner.separate(waveform, SAMPLE_RATE, chunk_model)
    for stem in config.stems:
        assert stems[stem].shape == waveform.shape and snr_db(offline[stem], stems[stem]) >= 60.0, stem


def test_stream_gives_the_students_offline_stems(student, song, separated, tmp_path, capsys):
    from stemtf import sliding
    from stemtf.streaming import StreamingSeparator

    from test_streaming import stream_through

    waveform = read(song)
    # `stemtf stream SONG -m STUDENT -o DIR`: aligned files, the offline stems sample for sample (test_streaming's 2e-3).
    capsys.readouterr()
    assert main(["stream", str(song), "-m", str(student), "-o", str(tmp_path / "live"), "--block-size", "1000"]) == 0
    assert "latency " in capsys.readouterr().err
    offline = Separator.from_pretrained(student).separate(waveform, SAMPLE_RATE)
    for stem in separated:
        data = read(tmp_path / "live" / f"{stem}.wav")
        assert data.shape == waveform.shape
        assert np.max(np.abs(data - offline[stem])) < 2e-3, stem
        assert np.max(np.abs(data - read(separated[stem]))) < 2e-3, stem

    # The library's streams on Keras, in blocks of any size: one chunk late, then the offline stems (atol 1e-5) ...
    separator = Separator.from_pretrained(student, runtime="keras", overlap=0.02)
    keras_offline = separator.separate(waveform, SAMPLE_RATE)
    streamer = StreamingSeparator(separator)
    streamed = stream_through(streamer, waveform, np.random.default_rng(0).integers(1, 5000, size=100))
    latency = streamer.latency_samples
    for stem in separator.stems:
        assert streamed[stem].shape == (waveform.shape[0] + latency, 2)
        np.testing.assert_allclose(streamed[stem][latency:], keras_offline[stem], atol=1e-5)
    # ... and a short latency's sliding window (the student's own network on windows of the plan's length).
    streamer = StreamingSeparator(separator, latency=0.05)
    assert streamer.plan == "sliding" and streamer.latency_samples <= 0.05 * SAMPLE_RATE
    streamed = stream_through(streamer, waveform, np.random.default_rng(1).integers(1, 900, size=300))
    plan = sliding.separate_sliding(separator.masks_for(streamer.window_frames), separator.config, waveform,
                                    window_frames=streamer.window_frames, step_frames=streamer.step_frames,
                                    lookahead_frames=streamer.lookahead_frames)
    latency = streamer.latency_samples
    for index, stem in enumerate(separator.stems):
        np.testing.assert_allclose(streamed[stem][latency:], plan[index], atol=1e-5)
        # the window's masks are the student's (~35-39 dB from its whole-chunk masks; the teacher's are ~20 dB away)
        assert snr_db(keras_offline[stem], plan[index]) > 25, stem


def test_separate_batch_on_beam_writes_what_separate_writes(student, song, separated, tmp_path):
    pytest.importorskip("apache_beam")
    catalogue = tmp_path / "in"
    catalogue.mkdir()
    (catalogue / "song.wav").write_bytes(song.read_bytes())
    sf.write(catalogue / "other.flac", music_like(SAMPLE_RATE, num_channels=1, seed=13), SAMPLE_RATE)
    assert main(["separate-batch", str(catalogue / "*"), "-o", str(tmp_path / "out"), "--model", str(student), "-q",
                 "--", "--direct_num_workers=1"]) == 0
    assert main(["separate", str(catalogue / "other.flac"), "-m", str(student), "-o", str(tmp_path / "cli"), "-q"]) == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.wav"))
    assert written == sorted(f"{track}/{stem}.wav" for track in ("other", "song") for stem in separated)
    for stem, path in separated.items():
        assert (tmp_path / "out" / "song" / f"{stem}.wav").read_bytes() == path.read_bytes(), stem
        assert (tmp_path / "out" / "other" / f"{stem}.wav").read_bytes() == (tmp_path / "cli" / "other" / f"{stem}.wav").read_bytes()
        assert sf.info(tmp_path / "out" / "other" / f"{stem}.wav").channels == 1


def test_serve_page_job_and_rest_api_give_the_students_stems(student, song, separated, tmp_path):
    from stemtf import serve
    from stemtf.serve.jobs import JobManager
    from stemtf.serve.server import page_models

    from test_web import request, submit, wait_until
    from web_server import serving

    offered = page_models([str(student)])  # as `stemtf serve STUDENT` offers it on the page
    (name,) = offered
    with JobManager(offered, tmp_path / "jobs") as manager:
        engine = serve.EngineModel(manager.offered(name), name=name)
        with serving(serve.create_app(engine, jobs=manager)) as url:
            models = json.loads(request(f"{url}/v1/separators")[2])["models"]
            assert [(m["name"], m["stems"]) for m in models] == [(name, list(separated))]
            # The page: a job gives exactly the files `stemtf separate` wrote.
            status, _, created = submit(url, song.read_bytes(), model=name)
            assert status == 202, created
            done = wait_until(url, created["id"])
            assert done["status"] == "done", done
            assert [stem["name"] for stem in done["stems"]] == list(separated)
            for stem in done["stems"]:
                status, _, wav = request(url + stem["wav"])
                assert status == 200 and wav == separated[stem["name"]].read_bytes(), stem["name"]

            # TF Serving's REST API on the same engine: :predict gives the student's Separator's numbers.
            waveform = music_like(int(0.5 * SAMPLE_RATE), seed=14)
            status, _, body = request(f"{url}/v1/models/{name}:predict", method="POST",
                                      body=json.dumps({"inputs": {"waveform": waveform.tolist()}}).encode(),
                                      headers={"Content-Type": "application/json"})
            assert status == 200, body[:300]
            outputs = json.loads(body)["outputs"]
            offline = Separator.from_pretrained(student).separate(waveform, SAMPLE_RATE)
            for stem in separated:
                np.testing.assert_allclose(np.array(outputs[stem], np.float32), offline[stem], atol=1e-6)
                assert np.std(offline[stem]) > 1e-3
