"""The server when things go wrong: what an upload decodes to, hostile JSON, NaN, streamed FLAC, hang-ups, stalls, crowds."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

from stemtf.cli import main
from stemtf.serve import JobError, JobManager

from conftest import SAMPLE_RATE, music_like
from test_robust import streamed_flac
from test_serve import MAX_DURATION, free_port, multipart, request, savedmodel_base, server, wav_bytes  # noqa: F401 (fixtures)
from web_server import running_server

ROOT = pathlib.Path(__file__).resolve().parents[1]


def float_wav(waveform, sample_rate=SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, waveform, sample_rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_high_rate_upload_is_bounded_by_the_bytes_of_its_stems(server):
    # 1 s at 384 kHz is under the 4 s limit, but its stems are as big as 8.7 s at 44.1 kHz.
    body = wav_bytes(np.zeros((384_000, 2), np.float32), 384_000)
    status, _, answer = request(f"{server}/v1/separate", body=body, content_type="audio/wav")
    assert status == 413, answer[:300]
    assert "At 384000 Hz the stems of this file would be more than this server sends" in json.loads(answer)["error"]
    body = wav_bytes(music_like(96_000, sample_rate=96_000), 96_000)  # 1 s at 96 kHz: 2.2 s worth, accepted
    status, _, answer = request(f"{server}/v1/separate", body=body, content_type="audio/wav")
    assert status == 200, answer[:300]


def test_zip_members_unpack_with_normal_permissions(server, tmp_path):
    status, _, answer = request(f"{server}/v1/separate", body=wav_bytes(music_like(SAMPLE_RATE)), content_type="audio/wav")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(answer)) as bundle:
        modes = {member.filename: (member.external_attr >> 16) & 0o777 for member in bundle.infolist()}
        bundle.extractall(tmp_path)
    assert modes == {"vocals.wav": 0o644, "drums.wav": 0o644, "other.wav": 0o644}
    assert sf.info(tmp_path / "vocals.wav").frames == SAMPLE_RATE


def test_nan_upload_is_a_400_not_full_scale_stems(server):
    waveform = music_like(SAMPLE_RATE)
    waveform[1000:2000] = np.nan
    status, _, answer = request(f"{server}/v1/separate", body=float_wav(waveform), content_type="audio/wav")
    assert status == 400 and "contains NaN or infinite samples" in json.loads(answer)["error"]


def test_streamed_flac_upload_is_separated(server, tmp_path):
    song = streamed_flac(tmp_path / "streamed.flac", 2.0)
    body, content_type = multipart("file", "streamed.flac", song.read_bytes())
    status, _, answer = request(f"{server}/v1/separate", body=body, content_type=content_type)
    assert status == 200, answer[:300]
    with zipfile.ZipFile(io.BytesIO(answer)) as bundle:
        assert sf.info(io.BytesIO(bundle.read("vocals.wav"))).frames == 2 * SAMPLE_RATE
    long = streamed_flac(tmp_path / "long.flac", MAX_DURATION + 3)  # unknown length: counted as it decodes
    status, _, answer = request(f"{server}/v1/separate", body=long.read_bytes(), content_type="audio/flac")
    assert status == 413 and f"at most {MAX_DURATION:g} s" in json.loads(answer)["error"]


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"inputs": [[1' + b"0" * 400 + b', 0]]}'])
def test_hostile_json_is_a_400(server, body):
    status, _, answer = request(f"{server}/v1/models/tiny:predict", body=body)
    assert status == 400, answer[:300]
    assert json.loads(answer)["error"]


def test_json_is_bounded_by_what_it_decodes_to_before_decoding(server):
    # 4.1 s of zeros is ~2 MB of JSON (under the upload limit) but 361,620 numbers.
    body = b'{"inputs": [' + b"[0,0]," * int(4.1 * SAMPLE_RATE) + b"[0,0]]}"
    status, _, answer = request(f"{server}/v1/models/tiny:predict", body=body)
    assert status == 413 and "holds more than 352800 numbers" in json.loads(answer)["error"]


def test_long_predict_waveform_goes_through_chunks_with_the_same_result(savedmodel_base):
    from stemtf.serve import ServedModel

    served = ServedModel(savedmodel_base, max_duration=60)
    waveform = music_like(5 * served.description.chunk_samples + 123)
    chunked = served.run("serving_default", {"waveform": waveform})
    whole = served._call("serving_default", {"waveform": waveform})  # the graph's own chunking
    for stem in served.stems:
        np.testing.assert_allclose(chunked[stem], whole[stem], atol=1e-5)


def test_client_hanging_up_mid_upload_logs_no_traceback(server, caplog):
    host, port = server.removeprefix("http://").split(":")
    with caplog.at_level(logging.DEBUG):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/separate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\n")
            sock.sendall(b"RIFF" + b"\0" * 5000)
            time.sleep(0.3)
        time.sleep(1.0)
        assert request(f"{server}/v1/models/tiny")[0] == 200  # still serving
    assert not [record for record in caplog.records if record.exc_info or "Traceback" in record.getMessage()]


# Page jobs: the same bounds.


@pytest.fixture
def jobs(tiny_model, tmp_path):
    from stemtf.separator import Separator

    model, config = tiny_model
    with JobManager({"tiny": Separator(model, config)}, tmp_path / "cache", max_duration=MAX_DURATION) as manager:
        yield manager


def test_job_of_a_high_rate_file_is_refused_by_the_bytes_of_its_stems(jobs, tmp_path):
    upload = tmp_path / "high.wav"
    sf.write(upload, np.zeros((384_000, 2), np.float32), 384_000)
    with pytest.raises(JobError, match="At 384000 Hz the stems of this file would need") as caught:
        jobs.submit(upload, "high.wav", "tiny")
    assert caught.value.status == 413 and not upload.exists()


def test_job_of_a_streamed_flac_reports_no_bogus_duration(jobs, tmp_path):
    upload = streamed_flac(tmp_path / "streamed.flac", 2.0)
    job = jobs.submit(upload, "streamed.flac", "tiny")
    assert job["duration"] is None  # unknown until decoded, never 209146758205323.7 s
    deadline = time.time() + 120
    while (status := jobs.status(job["id"]))["status"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.1)
    assert status["status"] == "done", status
    assert status["duration"] == pytest.approx(2.0)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_serve_leaves_no_temporary_folder_on_any_exit(tiny_model_dir, tmp_path, signum):
    temp = tmp_path / "tmp"
    temp.mkdir()
    stale = temp / "stemtf-serve-999999999-abc"  # a server killed with -9 (no such process)
    (stale / "x").mkdir(parents=True)
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "stemtf.cli", "serve", str(tiny_model_dir), "--port", str(port), "--cache-dir", str(tmp_path / "cache")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
            try:
                if request(f"http://127.0.0.1:{port}/v1/models/tiny", timeout=5)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        assert list(temp.glob("stemtf-serve-*")) == []  # no temporary SavedModel: the page's engine serves the REST API
        status, _, _ = request(f"http://127.0.0.1:{port}/v1/separate", body=wav_bytes(music_like(SAMPLE_RATE)), content_type="audio/wav")
        assert status == 200
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # a failed check above: never leave a server running
            process.kill()
            process.communicate()
    assert "Traceback" not in err, err[-2000:]
    assert list(temp.glob("stemtf-serve-*")) == []
    assert out.splitlines()[-1] == "Stopped.", (process.returncode, out, err[-2000:])


def test_stale_temporary_folders_of_dead_servers_are_removed(tmp_path):
    from stemtf.serve.server import remove_stale_temporary_folders

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"stemtf-serve-{finished.stdout.strip()}-abc"
    alive = tmp_path / f"stemtf-serve-{os.getppid()}-def"
    other = tmp_path / "stemtf-serve-notapid"
    for folder in (dead, alive, other):
        (folder / "upload.wav").parent.mkdir()
        (folder / "upload.wav").write_bytes(b"x")
    assert remove_stale_temporary_folders(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


# Stem groups on the server and in page jobs.


def test_separate_endpoint_takes_groups(server):
    mixture = music_like(SAMPLE_RATE)
    status, _, answer = request(f"{server}/v1/separate?two_stems=vocals", body=wav_bytes(mixture), content_type="audio/wav")
    assert status == 200, answer[:300]
    with zipfile.ZipFile(io.BytesIO(answer)) as bundle:
        assert sorted(bundle.namelist()) == ["no_vocals.wav", "vocals.wav"]
        total = sum(sf.read(io.BytesIO(bundle.read(name)), dtype="float32")[0] for name in bundle.namelist())
    assert np.abs(total - sf.read(io.BytesIO(wav_bytes(mixture)), dtype="float32")[0]).max() < 3e-3
    body, content_type = multipart("file", "a.wav", wav_bytes(mixture))
    status, _, answer = request(f"{server}/v1/separate?group=rest=drums,other", body=body, content_type=content_type)
    with zipfile.ZipFile(io.BytesIO(answer)) as bundle:
        assert status == 200 and sorted(bundle.namelist()) == ["rest.wav", "vocals.wav"]
    status, _, answer = request(f"{server}/v1/separate?group=x=vocals,bass", body=wav_bytes(mixture), content_type="audio/wav")
    assert status == 400 and "'bass' is not a stem of this model" in json.loads(answer)["error"]
    # The options are named as the request's fields, never as the CLI's flags or the library's keywords.
    status, _, answer = request(f"{server}/v1/separate?group=nonsense", body=wav_bytes(mixture), content_type="audio/wav")
    assert status == 400 and json.loads(answer)["error"].startswith("group 'nonsense' must look like NAME=STEM"), answer
    status, _, answer = request(f"{server}/v1/separate?group=x=drums&two_stems=vocals", body=wav_bytes(mixture),
                                content_type="audio/wav")
    assert status == 400 and json.loads(answer)["error"] == "two_stems and group cannot be combined; use one or the other."
    status, _, answer = request(f"{server}/v1/separate?group=a%00b=vocals,drums", body=wav_bytes(mixture), content_type="audio/wav")
    assert status == 400 and "cannot be in a file name" in json.loads(answer)["error"]


def test_page_job_with_two_stems(jobs, tmp_path):
    upload = tmp_path / "song.wav"
    sf.write(upload, music_like(SAMPLE_RATE), SAMPLE_RATE)
    job = jobs.submit(upload, "song.wav", "tiny", groups={"no_vocals": ["drums", "other"]})
    assert job["stem_names"] == ["vocals", "no_vocals"]
    deadline = time.time() + 120
    while (status := jobs.status(job["id"]))["status"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.1)
    assert status["status"] == "done", status
    assert [stem["name"] for stem in status["stems"]] == ["vocals", "no_vocals"]
    assert jobs.stem_file(job["id"], "no_vocals", "wav").is_file()
    upload.write_bytes(wav_bytes(music_like(SAMPLE_RATE)))
    with pytest.raises(JobError, match="puts 'drums' in two groups") as caught:
        jobs.submit(upload, "song.wav", "tiny", groups={"a": ["drums"], "b": ["drums", "other"]})
    assert caught.value.kind == "bad_groups" and caught.value.status == 400
    assert str(caught.value) == "group puts 'drums' in two groups (a and b)."  # the page's field, not --group
    upload.write_bytes(wav_bytes(music_like(SAMPLE_RATE)))
    with pytest.raises(JobError) as caught:
        jobs.submit(upload, "song.wav", "tiny", groups={"no_guitar": ["!guitar"]})
    assert str(caught.value).startswith("two_stems 'guitar' is not a stem of this model") and caught.value.kind == "bad_groups"


def test_form_fields_become_groups():
    from stemtf.serve.web import form_groups

    assert form_groups([], "vocals") == {"no_vocals": ["!vocals"]}
    assert form_groups(["acc=drums,bass"], None) == {"acc": ["drums", "bass"]}
    with pytest.raises(JobError, match="^group 'nonsense' must look like NAME=STEM"):
        form_groups(["nonsense"], None)
    with pytest.raises(JobError, match="^two_stems and group cannot be combined") as caught:
        form_groups(["acc=drums,bass"], "vocals")
    assert caught.value.kind == "bad_groups" and "--" not in str(caught.value) and "`" not in str(caught.value)
    with pytest.raises(JobError, match="must be text"):
        form_groups([object()], None)


# Clients that stall or crowd: a body that stops arriving is a 408, a connection over the cap a 503.

READ_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def impatient(savedmodel_base, tiny_model, tmp_path_factory):
    """A server with the TF Serving routes and page jobs that waits only READ_TIMEOUT s for a body's next bytes; yields ``(url, manager)``."""
    from stemtf.separator import Separator
    from stemtf.serve import ServedModel

    model, config = tiny_model
    served = ServedModel(savedmodel_base, max_duration=MAX_DURATION)
    with running_server({"tiny": Separator(model, config)}, tmp_path_factory.mktemp("impatient"), served_model=served,
                        read_timeout=READ_TIMEOUT, max_duration=MAX_DURATION) as running:
        yield running


def send_and_stall(url: str, head: bytes) -> tuple[float, int, str, bytes]:
    """Send ``head`` (headers and part of the declared body), then nothing, and read until the server closes.

    Returns ``(seconds until the answer was complete, status, lower-case headers, body)``; a server that
    neither answers nor closes makes the read time out (an error).
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=READ_TIMEOUT + 5) as sock:
        sock.sendall(head)
        start, answer = time.monotonic(), b""
        while chunk := sock.recv(65536):  # b"": the server closed the connection
            answer += chunk
        elapsed = time.monotonic() - start
    header, _, body = answer.partition(b"\r\n\r\n")
    return elapsed, int(header.split()[1]), header.decode("latin-1").lower(), body


@pytest.mark.parametrize(("path", "content_type", "start"), [
    ("/v1/models/tiny:predict", "application/json", b'{"inputs": [[0.1, 0.2], '),
    ("/v1/separate", "audio/wav", b"RIFF" + b"\0" * 5000),
])
def test_stalled_body_is_a_408_and_the_connection_is_closed(impatient, caplog, path, content_type, start):
    url, _ = impatient
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n".encode()
    with caplog.at_level(logging.INFO):
        elapsed, status, headers, body = send_and_stall(url, head + start)
    assert status == 408 and f"arrived for {READ_TIMEOUT:g} s" in json.loads(body)["error"], body
    assert "connection: close" in headers
    assert READ_TIMEOUT * 0.8 < elapsed < READ_TIMEOUT + 3
    stalled = [record for record in caplog.records if "answered 408" in record.getMessage()]
    assert len(stalled) == 1 and f"POST {path} body for {READ_TIMEOUT:g} s" in stalled[0].getMessage()
    assert not [record for record in caplog.records if record.exc_info or "Traceback" in record.getMessage()]
    assert request(f"{url}/v1/models/tiny")[0] == 200  # still serving


def test_stalled_page_upload_is_a_408_timeout_and_leaves_nothing(impatient, caplog):
    url, manager = impatient
    boundary = "b0undary"
    start = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="song.wav"\r\n'
             "Content-Type: audio/wav\r\n\r\n").encode() + b"RIFF" + b"\0" * 5000
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            "Content-Length: 100000\r\n\r\n").encode()
    with caplog.at_level(logging.INFO):
        elapsed, status, headers, body = send_and_stall(url, head + start)
    answer = json.loads(body)
    assert status == 408 and answer["kind"] == "timeout" and f"arrived for {READ_TIMEOUT:g} s" in answer["error"], answer
    assert "connection: close" in headers and elapsed < READ_TIMEOUT + 3
    assert len([record for record in caplog.records if "answered 408" in record.getMessage()]) == 1
    assert not [record for record in caplog.records if record.exc_info or "Traceback" in record.getMessage()]
    assert list(manager.uploads_dir.iterdir()) == [] and list(manager.jobs_dir.iterdir()) == []
    status, _, body = request(f"{url}/v1/separators")
    assert status == 200 and json.loads(body)["models"][0]["name"] == "tiny"


def test_a_body_that_keeps_coming_is_not_cut_off(impatient):
    url, _ = impatient
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"inputs": {"waveform": music_like(2000).tolist()}}).encode()
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", "/v1/models/tiny:predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        pieces = [body[i:i + len(body) // 4 + 1] for i in range(0, len(body), len(body) // 4 + 1)]
        for piece in pieces:  # slower in all than the read timeout, never a pause as long
            connection.send(piece)
            time.sleep(READ_TIMEOUT * 0.5)
        response = connection.getresponse()
        assert response.status == 200, response.read()[:300]
        assert len(json.loads(response.read())["outputs"]["vocals"]) == 2000
    finally:
        connection.close()


def test_connections_over_the_cap_get_a_503_when_all_are_busy(tmp_path):
    cap = 3
    with running_server({}, tmp_path / "cache", max_connections=cap) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        head = (f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                "Content-Length: 4000000\r\n\r\n").encode()
        busy = [socket.create_connection((host, int(port)), timeout=10) for _ in range(cap)]
        try:
            for sock in busy:  # uploads arriving fast (64 kB at once): busy, never closed to make room
                sock.sendall(head + b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + b"x" * 65536)
            time.sleep(0.3)
            status, headers, _ = request(f"{url}/v1/separators", timeout=10)
            assert status == 503 and {name.lower(): value for name, value in headers.items()}.get("connection") == "close"
            busy.pop().close()
            deadline = time.monotonic() + 5
            while (status := request(f"{url}/v1/separators", timeout=10)[0]) == 503 and time.monotonic() < deadline:
                time.sleep(0.05)  # until the server has seen the close
            assert status == 200
        finally:
            for sock in busy:
                sock.close()


def test_idle_keep_alive_connections_make_room_for_new_ones(tmp_path):
    cap = 3
    with running_server({}, tmp_path / "cache", max_connections=cap) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        held = [http.client.HTTPConnection(host, int(port), timeout=10) for _ in range(cap)]
        try:
            for connection in held:  # each one served, then kept open (HTTP/1.1 keep-alive)
                connection.request("GET", "/v1/separators")
                response = connection.getresponse()
                assert response.status == 200 and response.getheader("Connection") != "close"
                response.read()
            for _ in range(2 * cap):  # each new client closes the idlest held one instead of getting 503
                assert request(f"{url}/v1/separators", timeout=10)[0] == 200
        finally:
            for connection in held:
                connection.close()


def test_cli_serve_rejects_bad_timeout_and_cap_in_one_line(capsys):
    for args, pattern in [
        (["--read-timeout", "0"], "--read-timeout must be > 0. Received 0."),
        (["--read-timeout", "inf"], "--read-timeout must be a finite number."),
        (["--max-connections", "0"], "--max-connections must be >= 1. Received 0."),
    ]:
        code = main(["serve", "x", *args])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("stemtf: error: ") and pattern in lines[0], err
