"""The TF-Serving-compatible server, started for real on a free loopback port and spoken to over HTTP."""

import base64
import concurrent.futures
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile

import numpy as np
import pytest
import soundfile as sf

from stemtf import export, serve
from stemtf.cli import main
from stemtf.separator import Separator

from conftest import EXAMPLE, SAMPLE_RATE, music_like
from web_server import serving

MAX_DURATION = 4.0
MAX_UPLOAD_MB = 2.0


@pytest.fixture(scope="module")
def savedmodel_base(tmp_path_factory, tiny_model):
    """A TF Serving model base path ``.../tiny`` holding version ``1``."""
    model, config = tiny_model
    base = tmp_path_factory.mktemp("serving") / "tiny"
    export.export_savedmodel(model, config, base / "1")
    return base


@pytest.fixture(scope="module")
def server(savedmodel_base):
    """The real app under uvicorn on a free 127.0.0.1 port, in a thread; yields its base URL."""
    served = serve.ServedModel(savedmodel_base, max_duration=MAX_DURATION, max_concurrency=2)
    with serving(serve.create_app(served, max_upload_mb=MAX_UPLOAD_MB)) as url:
        yield url


def request(url, *, body=None, content_type="application/json", method=None, timeout=120):
    """``(status, headers, body bytes)`` of one HTTP request; error statuses are returned, not raised."""
    headers = {"Content-Type": content_type} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url, data):
    status, _, body = request(url, body=json.dumps(data).encode())
    return status, json.loads(body)


def wav_bytes(waveform, sample_rate=SAMPLE_RATE):
    buffer = io.BytesIO()
    sf.write(buffer, waveform, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def multipart(field, filename, data):
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def separator(tiny_model):
    model, config = tiny_model
    return Separator(model, config)


# TF Serving's REST API.


def test_status_and_metadata(server):
    status, _, body = request(f"{server}/v1/models/tiny")
    assert status == 200
    assert json.loads(body)["model_version_status"][0] == {
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
    }
    assert request(f"{server}/v1/models/tiny/versions/1")[0] == 200
    status, _, body = request(f"{server}/v1/models/tiny/metadata")
    assert status == 200
    meta = json.loads(body)
    assert meta["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures) == ["separate_wav", "serving_default"]
    waveform = signatures["serving_default"]["inputs"]["waveform"]
    assert waveform["dtype"] == "DT_FLOAT" and [d["size"] for d in waveform["tensor_shape"]["dim"]] == ["-1", "2"]
    assert sorted(signatures["separate_wav"]["outputs"]) == ["drums_bytes", "other_bytes", "vocals_bytes"]


def test_predict_columnar_and_row_formats_match_the_separator(server, separator):
    waveform = music_like(6000, seed=4)
    expected = separator.separate(waveform, SAMPLE_RATE)
    status, columnar = post_json(f"{server}/v1/models/tiny:predict", {"inputs": {"waveform": waveform.tolist()}})
    assert status == 200, columnar
    for stem, value in expected.items():
        np.testing.assert_allclose(np.array(columnar["outputs"][stem]), value, atol=1e-5)
    status, rows = post_json(f"{server}/v1/models/tiny/versions/1:predict", {"signature_name": "serving_default", "instances": waveform.tolist()})
    assert status == 200, rows
    assert len(rows["predictions"]) == 6000
    for stem, value in expected.items():
        np.testing.assert_allclose(np.array([row[stem] for row in rows["predictions"]]), value, atol=1e-5)


def test_predict_wav_signature_with_b64_strings(server, separator):
    waveform = music_like(7000, seed=5)
    data = {"b64": base64.b64encode(wav_bytes(waveform)).decode()}
    status, rows = post_json(f"{server}/v1/models/tiny:predict", {"signature_name": "separate_wav", "instances": [data, data]})
    assert status == 200, rows
    assert len(rows["predictions"]) == 2
    status, columnar = post_json(f"{server}/v1/models/tiny:predict", {"signature_name": "separate_wav", "inputs": {"audio_bytes": [data]}})
    assert status == 200, columnar
    pcm = sf.read(io.BytesIO(wav_bytes(waveform)), dtype="float32")[0]
    expected = separator.separate(pcm, SAMPLE_RATE)
    for stem in separator.stems:
        for encoded in (rows["predictions"][1][f"{stem}_bytes"], columnar["outputs"][f"{stem}_bytes"][0]):
            decoded, rate = sf.read(io.BytesIO(base64.b64decode(encoded["b64"])), dtype="float32")
            assert rate == SAMPLE_RATE and decoded.shape == waveform.shape
            np.testing.assert_allclose(decoded, expected[stem], atol=1e-4)


@pytest.mark.parametrize(("path", "body", "status", "pattern"), [
    ("tiny:predict", b"this is not json", 400, "not valid JSON"),
    ("tiny:predict", b"\xff\xfe\x00garbage", 400, "not valid JSON"),
    ("tiny:predict", b"[1, 2, 3]", 400, "must be a JSON object"),
    ("tiny:predict", b"{}", 400, "exactly one of 'instances'"),
    ("tiny:predict", b'{"instances": [], "inputs": []}', 400, "exactly one of 'instances'"),
    ("tiny:predict", b'{"instances": []}', 400, "non-empty list"),
    ("tiny:predict", b'{"instances": [[0.1, 0.2, 0.3]]}', 400, r"shape \[-1, 2\]; received \[1, 3\]"),
    ("tiny:predict", b'{"inputs": [0.1, 0.2]}', 400, r"shape \[-1, 2\]; received \[2\]"),
    ("tiny:predict", b'{"inputs": [[0.1, "x"]]}', 400, "rectangular array of numbers"),
    ("tiny:predict", b'{"inputs": [[0.1, 0.2], [0.3]]}', 400, "rectangular array of numbers"),
    ("tiny:predict", b'{"inputs": [[NaN, 0.2]]}', 400, "NaN or infinite"),
    ("tiny:predict", b'{"inputs": {"audio": [[0.1, 0.2]]}}', 400, "exactly the inputs"),
    ("tiny:predict", b'{"signature_name": "nope", "inputs": [[0, 0]]}', 400, "Unknown signature_name 'nope'"),
    ("tiny:predict", b'{"signature_name": "separate_wav", "inputs": [{"b64": "%%%"}]}', 400, "not valid base64"),
    ("tiny:predict", b'{"signature_name": "separate_wav", "inputs": [{"b64": "UklGRg=="}]}', 400, "."),
    ("tiny:predict", b'{"signature_name": "separate_wav", "inputs": [[1, 2]]}', 400, "string value"),
    ("other:predict", b'{"inputs": [[0, 0]]}', 404, r"Servable not found for request: Latest\(other\)"),
    ("tiny/versions/7:predict", b'{"inputs": [[0, 0]]}', 404, r"specific\(7\)\(tiny\)"),
    ("tiny:classify", b'{"inputs": [[0, 0]]}', 404, "Unknown endpoint"),
])
def test_bad_predict_requests_get_4xx_json_errors(server, path, body, status, pattern):
    import re

    got, headers, answer = request(f"{server}/v1/models/{path}", body=body)
    assert got == status, answer
    assert headers["content-type"] == "application/json"
    assert re.search(pattern, json.loads(answer)["error"])


def test_wrong_rate_wav_and_too_long_audio_are_rejected(server):
    low = {"b64": base64.b64encode(wav_bytes(music_like(2000, sample_rate=8000), 8000)).decode()}
    status, answer = post_json(f"{server}/v1/models/tiny:predict", {"signature_name": "separate_wav", "inputs": [low]})
    assert status == 400 and "must be 44100 Hz" in answer["error"]
    long_wav = {"b64": base64.b64encode(wav_bytes(np.zeros((int(4.5 * SAMPLE_RATE), 1), np.float32))).decode()}
    status, answer = post_json(f"{server}/v1/models/tiny:predict", {"signature_name": "separate_wav", "inputs": [long_wav]})
    assert status == 413 and "at most 4 s" in answer["error"]
    status, answer = post_json(f"{server}/v1/models/tiny:predict", {"inputs": np.zeros((int(4.1 * SAMPLE_RATE), 2)).astype(int).tolist()})
    assert status == 413 and "at most 4 s" in answer["error"]


def test_oversized_body_is_refused_before_it_is_read(server):
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/v1/separate")
    connection.putheader("Content-Type", "audio/wav")
    connection.putheader("Content-Length", str(50_000_000))
    connection.endheaders()  # no body is ever sent
    response = connection.getresponse()
    assert response.status == 413
    assert "at most 2 MB" in json.loads(response.read())["error"]
    connection.close()


def test_unknown_routes_and_methods_get_json_errors(server):
    for url, method, status in [
        ("/v1/nothing", "GET", 404), ("/v1/separate", "GET", 405), ("/v1/models/tiny:predict", "GET", 404),
        ("/v1/models/tiny/metadata", "DELETE", 405),
    ]:
        got, headers, body = request(f"{server}{url}", method=method)
        assert got == status, (url, body)
        assert "error" in json.loads(body)


# POST /v1/separate: any audio file -> zip of stems.


def test_separate_upload_real_ogg_returns_a_zip_of_stems(server, separator):
    waveform, rate = sf.read(EXAMPLE, dtype="float32", frames=3 * SAMPLE_RATE, always_2d=True)
    buffer = io.BytesIO()
    sf.write(buffer, waveform, rate, format="OGG", subtype="VORBIS")
    body, content_type = multipart("file", "Caesium excerpt.ogg", buffer.getvalue())
    status, headers, answer = request(f"{server}/v1/separate", body=body, content_type=content_type)
    assert status == 200, answer[:500]
    assert headers["content-type"] == "application/zip"
    assert 'filename="Caesium_excerpt_stems.zip"' in headers["content-disposition"]
    decoded = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32", always_2d=True)[0]
    expected = separator.separate(decoded, SAMPLE_RATE)
    with zipfile.ZipFile(io.BytesIO(answer)) as bundle:
        assert sorted(bundle.namelist()) == sorted(f"{stem}.wav" for stem in separator.stems)
        for stem in separator.stems:
            stem_audio, stem_rate = sf.read(io.BytesIO(bundle.read(f"{stem}.wav")), dtype="float32", always_2d=True)
            assert stem_rate == SAMPLE_RATE and stem_audio.shape == decoded.shape
            np.testing.assert_allclose(stem_audio, expected[stem], atol=1e-4)


def test_separate_raw_body_keeps_rate_and_mono_like_the_separator(server, separator):
    buffer = io.BytesIO()
    sf.write(buffer, music_like(16000, num_channels=1, sample_rate=16000), 16000, format="FLAC")
    status, headers, answer = request(f"{server}/v1/separate?filename=take.flac", body=buffer.getvalue(), content_type="audio/flac")
    assert status == 200, answer[:500]
    assert 'filename="take_stems.zip"' in headers["content-disposition"]
    mixture = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32")[0]
    expected = separator.separate(mixture, 16000)  # resampled to 44.1 kHz and back, like the server
    with zipfile.ZipFile(io.BytesIO(answer)) as bundle:
        for stem in separator.stems:
            data, rate = sf.read(io.BytesIO(bundle.read(f"{stem}.wav")), dtype="float32")
            assert rate == 16000 and data.shape == (16000,)
            np.testing.assert_allclose(data, expected[stem], atol=1e-4)


@pytest.mark.parametrize(("body", "content_type", "status", "pattern"), [
    (b"", "audio/wav", 400, "upload is empty"),
    (b"definitely not audio" * 10, "audio/ogg", 400, "Cannot decode"),
    (wav_bytes(np.zeros((0, 2), np.float32)), "audio/wav", 400, "no audio samples"),
    (wav_bytes(np.zeros((5 * SAMPLE_RATE // 2, 2), np.float32), 22050), "audio/wav", 413, "at most 4 s"),
    (multipart("song", "a.wav", wav_bytes(music_like(1000)))[0], None, 400, "field named 'file'"),
    (b"--xyz\r\ngarbage", "multipart/form-data; boundary=xyz", 400, "."),
])
def test_bad_uploads_get_4xx_json_errors(server, body, content_type, status, pattern):
    import re

    if content_type is None:  # the multipart case: its boundary comes with the body
        body, content_type = multipart("song", "a.wav", wav_bytes(music_like(1000)))
    got, _, answer = request(f"{server}/v1/separate", body=body, content_type=content_type)
    assert got == status, answer[:300]
    assert re.search(pattern, json.loads(answer)["error"])


# Concurrency and the command line.


def test_concurrent_requests_are_each_answered_correctly(server, separator):
    inputs = [music_like(4000 + 1500 * i, seed=10 + i) for i in range(6)]
    expected = [separator.separate(x, SAMPLE_RATE) for x in inputs]

    def predict(index):
        return index, post_json(f"{server}/v1/models/tiny:predict", {"inputs": inputs[index].tolist()})

    def upload(index):
        return index, request(f"{server}/v1/separate", body=wav_bytes(inputs[index]), content_type="audio/wav")

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(predict if i % 2 else upload, i) for i in range(6)]
        futures.append(pool.submit(request, f"{server}/v1/models/tiny"))
        results = [f.result(timeout=300) for f in futures]
    for index, answer in results[:-1]:
        if index % 2:
            status, body = answer
            assert status == 200, body
            for stem in separator.stems:
                np.testing.assert_allclose(np.array(body["outputs"][stem]), expected[index][stem], atol=1e-5)
        else:
            status, _, body = answer
            assert status == 200, body[:300]
            with zipfile.ZipFile(io.BytesIO(body)) as bundle:
                vocals = sf.read(io.BytesIO(bundle.read("vocals.wav")), dtype="float32")[0]
            assert vocals.shape == inputs[index].shape
    assert results[-1][0] == 200
    assert request(f"{server}/v1/models/tiny")[0] == 200  # still up


def test_find_savedmodel_accepts_version_folder_and_base_path(savedmodel_base, tmp_path):
    assert serve.find_savedmodel(savedmodel_base) == (savedmodel_base / "1", "1")
    assert serve.find_savedmodel(savedmodel_base / "1") == (savedmodel_base / "1", "1")
    assert serve.find_savedmodel(tmp_path) is None


def test_cli_serve_rejects_bad_options_in_one_line(capsys, tmp_path):
    for args, pattern in [
        (["no-such-model"], "Unknown model 'no-such-model'"),
        ([str(tmp_path)], "has no config.json"),
        (["x", "--port", "70000"], "--port must be between 0 and 65535"),
        (["x", "--max-duration", "0"], "must be > 0"),
        (["x", "--max-concurrency", "0"], "--max-concurrency must be >= 1"),
    ]:
        code = main(["serve", *args])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("stemtf: error: "), err
        assert pattern in lines[0]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_cli_serve_runs_the_server_until_interrupted(savedmodel_base, tmp_path):
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "stemtf.cli", "serve", str(savedmodel_base), "--port", str(port), "--name", "demo",
         "--cache-dir", str(tmp_path / "cache")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                status, _, body = request(f"http://127.0.0.1:{port}/v1/models/demo", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
        assert request(f"http://127.0.0.1:{port}/v1/models/tiny")[0] == 404  # served as 'demo'
        busy = subprocess.run(
            [sys.executable, "-m", "stemtf.cli", "serve", str(savedmodel_base), "--port", str(port), "--cache-dir", str(tmp_path / "other")],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert busy.returncode == 1 and f"Cannot listen on 127.0.0.1:{port}" in busy.stderr
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert f"Open http://127.0.0.1:{port}/ in a browser. Ctrl-C to stop." in out.splitlines()
