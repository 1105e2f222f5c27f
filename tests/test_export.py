"""Exports (SavedModel, TFLite, ONNX) agree with the Keras model on real audio, run in their real runtimes."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from stemtf import export, litert_runner, options, spectral
from stemtf.cli import main
from stemtf.errors import OutputError, StemtfError
from stemtf.separator import Separator

from conftest import EXAMPLE, SAMPLE_RATE, music_like, tiny_config


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-noise ratio of ``estimate`` against ``reference``, in dB."""
    noise = np.sum((np.asarray(reference, np.float64) - estimate) ** 2)
    return float(10 * np.log10(np.sum(np.asarray(reference, np.float64) ** 2) / max(noise, 1e-30)))


@pytest.fixture(scope="module")
def real_audio():
    """3 s of the bundled CC0 excerpt (stereo, 44.1 kHz), float32 ``(num_samples, 2)``."""
    waveform, rate = sf.read(EXAMPLE, dtype="float32", start=5 * SAMPLE_RATE, stop=8 * SAMPLE_RATE, always_2d=True)
    assert rate == SAMPLE_RATE
    return waveform


@pytest.fixture(scope="module")
def keras_chunk(tiny_model):
    """The separator's chunk function (tf.signal STFT, Keras model): ``(L, C)`` -> ``(J, L, C)``."""
    model, config = tiny_model
    return Separator(model, config)._separate_chunk


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_model):
    """Every TFLite and ONNX artifact of the tiny model: ``{(format, kind, quantization): path}``."""
    model, config = tiny_model
    root = tmp_path_factory.mktemp("exports")
    paths = {}
    for kind in export.KINDS:
        for quantize in export.QUANTIZATIONS:
            paths["tflite", kind, quantize] = export.export_tflite(
                model, config, root / f"{kind}_{quantize}.tflite", kind=kind, quantize=quantize
            )
        paths["onnx", kind, "none"] = export.export_onnx(model, config, root / f"{kind}.onnx", kind=kind)
    return paths


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory, tiny_model):
    model, config = tiny_model
    return export.export_savedmodel(model, config, tmp_path_factory.mktemp("savedmodel") / "tiny" / "1")


def chunk_of(waveform, length):
    return np.ascontiguousarray(waveform[:length])


# SavedModel.


@pytest.mark.slow
def test_savedmodel_loads_without_stemtf_and_matches_separator(savedmodel, tiny_model, real_audio, tmp_path):
    model, config = tiny_model
    np.save(tmp_path / "input.npy", real_audio)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["stemtf"] = None  # any attempt to import stemtf now fails
        sys.modules["keras"] = None   # and so would Keras: the SavedModel needs TensorFlow only
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(savedmodel)!r})
        outputs = loaded.signatures["serving_default"](waveform=tf.constant(np.load("input.npy")))
        np.savez("output.npz", **{{k: v.numpy() for k, v in outputs.items()}})
        print(sorted(loaded.signatures))
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "['separate_wav', 'serving_default']" in result.stdout
    outputs = np.load(tmp_path / "output.npz")
    expected = Separator(model, config).separate(real_audio, SAMPLE_RATE)
    assert sorted(outputs.files) == sorted(config.stems)
    for stem in config.stems:
        assert outputs[stem].shape == real_audio.shape
        np.testing.assert_allclose(outputs[stem], expected[stem], atol=1e-5)


@pytest.mark.parametrize("num_samples", [1, 3904, 3905, 20_000])
def test_savedmodel_chunking_matches_separator_at_every_length(savedmodel, tiny_model, num_samples):
    model, config = tiny_model
    waveform = music_like(num_samples, seed=num_samples)
    outputs = tf.saved_model.load(str(savedmodel)).signatures["serving_default"](waveform=tf.constant(waveform))
    expected = Separator(model, config).separate(waveform, SAMPLE_RATE)
    for stem in config.stems:
        np.testing.assert_allclose(outputs[stem].numpy(), expected[stem], atol=1e-5)


@pytest.mark.parametrize("num_channels", [1, 2])
def test_wav_signature_returns_wav_per_stem_with_input_layout(savedmodel, tiny_model, num_channels):
    _, config = tiny_model
    waveform = music_like(9000, num_channels=num_channels)
    buffer = io.BytesIO()
    sf.write(buffer, waveform, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    signature = tf.saved_model.load(str(savedmodel)).signatures[export.WAV_SIGNATURE]
    outputs = signature(audio_bytes=tf.constant([buffer.getvalue(), buffer.getvalue()]))
    assert sorted(outputs) == sorted(f"{stem}_bytes" for stem in config.stems)
    stems = {}
    for stem in config.stems:
        assert outputs[f"{stem}_bytes"].shape == (2,)
        stems[stem], rate = sf.read(io.BytesIO(outputs[f"{stem}_bytes"][1].numpy()), dtype="float32", always_2d=True)
        assert rate == SAMPLE_RATE and stems[stem].shape == (9000, num_channels)
    pcm = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32", always_2d=True)[0]
    np.testing.assert_allclose(sum(stems.values()), pcm, atol=2e-4)  # three 16-bit roundings


def test_wav_signature_rejects_wrong_rate_with_a_message(savedmodel):
    buffer = io.BytesIO()
    sf.write(buffer, music_like(2000, sample_rate=22050), 22050, format="WAV", subtype="PCM_16")
    signature = tf.saved_model.load(str(savedmodel)).signatures[export.WAV_SIGNATURE]
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be 44100 Hz"):
        signature(audio_bytes=tf.constant([buffer.getvalue()]))


def test_savedmodel_metadata_describes_signatures(savedmodel, tiny_model):
    _, config = tiny_model
    meta = json.loads(export.description_path(savedmodel).read_text())
    assert export.description_path(savedmodel) == savedmodel.parent / "1.json"
    assert meta["stems"] == list(config.stems) and meta["sample_rate"] == SAMPLE_RATE
    assert meta["chunk_samples"] == 3904 and meta["quantization"] == "none"
    assert meta["inputs"] == [{"name": "waveform", "shape": [None, 2], "dtype": "float32"}]
    assert meta["signatures"]["separate_wav"]["inputs"][0]["name"] == "audio_bytes"


# TFLite.


TFLITE_SNR_GOALS = {"none": 60.0, "float16": 40.0, "int8": 30.0}


@pytest.mark.parametrize("quantize", export.QUANTIZATIONS)
def test_tflite_waveform_chunk_matches_keras_with_builtin_ops_only(exports, tiny_model, keras_chunk, real_audio, quantize):
    from ai_edge_litert.interpreter import Interpreter

    _, config = tiny_model
    path = exports["tflite", "waveform", quantize]
    meta = json.loads(export.description_path(path).read_text())
    interpreter = Interpreter(model_path=str(path))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature["inputs"] == [meta["inputs"][0]["name"]]
    assert sorted(signature["outputs"]) == sorted(o["name"] for o in meta["outputs"])
    chunk = chunk_of(real_audio, meta["chunk_samples"])
    outputs = interpreter.get_signature_runner("serving_default")(waveform=chunk)
    expected = keras_chunk(chunk)
    for index, stem in enumerate(config.stems):
        assert outputs[stem].shape == chunk.shape
        assert snr_db(expected[index], outputs[stem]) >= TFLITE_SNR_GOALS[quantize], stem
    assert meta["quantization"] == quantize and meta["kind"] == "waveform"


def test_tflite_int8_keeps_the_stft_bases_float(tmp_path):
    """The waveform models' DFT bases are constants (XNNPACK packs them once), except in int8 exports, whose
    quantizer would round a 64 x 64 constant matrix to 8 bits (~30 dB): there they are computed at run time."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from stemtf.model import build_model

    keras.utils.set_random_seed(0)
    config = tiny_config(n_fft=4096, hop_length=1024, max_bins=64, segment_frames=16)
    model = build_model(config)

    def matrices(quantize):
        path = export.export_tflite(model, config, tmp_path / f"{quantize}.tflite", quantize=quantize)
        details = Interpreter(model_path=str(path)).get_tensor_details()
        return {(d["dtype"].__name__, tuple(int(n) for n in d["shape"])) for d in details if len(d["shape"]) == 2}

    assert ("float32", (64, 64)) in matrices("none")  # the bases, stored
    assert not {shape for dtype, shape in matrices("int8") if dtype == "int8"}


@pytest.mark.parametrize("quantize", export.QUANTIZATIONS)
def test_tflite_masks_model_matches_keras(exports, tiny_model, real_audio, quantize):
    from ai_edge_litert.interpreter import Interpreter

    model, config = tiny_model
    path = exports["tflite", "masks", quantize]
    meta = json.loads(export.description_path(path).read_text())
    shape = meta["inputs"][0]["shape"]
    assert shape == [1, config.segment_frames, config.max_bins, 2]
    chunk = chunk_of(real_audio, meta["chunk_samples"])
    spectrogram = spectral.stft(chunk, n_fft=config.n_fft, hop_length=config.hop_length)
    magnitude = np.abs(spectrogram.numpy())[None, :, : config.max_bins].astype(np.float32)
    assert list(magnitude.shape) == shape
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    outputs = runner(magnitude=magnitude)
    expected = model(magnitude, training=False)
    for stem in config.stems:
        assert snr_db(expected[stem].numpy(), outputs[stem]) >= TFLITE_SNR_GOALS[quantize], stem


def test_tflite_quantization_shrinks_files(exports):
    for kind in export.KINDS:
        sizes = [exports["tflite", kind, q].stat().st_size for q in export.QUANTIZATIONS]
        assert sizes[0] > sizes[1] > sizes[2], (kind, sizes)


# ONNX.


@pytest.mark.parametrize("kind", export.KINDS)
def test_onnx_matches_keras_in_onnxruntime(exports, tiny_model, keras_chunk, real_audio, kind):
    import onnxruntime

    model, config = tiny_model
    path = exports["onnx", kind, "none"]
    meta = json.loads(export.description_path(path).read_text())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [meta["inputs"][0]["name"]]
    assert sorted(o.name for o in session.get_outputs()) == sorted(config.stems)
    if kind == "waveform":
        feed = chunk_of(real_audio, meta["chunk_samples"])
        expected = dict(zip(config.stems, keras_chunk(feed)))
    else:
        feed = np.abs(np.random.default_rng(0).normal(size=meta["inputs"][0]["shape"])).astype(np.float32)
        expected = {stem: value.numpy() for stem, value in model(feed, training=False).items()}
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {meta["inputs"][0]["name"]: feed})))
    for stem in config.stems:
        assert snr_db(expected[stem], outputs[stem]) >= 60.0, stem


# The reference runner (numpy + ai-edge-litert / onnxruntime).


def test_litert_runner_does_not_import_tensorflow():
    script = (
        "import sys, stemtf.litert_runner, ai_edge_litert.interpreter, onnxruntime; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("fmt", "quantize", "goal"), [("tflite", "none", 60.0), ("tflite", "int8", 30.0), ("onnx", "none", 60.0)])
def test_runner_separates_a_real_file_like_the_separator(exports, tiny_model, real_audio, tmp_path, fmt, quantize, goal):
    model, config = tiny_model
    chunk_model = litert_runner.ChunkModel(exports[fmt, "waveform", quantize])
    assert chunk_model.stems == list(config.stems)
    separator = Separator(model, config, overlap=chunk_model.overlap_samples / SAMPLE_RATE)
    expected = separator.separate(real_audio, SAMPLE_RATE)
    stems = litert_runner.separate(real_audio, SAMPLE_RATE, chunk_model)
    for stem in config.stems:
        assert stems[stem].shape == real_audio.shape
        assert snr_db(expected[stem], stems[stem]) >= goal, stem
    if quantize == "none":
        np.testing.assert_allclose(sum(stems.values()), real_audio, atol=1e-4)  # stems sum to the mixture


def test_runner_command_line_writes_one_wav_per_stem(exports, tiny_model, tmp_path):
    _, config = tiny_model
    song = tmp_path / "song.flac"
    sf.write(song, music_like(30_000, num_channels=1, sample_rate=22050), 22050)
    code = litert_runner.main([str(exports["tflite", "waveform", "none"]), str(song), "-o", str(tmp_path / "out")])
    assert code == 0
    for stem in config.stems:
        data, rate = sf.read(tmp_path / "out" / "song" / f"{stem}.wav")  # grouped by track, like separate
        assert rate == 22050 and data.shape == (30_000,)
    assert litert_runner.main([str(exports["tflite", "masks", "none"]), str(song)]) == 1  # not a chunk model


def test_identity_chunk_model_through_runner_returns_input():
    waveform = np.random.default_rng(3).uniform(-1, 1, (10_001, 2)).astype(np.float32)
    stems = litert_runner.separate_chunks(waveform, lambda chunk: np.stack([chunk, -chunk]), chunk_samples=1000, overlap_samples=200)
    np.testing.assert_allclose(stems[0], waveform, atol=1e-6)
    np.testing.assert_allclose(stems[1], -waveform, atol=1e-6)


# Sizes, names, the library entry point and the CLI.


def test_segment_frames_for_chunk_seconds(tiny_model):
    _, config = tiny_model
    assert config.segment_frames_for(None) == config.segment_frames
    frames = config.segment_frames_for(0.3)
    assert frames % 8 == 0 and abs(config.chunk_samples_for(frames) - 0.3 * SAMPLE_RATE) <= 8 * 64
    assert config.segment_frames_for(0.0001) == 16  # the smallest chunk the model allows
    with pytest.raises(StemtfError, match="`chunk_seconds` must be > 0"):
        options.check_chunk_seconds(-1)


def test_export_keywords_default_to_the_options_defaults():
    import inspect

    from stemtf.export import writers

    def default(function, keyword):
        return inspect.signature(function).parameters[keyword].default

    assert default(writers.export, "quantize") is default(writers.export_tflite, "quantize") is options.DEFAULT_QUANTIZE
    assert default(writers.export_savedmodel, "wiener_iterations") is options.DEFAULT_WIENER_ITERATIONS


def test_export_refuses_to_overwrite_and_rejects_bad_options(tiny_model, tiny_model_dir, tmp_path):
    written = export.export(tiny_model_dir, fmt="tflite", output_dir=tmp_path, chunk_seconds=0.2)
    assert [p.name for p in written] == ["tiny.tflite", "tiny_masks.tflite"]
    frames = json.loads((tmp_path / "tiny.tflite.json").read_text())["segment_frames"]
    assert frames == tiny_model[1].segment_frames_for(0.2) == 144
    with pytest.raises(OutputError, match="already exists; pass `overwrite`"):
        export.export(tiny_model_dir, fmt="tflite", output_dir=tmp_path)
    with pytest.raises(StemtfError, match="`quantize` int8 applies to the tflite format only"):
        export.export(tiny_model_dir, fmt="onnx", output_dir=tmp_path, quantize="int8")
    with pytest.raises(StemtfError, match="`fmt` must be one of"):
        export.export(tiny_model_dir, fmt="coreml", output_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tflite", "tiny.tflite.json", "tiny_masks.tflite", "tiny_masks.tflite.json"]


def test_cli_export_savedmodel_and_errors(capsys, tiny_model_dir, tmp_path):
    code = main(["export", str(tiny_model_dir), "--format", "savedmodel", "-o", str(tmp_path / "tiny")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / "tiny" / "1" / "saved_model.pb").is_file() and (tmp_path / "tiny" / "1.json").is_file()
    assert "Exported model 'tiny' as savedmodel." in out
    for args, pattern in [
        (["--format", "savedmodel"], "already exists; pass --overwrite"),
        (["--format", "pb"], "--format 'pb' is not supported"),
        (["--format", "tflite", "--quantize", "int4"], "--quantize 'int4' is not supported"),
        (["--format", "onnx", "--quantize", "float16"], "--quantize float16 applies to the tflite format only"),
        (["--chunk-seconds", "0"], "--chunk-seconds must be > 0"),
    ]:
        code = main(["export", str(tiny_model_dir), "-o", str(tmp_path / "tiny"), *args])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("stemtf: error: "), err
        assert pattern in lines[0]
    code = main(["export", "no-such-model"])
    assert code == 1 and "Unknown model 'no-such-model'" in capsys.readouterr().err
