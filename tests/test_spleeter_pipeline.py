"""An imported Spleeter model is a normal stemtf model: separate (Keras, LiteRT), export, stream, fine-tune.

The model is a tiny Spleeter-layout checkpoint (6 levels of few filters, 64 of 129 bins), written in
the TF1 format with Spleeter's variable names and imported with ``stemtf import spleeter``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from stemtf.cli import main
from stemtf.separator import Separator

from conftest import SAMPLE_RATE, music_like
from test_spleeter import TINY_PARAMS, spleeter_variables, write_checkpoint


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((np.asarray(reference, np.float64) - estimate) ** 2)
    return float(10 * np.log10(np.sum(np.asarray(reference, np.float64) ** 2) / max(noise, 1e-30)))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """``{mask_extension: model folder}`` of the tiny checkpoint imported Spleeter-exact and full-band."""
    root = tmp_path_factory.mktemp("spleeter-import")
    folder = write_checkpoint(root / "tiny", spleeter_variables(seed=3))
    params = root / "tiny.json"
    params.write_text(json.dumps(TINY_PARAMS))
    models = {}
    for extension in ("zeros", "average"):
        out = root / "models" / f"tiny-{extension}"
        assert main(["import", "spleeter", str(folder), "--spleeter-config", str(params), "-o", str(out),
                     "--mask-extension", extension, "-q"]) == 0
        models[extension] = out
    return models


@pytest.mark.parametrize("runtime", ["keras", "litert"])
def test_imported_model_separates_on_both_runtimes(imported, runtime, tmp_path):
    song = tmp_path / "song.wav"
    waveform = music_like(int(0.6 * SAMPLE_RATE), seed=4)
    sf.write(song, waveform, SAMPLE_RATE, subtype="FLOAT")
    out = tmp_path / "out"
    assert main(["separate", str(song), "-m", str(imported["average"]), "-o", str(out), "--runtime", runtime,
                 "--bit-depth", "32", "-q"]) == 0
    stems = {stem: sf.read(out / "song" / f"{stem}.wav", dtype="float32")[0] for stem in TINY_PARAMS["instrument_list"]}
    np.testing.assert_allclose(sum(stems.values()), waveform, atol=2e-5)  # full band: they sum to the mixture
    keras_stems = Separator.from_pretrained(imported["average"], runtime="keras").separate(waveform, SAMPLE_RATE)
    for stem, separated in stems.items():
        assert snr_db(keras_stems[stem], separated) > (100 if runtime == "keras" else 60), stem
        assert np.std(separated) > 1e-3  # not silent: the masks split the music


def test_spleeter_exact_mode_keeps_nothing_above_max_bins_on_both_runtimes(imported):
    waveform = music_like(int(0.6 * SAMPLE_RATE), seed=5)
    stems = Separator.from_pretrained(imported["zeros"], runtime="keras").separate(waveform, SAMPLE_RATE)
    total = sum(stems.values())
    power = lambda x: np.abs(np.fft.rfft(x[:, 0])) ** 2  # noqa: E731
    cut = int(len(waveform) * (64 + 8) / 256)  # bin 64 of the 256-point STFT, plus 8 bins for the masks' sidebands
    assert np.sum(power(total)[cut:]) < 1e-4 * np.sum(power(waveform)[cut:])
    assert snr_db(waveform, total) < 30  # the band above is gone: the stems no longer sum to the mixture
    litert = Separator.from_pretrained(imported["zeros"], runtime="litert").separate(waveform, SAMPLE_RATE)
    for stem in stems:  # Spleeter's grid on LiteRT too
        assert snr_db(stems[stem], litert[stem]) > 60, stem


@pytest.mark.slow
def test_imported_model_exports_savedmodel_tflite_onnx(imported, tmp_path):
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from stemtf.export import export
    from stemtf.model import load_model

    model, config = load_model(imported["average"])
    magnitude = np.abs(np.random.default_rng(0).normal(size=(1, config.segment_frames, config.max_bins, 2))).astype(np.float32)
    expected = {stem: value.numpy() for stem, value in model(magnitude, training=False).items()}
    tflite = [p for p in export(imported["average"], fmt="tflite", output_dir=tmp_path / "tflite") if "masks" in p.name][0]
    outputs = Interpreter(model_path=str(tflite)).get_signature_runner("serving_default")(magnitude=magnitude)
    onnx = [p for p in export(imported["average"], fmt="onnx", output_dir=tmp_path / "onnx") if "masks" in p.name][0]
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    onnx_outputs = dict(zip(names, session.run(names, {session.get_inputs()[0].name: magnitude})))
    for stem in config.stems:
        assert snr_db(expected[stem], outputs[stem]) > 60, stem
        assert snr_db(expected[stem], onnx_outputs[stem]) > 60, stem
    savedmodel = export(imported["average"], fmt="savedmodel", output_dir=tmp_path / "savedmodel")[0]
    waveform = music_like(int(0.4 * SAMPLE_RATE), seed=6)
    served = tf.saved_model.load(str(savedmodel)).signatures["serving_default"](waveform=tf.constant(waveform))
    offline = Separator(model, config).separate(waveform, SAMPLE_RATE)
    for stem in config.stems:
        np.testing.assert_allclose(served[stem].numpy(), offline[stem], atol=1e-5)


def test_imported_model_streams_like_it_separates(imported):
    from stemtf.streaming import StreamingSeparator

    separator = Separator.from_pretrained(imported["average"], runtime="keras")
    waveform = music_like(int(0.5 * SAMPLE_RATE), seed=7)
    offline = separator.separate(waveform, SAMPLE_RATE)
    streamer = StreamingSeparator(separator)
    pieces = [streamer.process(waveform[start : start + 3000]) for start in range(0, len(waveform), 3000)]
    pieces.append(streamer.flush())
    latency = streamer.latency_samples
    for stem in separator.stems:
        streamed = np.concatenate([piece[stem] for piece in pieces])
        np.testing.assert_allclose(streamed[latency : latency + len(waveform)], offline[stem], atol=1e-5)


@pytest.mark.slow  # a few seconds on a quiet machine (four small U-Nets, two steps)
def test_fine_tune_from_an_imported_model_to_new_stems(imported, stem_folder, tmp_path):
    from stemtf import train
    from stemtf.config import load_config
    from stemtf.model import load_model

    source, source_config = load_model(imported["average"])
    config = load_config(imported["average"] / "config.json").replace(name="tuned", stems=["vocals", "drums", "piano", "other"])
    result = train.fit(
        config, stem_folder, output_dir=tmp_path / "tuned", steps=2, checkpoint_every=2, from_model=imported["average"],
        freeze_encoder=True, tensorboard=False, num_frames=64, batch_size=2, learning_rate=1e-2, lr_schedule="constant",
        validation_crops=1,
    )
    model = result.model
    for stem in ("vocals", "drums"):  # each shared stem keeps its own U-Net; the frozen encoder is unchanged
        for name in ("encoder_conv_0", "encoder_bn_3"):
            for before, after in zip(source.get_layer(f"unet_{stem}").get_layer(name).get_weights(),
                                     model.get_layer(f"unet_{stem}").get_layer(name).get_weights()):
                np.testing.assert_array_equal(before, after)
        assert not np.array_equal(source.get_layer(f"unet_{stem}").get_layer("decoder_conv_0").get_weights()[0],
                                  model.get_layer(f"unet_{stem}").get_layer("decoder_conv_0").get_weights()[0])
    assert not np.allclose(model.get_layer("unet_piano").get_layer("encoder_conv_0").get_weights()[0],
                           source.get_layer("unet_bass").get_layer("encoder_conv_0").get_weights()[0])
    reloaded, reloaded_config = load_model(result.output_dir)
    assert (reloaded_config.stems, reloaded_config.trunk, reloaded_config.masks) == (("vocals", "drums", "piano", "other"), "per_stem", "spleeter")
    assert source_config.unet == reloaded_config.unet
