"""One engine per model (the page's Separator answers TF Serving's REST API too), and what the limits bound in memory."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import time

import numpy as np
import pytest
import soundfile as sf

from stemtf import serve
from stemtf.separator import Separator
from stemtf.serve import handlers

from conftest import SAMPLE_RATE, music_like
from test_serve import MAX_DURATION, post_json, request, savedmodel_base, wav_bytes  # noqa: F401 (fixture)
from web_server import running_server, serving


@pytest.fixture(scope="module")
def separator(tiny_model):
    model, config = tiny_model
    return Separator(model, config)


@pytest.fixture(scope="module")
def engine_server(separator, tmp_path_factory):
    """The page and the REST API on one Separator; yields ``(url, manager, engine)``."""
    with running_server({"tiny": separator}, tmp_path_factory.mktemp("engine"), max_duration=MAX_DURATION) as (url, manager):
        engine = serve.EngineModel(manager.offered("tiny"), name="tiny", max_duration=MAX_DURATION)
        app = serve.create_app(engine, max_upload_mb=2.0, jobs=None)
        with serving(app) as rest_url:
            yield rest_url, url, engine


def test_engine_answers_tf_serving_routes_with_the_separators_numbers(engine_server, separator):
    url, _, _ = engine_server
    status, _, body = request(f"{url}/v1/models/tiny/metadata")
    signatures = json.loads(body)["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and sorted(signatures) == ["separate_wav", "serving_default"]
    assert sorted(signatures["separate_wav"]["outputs"]) == ["drums_bytes", "other_bytes", "vocals_bytes"]
    assert [d["size"] for d in signatures["serving_default"]["inputs"]["waveform"]["tensor_shape"]["dim"]] == ["-1", "2"]
    waveform = music_like(9000, seed=6)  # more than two of the tiny model's chunks
    expected = separator.separate(waveform, SAMPLE_RATE)
    status, columnar = post_json(f"{url}/v1/models/tiny:predict", {"inputs": {"waveform": waveform.tolist()}})
    assert status == 200, columnar
    for stem, value in expected.items():
        np.testing.assert_allclose(np.array(columnar["outputs"][stem], np.float32), value, atol=1e-6)
    status, rows = post_json(f"{url}/v1/models/tiny:predict", {"instances": waveform[:10].tolist()})
    assert status == 200 and len(rows["predictions"]) == 10 and sorted(rows["predictions"][0]) == list(sorted(expected))


def test_engine_separate_wav_keeps_channels_and_refuses_other_rates(engine_server, separator):
    url, _, _ = engine_server
    mono = music_like(7000, num_channels=1, seed=7)
    data = {"b64": base64.b64encode(wav_bytes(mono)).decode()}
    status, answer = post_json(f"{url}/v1/models/tiny:predict", {"signature_name": "separate_wav", "instances": [data]})
    assert status == 200, answer
    pcm = sf.read(io.BytesIO(wav_bytes(mono)), dtype="float32", always_2d=True)[0]
    expected = separator.separate(pcm, SAMPLE_RATE)
    for stem in separator.stems:
        decoded, rate = sf.read(io.BytesIO(base64.b64decode(answer["predictions"][0][f"{stem}_bytes"]["b64"])),
                                dtype="float32", always_2d=True)
        assert rate == SAMPLE_RATE and decoded.shape == (7000, 1)
        np.testing.assert_allclose(decoded, np.clip(expected[stem], -1, 1), atol=1 / 32767 + 1e-6)
    other = {"b64": base64.b64encode(wav_bytes(music_like(4000), 22050)).decode()}
    status, answer = post_json(f"{url}/v1/models/tiny:predict", {"signature_name": "separate_wav", "inputs": [other]})
    assert status == 400 and "the WAV must be 44100 Hz" in answer["error"]


def test_page_and_rest_api_load_one_engine_per_model(tiny_model, tmp_path, monkeypatch):
    model, config = tiny_model
    loads = []

    def from_pretrained(source, **kwargs):
        loads.append(source)
        return Separator(model, config)

    monkeypatch.setattr(Separator, "from_pretrained", staticmethod(from_pretrained))
    from stemtf.serve.jobs.runner import OfferedModel

    entry = OfferedModel(source="tiny", stems=tuple(config.stems), sample_rate=config.sample_rate, num_channels=2)
    with running_server({"tiny": entry}, tmp_path / "cache", preload=True) as (url, manager):
        engine = serve.EngineModel(manager.offered("tiny"), name="tiny")
        outputs = engine.run("serving_default", {"waveform": music_like(5000)})
        assert sorted(outputs) == sorted(config.stems)
        from test_web import audio_bytes, submit, wait_until

        status, _, created = submit(url, audio_bytes(music_like(5000)))
        assert status == 202 and wait_until(url, created["id"])["status"] == "done"
    assert loads == ["tiny"]  # the page's jobs and the REST API share one Separator


# What the limits bound: parsing and formatting inside the concurrency cap, bodies on disk while they wait.


def test_predict_parses_only_inside_the_concurrency_cap(savedmodel_base, monkeypatch):
    served = serve.ServedModel(savedmodel_base, max_duration=MAX_DURATION, max_concurrency=1)
    parsed = []
    original = handlers.parse_predict_request
    monkeypatch.setattr(handlers, "parse_predict_request", lambda body, model: parsed.append(1) or original(body, model))
    body = json.dumps({"inputs": {"waveform": music_like(3000).tolist()}}).encode()
    with serving(serve.create_app(served, max_upload_mb=2.0)) as url, concurrent.futures.ThreadPoolExecutor(2) as pool:
        with served.slot():  # every slot is taken: requests wait with their bodies unparsed
            waiting = [pool.submit(request, f"{url}/v1/models/tiny:predict", body=body) for _ in range(2)]
            time.sleep(1.0)
            assert parsed == [] and not any(future.done() for future in waiting)
        answers = [future.result(timeout=60) for future in waiting]
    assert [status for status, _, _ in answers] == [200, 200] and parsed == [1, 1]
    assert len(json.loads(answers[0][2])["outputs"]["vocals"]) == 3000


def test_uploads_wait_for_a_slot_spooled_to_a_file(savedmodel_base, monkeypatch):
    served = serve.ServedModel(savedmodel_base, max_duration=MAX_DURATION, max_concurrency=1)
    given = []
    original = handlers.separate_upload

    def spy(data, *args, **kwargs):
        given.append(type(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr("stemtf.serve.app.separate_upload", spy)
    with serving(serve.create_app(served, max_upload_mb=2.0)) as url:
        status, _, answer = request(f"{url}/v1/separate", body=wav_bytes(music_like(8000)), content_type="audio/wav")
        assert status == 200, answer[:300]
        from test_serve import multipart

        body, content_type = multipart("file", "a.wav", wav_bytes(music_like(8000)))
        assert request(f"{url}/v1/separate", body=body, content_type=content_type)[0] == 200
    assert len(given) == 2 and not any(issubclass(kind, (bytes, bytearray)) for kind in given)  # files, never bytes


def test_separate_wav_runs_chunk_by_chunk_not_the_whole_graph(savedmodel_base, monkeypatch):
    served = serve.ServedModel(savedmodel_base, max_duration=60)
    waveform = music_like(4 * served.description.chunk_samples + 77, seed=8)
    item = np.empty(1, dtype=object)
    item[0] = wav_bytes(waveform)
    whole = served._call("separate_wav", {"audio_bytes": item})  # the exported graph, every chunk at once
    calls = []
    original = served._call
    monkeypatch.setattr(served, "_call", lambda name, inputs: calls.append((name, len(next(iter(inputs.values())))))
                        or original(name, inputs))
    chunked = served.run("separate_wav", {"audio_bytes": item})
    assert {name for name, _ in calls} == {"serving_default"} and {n for _, n in calls} == {served.description.chunk_samples}
    for name, files in whole.items():
        expected = sf.read(io.BytesIO(files[0]), dtype="float32")[0]
        got = sf.read(io.BytesIO(chunked[name][0]), dtype="float32")[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=2 / 32767 + 1e-5)


@pytest.mark.parametrize(("body", "word"), [
    (b'{"inputs": [[0.1, "0.5"]]}', "a string"),
    (b'{"inputs": [[true, 0.5]]}', "true or false"),
    (b'{"inputs": {"waveform": [[false, true]]}}', "true or false"),
    (b'{"instances": [[0.25, "1"], [0.5, 0.5]]}', "a string"),
])
def test_strings_and_booleans_are_not_numbers(engine_server, body, word):
    url, _, _ = engine_server
    status, _, answer = request(f"{url}/v1/models/tiny:predict", body=body)
    assert status == 400 and json.loads(answer)["error"] == f"Input 'waveform' must hold JSON numbers; it holds {word}."
