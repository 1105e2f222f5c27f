"""The job API under the web page, on a real server (free 127.0.0.1 port) with a real tiny model."""

import concurrent.futures
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile

import numpy as np
import pytest
import soundfile as sf

from stemtf.cli import main
from stemtf.errors import StemtfError
from stemtf.separator import Separator
from stemtf.serve.jobs import JobManager

from conftest import SAMPLE_RATE, music_like
from web_server import running_server

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def separator(tiny_model):
    model, config = tiny_model
    return Separator(model, config)


def request(url, *, body=None, headers=None, method=None, timeout=120):
    """``(status, headers, body bytes)``; error statuses are returned, not raised."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def audio_bytes(waveform, sample_rate=SAMPLE_RATE, fmt="WAV"):
    buffer = io.BytesIO()
    sf.write(buffer, waveform, sample_rate, format=fmt, **({"subtype": "PCM_16"} if fmt == "WAV" else {}))
    return buffer.getvalue()


def form(fields):
    """A multipart body from ``[(name, filename or None, bytes)]``; ``(body, content_type)``."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def submit(url, data, filename="song.wav", model="tiny"):
    """POST /v1/jobs; ``(status, headers, json)``."""
    fields = [("model", None, model.encode())] if model is not None else []
    body, content_type = form([*fields, ("file", filename, data)])
    status, headers, answer = request(f"{url}/v1/jobs", body=body, headers={"Content-Type": content_type})
    return status, headers, json.loads(answer)


def job(url, job_id):
    status, _, body = request(f"{url}/v1/jobs/{job_id}")
    assert status == 200, body
    return json.loads(body)


def wait_until(url, job_id, done=("done", "failed", "cancelled"), timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        state = job(url, job_id)
        if state["status"] in done:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def long_clip(seconds):
    """A mono 16 kHz WAV: small to upload, many chunks for the tiny model (resampled to 44.1 kHz)."""
    return audio_bytes(music_like(int(seconds * 16000), num_channels=1, sample_rate=16000, seed=3), 16000)


def cache_entries(cache):
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.name != ".lock")


# The life of a job.


def test_job_lifecycle_gives_the_cli_results(separator, tmp_path):
    waveform = music_like(int(1.5 * SAMPLE_RATE), seed=7)
    data = audio_bytes(waveform, fmt="FLAC")
    cache = tmp_path / "cache"
    with running_server({"tiny": separator}, cache) as (url, manager):
        status, _, created = submit(url, data, filename="My Song.flac")
        assert status == 202, created
        assert UUID4.match(created["id"]) and created["status_url"] == f"/v1/jobs/{created['id']}"
        assert created["status"] in ("queued", "running") and created["filename"] == "My Song.flac"
        done = wait_until(url, created["id"])
        assert done["status"] == "done" and done["progress"] == 1.0 and done["time_left"] is None
        assert done["duration"] == pytest.approx(1.5) and done["sample_rate"] == SAMPLE_RATE and done["num_channels"] == 2
        assert [stem["name"] for stem in done["stems"]] == list(separator.stems)
        assert 0 < done["expires_in"] <= 3600

        # Exactly what `stemtf separate` writes for the same file.
        source = tmp_path / "My Song.flac"
        source.write_bytes(data)
        expected = separator.separate_file(source, output_dir=tmp_path / "cli", filename="{stem}.{ext}")
        for stem in done["stems"]:
            status, headers, wav = request(url + stem["wav"])
            assert status == 200 and headers["content-type"] == "audio/wav"
            assert headers["content-disposition"] == (f'attachment; filename="My_Song_{stem["name"]}.wav"; '
                                                      f"filename*=UTF-8''My%20Song_{stem['name']}.wav")
            assert wav == expected[stem["name"]].read_bytes()
        status, headers, mp3 = request(url + done["stems"][0]["mp3"])
        assert status == 200 and headers["content-type"] == "audio/mpeg"
        decoded, rate = sf.read(io.BytesIO(mp3), dtype="float32", always_2d=True)
        assert rate == SAMPLE_RATE and abs(decoded.shape[0] - waveform.shape[0]) < 2 * 1152 + 529 * 2

        status, headers, zipped = request(url + done["zip"])
        assert status == 200 and headers["content-type"] == "application/zip"
        assert headers["content-disposition"] == "attachment; filename=\"My_Song_stems.zip\"; filename*=UTF-8''My%20Song_stems.zip"
        assert "content-length" not in {key.lower() for key in headers}  # streamed
        with zipfile.ZipFile(io.BytesIO(zipped)) as bundle:
            assert bundle.namelist() == [f"{stem}.wav" for stem in separator.stems]
            for stem in separator.stems:
                assert bundle.read(f"{stem}.wav") == expected[stem].read_bytes()

        assert cache_entries(cache) == sorted(["jobs", "uploads", f"jobs/{done['id']}", f"jobs/{done['id']}/job.json",
                                               f"jobs/{done['id']}/vocals.mp3",
                                               *(f"jobs/{done['id']}/{stem}.wav" for stem in separator.stems)])
        status, _, body = request(f"{url}/v1/jobs/{done['id']}", method="DELETE")
        assert status == 200 and json.loads(body) == {"id": done["id"], "status": "deleted"}
        status, _, body = request(f"{url}/v1/jobs/{done['id']}")
        assert status == 404 and json.loads(body)["kind"] == "not_found"
        assert cache_entries(cache) == ["jobs", "uploads"]


def test_progress_time_left_and_cancel_of_a_running_job(separator, tmp_path):
    cache = tmp_path / "cache"
    with running_server({"tiny": separator}, cache) as (url, _):
        _, _, created = submit(url, long_clip(90))
        deadline = time.monotonic() + 60
        while True:
            state = job(url, created["id"])
            if state["status"] == "running" and state["progress"] > 0.05 and state["time_left"]:
                break
            assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
            time.sleep(0.02)
        assert 0 < state["progress"] < 1 and state["time_left"] > 0 and state["loading_model"] is False
        asked = time.monotonic()
        status, _, body = request(f"{url}/v1/jobs/{created['id']}", method="DELETE")
        assert status == 200 and json.loads(body)["status"] in ("cancelling", "cancelled")
        final = wait_until(url, created["id"], timeout=30)
        assert final["status"] == "cancelled" and final["progress"] < 1
        assert time.monotonic() - asked < 5  # it stopped at the next chunk, not at the end of the song
        assert "stems" not in final
        assert cache_entries(cache) == ["jobs", "uploads"]  # no results, no partial folder, no upload
        status, _, body = request(f"{url}/v1/jobs/{created['id']}/stems.zip")
        assert status == 409 and json.loads(body)["kind"] == "not_ready"


def test_full_queue_answers_503_with_retry_after(separator, tmp_path):
    with running_server({"tiny": separator}, tmp_path / "cache", max_queue=1, workers=1) as (url, _):
        _, _, running = submit(url, long_clip(90))
        wait_until(url, running["id"], done=("running",))
        status, _, waiting = submit(url, long_clip(2))
        assert status == 202 and waiting["status"] == "queued" and waiting["queue_position"] == 1
        status, headers, refused = submit(url, long_clip(2))
        assert status == 503 and refused["kind"] == "busy" and "busy" in refused["error"]
        assert 1 <= int(headers["retry-after"]) <= 600
        # Cancelling the waiting job frees its place at once.
        status, _, body = request(f"{url}/v1/jobs/{waiting['id']}", method="DELETE")
        assert status == 200 and json.loads(body)["status"] == "cancelled"
        status, _, again = submit(url, long_clip(2))
        assert status == 202 and again["queue_position"] == 1
        for job_id in (again["id"], running["id"]):
            request(f"{url}/v1/jobs/{job_id}", method="DELETE")
        assert wait_until(url, running["id"], timeout=30)["status"] == "cancelled"


def test_concurrent_uploads_each_get_their_own_stems(separator, tmp_path):
    lengths = [SAMPLE_RATE // 2 + 3000 * i for i in range(6)]
    inputs = [music_like(n, seed=20 + i) for i, n in enumerate(lengths)]
    with running_server({"tiny": separator}, tmp_path / "cache", max_queue=8, workers=2) as (url, _):
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            created = list(pool.map(lambda x: submit(url, audio_bytes(x)), inputs))
        assert all(status == 202 for status, _, _ in created)
        ids = [answer["id"] for _, _, answer in created]
        assert len(set(ids)) == 6
        for waveform, job_id in zip(inputs, ids):
            done = wait_until(url, job_id)
            assert done["status"] == "done", done
            _, _, wav = request(url + done["stems"][1]["wav"])
            drums = sf.read(io.BytesIO(wav), dtype="float32")[0]
            expected = separator.separate(waveform, SAMPLE_RATE)["drums"]
            assert drums.shape == waveform.shape
            np.testing.assert_allclose(drums, expected, atol=1.5 / 32768)


def test_mp3_of_a_rate_mp3_lacks_is_a_clear_error_and_the_wav_stays(separator, tmp_path):
    with running_server({"tiny": separator}, tmp_path / "cache") as (url, _):
        _, _, created = submit(url, audio_bytes(music_like(9600, sample_rate=96000), 96000))
        done = wait_until(url, created["id"])
        assert done["status"] == "done" and done["sample_rate"] == 96000
        status, _, body = request(url + done["stems"][0]["mp3"])
        assert status == 422 and json.loads(body)["error"].startswith("No MP3 of this stem: ")
        status, _, wav = request(url + done["stems"][0]["wav"])
        assert status == 200 and sf.info(io.BytesIO(wav)).samplerate == 96000


# The cache: expiry, quota, restarts.


def test_results_expire_and_are_deleted(separator, tmp_path):
    cache = tmp_path / "cache"
    with running_server({"tiny": separator}, cache, expiry=2.0) as (url, _):
        _, _, created = submit(url, audio_bytes(music_like(5000)))
        done = wait_until(url, created["id"])
        assert done["status"] == "done" and (cache / "jobs" / done["id"]).is_dir()
        deadline = time.monotonic() + 10
        while request(f"{url}/v1/jobs/{done['id']}")[0] == 200:
            assert time.monotonic() < deadline, "the job did not expire"
            time.sleep(0.05)
        status, _, body = request(url + done["stems"][0]["wav"])
        assert status == 404 and "expired" in json.loads(body)["error"]
        wait = time.monotonic() + 5
        while (cache / "jobs" / done["id"]).exists():  # the clean-up thread deletes the files
            assert time.monotonic() < wait, "the expired results were not deleted"
            time.sleep(0.05)


def test_quota_deletes_the_oldest_results_and_refuses_files_too_big_for_it(separator, tmp_path):
    two_seconds = audio_bytes(music_like(2 * SAMPLE_RATE, seed=1))  # 3 stems x 353 kB of WAV
    cache = tmp_path / "cache"
    with running_server({"tiny": separator}, cache, quota_mb=1.5) as (url, manager):
        _, _, first = submit(url, two_seconds)
        assert wait_until(url, first["id"])["status"] == "done"
        _, _, second = submit(url, two_seconds)
        assert wait_until(url, second["id"])["status"] == "done"
        assert request(f"{url}/v1/jobs/{first['id']}")[0] == 404  # evicted to make room
        assert not (cache / "jobs" / first["id"]).exists()
        assert manager.usage() <= 1.5e6
        assert request(f"{url}/v1/jobs/{second['id']}/stems.zip")[0] == 200
        status, _, refused = submit(url, audio_bytes(music_like(5 * SAMPLE_RATE)))
        assert status == 413 and refused["kind"] == "too_big" and "1.5 MB" in refused["error"]
        assert not list((cache / "uploads").iterdir())


def test_restart_restores_complete_results_and_drops_half_written_ones(separator, tmp_path):
    cache = tmp_path / "cache"
    with running_server({"tiny": separator}, cache) as (url, _):
        _, _, created = submit(url, audio_bytes(music_like(6000)), filename="kept.wav")
        done = wait_until(url, created["id"])
    # What a crash leaves: a partial folder, a folder without its record, an upload.
    half = cache / "jobs" / f"{uuid.uuid4()}.partial"
    half.mkdir()
    (half / "vocals.wav").write_bytes(b"RIFF")
    broken = cache / "jobs" / str(uuid.uuid4())
    broken.mkdir()
    (broken / "vocals.wav").write_bytes(b"RIFF")
    (cache / "uploads" / "0123.wav").write_bytes(b"x")
    with running_server({"tiny": separator}, cache) as (url, manager):
        restored = job(url, done["id"])
        assert restored["status"] == "done" and restored["filename"] == "kept.wav"
        assert request(url + restored["zip"])[0] == 200
        assert request(f"{url}/v1/jobs/{broken.name}")[0] == 404
        assert not half.exists() and not broken.exists() and not list((cache / "uploads").iterdir())
        with pytest.raises(StemtfError, match="in use by another stemtf server") as caught:
            JobManager({"tiny": separator}, cache).start()
        # The library names its keyword; the CLI (stemtf serve) prints the flag.
        assert str(caught.value).endswith("choose another `cache_dir`.") and caught.value.for_cli().endswith("choose another --cache-dir.")


# Bad requests.


def test_bad_job_ids_and_stem_names_get_404_json(separator, tmp_path):
    with running_server({"tiny": separator}, tmp_path / "cache") as (url, _):
        _, _, created = submit(url, audio_bytes(music_like(5000)))
        done = wait_until(url, created["id"])
        base = f"/v1/jobs/{done['id']}"
        host, port = url.removeprefix("http://").split(":")
        for path in ["/v1/jobs/nope", f"/v1/jobs/{uuid.uuid4()}", f"/v1/jobs/{uuid.uuid1()}", "/v1/jobs/..%2F..%2Fsetup.cfg",
                     f"/v1/jobs/{done['id'].upper()}", f"{base}/stems/job.json", f"{base}/stems/vocals.flac",
                     f"{base}/stems/..%2Fjob.json", f"{base}/stems/%2E%2E%2Fjob.wav", f"{base}/stems/bass.wav",
                     "/static/..%2F..%2Fjobs.py", "/static/jobs.py", f"/v1/jobs/{uuid.uuid4()}/stems.zip"]:
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            assert response.status == 404, (path, body)
            assert "error" in json.loads(body), path
        status, _, body = request(f"{url}/v1/jobs/{uuid.uuid4()}", method="DELETE")
        assert status == 404 and json.loads(body)["kind"] == "not_found"


def test_path_tricks_in_file_names_never_reach_the_file_system(separator, tmp_path):
    cache = tmp_path / "cache"
    data = audio_bytes(music_like(5000))
    with running_server({"tiny": separator}, cache) as (url, _):
        names = {"../../../evil.wav": "evil", "..\\..\\evil2.wav": "evil2", "/etc/passwd": "passwd",
                 'quote".wav': 'quote"', ".hidden": "hidden", "a/..": "upload"}
        for filename, download in names.items():
            status, _, created = submit(url, data, filename=filename)
            assert status == 202, (filename, created)
            done = wait_until(url, created["id"])
            assert done["status"] == "done", done
            _, headers, _ = request(url + done["zip"])
            header = headers["content-disposition"]
            header.encode("ascii")
            given = header.split("filename*=UTF-8''")[1] if "filename*" in header else header.split('filename="')[1][:-1]
            assert urllib.parse.unquote(given) == f"{download}_stems.zip", (filename, header)
            assert "/" not in done["filename"] and "\\" not in done["filename"]
    assert not (tmp_path / "evil.wav").exists() and not (cache / "evil.wav").exists()
    for entry in (cache / "jobs").iterdir():
        assert UUID4.match(entry.name), entry
        assert sorted(p.name for p in entry.iterdir()) == sorted(["job.json", "vocals.wav", "drums.wav", "other.wav"])


def test_oversize_uploads_are_refused_without_expect_100_continue(separator, tmp_path):
    with running_server({"tiny": separator}, tmp_path / "cache", max_upload_mb=1.0) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        # A declared length over the limit: answered before any of the body is sent.
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.putrequest("POST", "/v1/jobs")
        connection.putheader("Content-Type", "multipart/form-data; boundary=x")
        connection.putheader("Content-Length", str(500_000_000))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        answer = json.loads(response.read())
        assert answer["kind"] == "too_big" and "1 MB" in answer["error"]
        connection.close()
        # No declared length (chunked): counted while it arrives, refused once over the limit.
        body, content_type = form([("model", None, b"tiny"), ("file", "big.wav", os.urandom(3_000_000))])
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.putrequest("POST", "/v1/jobs")
        connection.putheader("Content-Type", content_type)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        try:
            for start in range(0, len(body), 65536):
                block = body[start:start + 65536]
                connection.send(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["kind"] == "too_big"
        connection.close()
        assert not list((tmp_path / "cache" / "uploads").iterdir())
        assert request(f"{url}/v1/separators")[0] == 200  # still up


@pytest.mark.parametrize(("fields", "status", "kind", "pattern"), [
    ([("model", None, b"tiny"), ("file", "notes.wav", b"not audio at all " * 40)], 400, "not_audio", "'notes.wav' is not audio"),
    ([("model", None, b"tiny"), ("file", "empty.wav", b"")], 400, "not_audio", "empty"),
    ([("model", None, b"nope"), ("file", "a.wav", b"x")], 400, "unknown_model", "Unknown model 'nope'; this server offers tiny"),
    ([("model", None, b"tiny"), ("song", "a.wav", b"x")], 400, "bad_request", "field named 'file'"),
    ([("model", None, b"tiny"), ("file", "long.wav", audio_bytes(np.zeros((int(3.5 * 8000), 1), np.float32), 8000))],
     413, "too_long", r"'long.wav' is 3.5 s long; this server separates at most 3.0 s"),
])
def test_bad_uploads_get_sentences_and_kinds(separator, tmp_path, fields, status, kind, pattern):
    with running_server({"tiny": separator}, tmp_path / "cache", max_duration=3.0) as (url, _):
        body, content_type = form(fields)
        got, _, answer = request(f"{url}/v1/jobs", body=body, headers={"Content-Type": content_type})
        answer = json.loads(answer)
        assert got == status and answer["kind"] == kind, answer
        assert re.search(pattern, answer["error"])
        assert not list((tmp_path / "cache" / "uploads").iterdir())
        status, _, body = request(f"{url}/v1/jobs", body=b"raw", headers={"Content-Type": "audio/wav"})
        assert status == 400 and "multipart/form-data" in json.loads(body)["error"]


def test_page_and_separators_are_served(separator, tmp_path):
    with running_server({"tiny": separator}, tmp_path / "cache", max_duration=42.0) as (url, _):
        status, headers, html = request(url + "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'<script src="/static/app.js"' in html and b"http" not in html.split(b"<body")[1]  # nothing from elsewhere
        for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css")]:
            status, headers, body = request(f"{url}/static/{name}")
            assert status == 200 and headers["content-type"].startswith(kind) and len(body) > 1000
            assert b"https://" not in body and b"http://" not in body
        status, _, body = request(url + "/v1/separators")
        options = json.loads(body)
        assert options["models"] == [{"name": "tiny", "stems": ["vocals", "drums", "other"], "sample_rate": SAMPLE_RATE}]
        assert options["max_duration"] == 42.0 and options["max_upload_mb"] == 5.0
        status, _, body = request(url + "/v1/models/tiny")  # no exported model in this server
        assert status == 404 and "no exported model" in json.loads(body)["error"]


# The command line.


def test_cli_serve_rejects_bad_page_options_in_one_line(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args, pattern in [
        (["--models", "2stems,nope"], "Unknown model 'nope'"),
        (["--models", " , "], "--models must name at least one model"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--queue-length", "0"], "--queue-length must be >= 1"),
        (["--cache-quota-mb", "0"], "--cache-quota-mb must be > 0"),
        (["--expiry-minutes", "-1"], "--expiry-minutes must be > 0. Received -1."),
        (["--cache-dir", str(a_file)], "is a file"),
    ]:
        code = main(["serve", *args])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("stemtf: error: "), err
        assert pattern in lines[0]


def test_library_limits_name_their_keywords_and_the_cli_its_flags():
    from stemtf.serve import serve
    from stemtf.serve.jobs import check_options

    good = {"max_queue": 8, "workers": 1, "quota_mb": 10.0, "expiry": 60.0, "max_duration": 10.0}
    for keyword, bad, message, cli in [
        ("max_queue", 0, "`max_queue` must be >= 1. Received 0.", "--queue-length must be >= 1. Received 0."),
        ("workers", 0, "`workers` must be >= 1. Received 0.", "--workers must be >= 1. Received 0."),
        ("quota_mb", 0.0, "`quota_mb` must be > 0. Received 0.", "--cache-quota-mb must be > 0. Received 0."),
        ("expiry", -60.0, "`expiry` must be > 0. Received -60 s.", None),  # the CLI checks its --expiry-minutes
        ("max_duration", float("nan"), "`max_duration` must be > 0. Received nan s.", "--max-duration must be > 0. Received nan s."),
    ]:
        with pytest.raises(StemtfError) as caught:
            check_options(**{**good, keyword: bad})
        assert str(caught.value) == message and "--" not in str(caught.value)
        if cli is not None:
            assert caught.value.for_cli() == cli
    with pytest.raises(StemtfError, match="^`max_queue` must be >= 1"):  # before any model loads
        serve("no-such-model", max_queue=0, port=0)
    from stemtf.serve.guard import parse_origin

    with pytest.raises(StemtfError) as caught:
        parse_origin("ftp://stems.example.com")
    assert str(caught.value).startswith("`allow_origins` takes origins like https://")
    assert caught.value.for_cli().startswith("--allow-origin takes origins like https://")


def test_serve_defaults_agree_between_the_cli_the_library_and_the_job_manager():
    import inspect

    from stemtf import options
    from stemtf.cli.serving import serve_command
    from stemtf.serve import serve

    cli = {name: param.default.default for name, param in inspect.signature(serve_command).parameters.items()}
    library = {name: param.default for name, param in inspect.signature(serve).parameters.items()}
    manager = {name: param.default for name, param in inspect.signature(JobManager).parameters.items()}
    assert cli["queue_length"] == library["max_queue"] == manager["max_queue"] == options.DEFAULT_MAX_QUEUE
    assert cli["workers"] == library["workers"] == manager["workers"] == options.DEFAULT_WORKERS
    assert cli["cache_quota_mb"] == library["quota_mb"] == manager["quota_mb"] == options.DEFAULT_QUOTA_MB
    assert cli["expiry_minutes"] * 60 == library["expiry"] == manager["expiry"] == options.DEFAULT_EXPIRY
    assert cli["max_duration"] == library["max_duration"] == manager["max_duration"] == options.DEFAULT_MAX_DURATION
    for keyword in ("model", "host", "port", "max_upload_mb", "max_concurrency", "read_timeout", "max_connections"):
        assert cli[keyword] == library[keyword], keyword


@pytest.mark.slow
def test_cli_serve_prints_the_url_and_serves_page_jobs_and_tf_serving(tiny_model_dir, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "stemtf.cli", "serve", str(tiny_model_dir), "--port", str(port),
         "--cache-dir", str(tmp_path / "cache"), "--expiry-minutes", "5", "--queue-length", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        shown = []
        while not shown or not shown[-1].startswith("Open "):  # printed once the server listens
            line = process.stdout.readline()
            assert line, process.stderr.read()[-2000:]
            if not line.startswith("On-device separation:"):  # built in the background: its line may come any time
                shown.append(line.rstrip("\n"))
        assert shown[-1] == f"Open http://127.0.0.1:{port}/ in a browser. Ctrl-C to stop.", shown
        assert shown[0] == "Loading tiny (vocals, drums, other)..." and any(line.startswith("Loaded tiny with ") for line in shown), shown
        url = f"http://127.0.0.1:{port}"
        assert request(url + "/")[0] == 200
        options = json.loads(request(url + "/v1/separators")[2])
        assert [m["name"] for m in options["models"]] == ["tiny"] and options["max_queue"] == 3 and options["expiry"] == 300
        assert request(f"{url}/v1/models/tiny")[0] == 200  # TF Serving's API, from the temporary export
        status, _, created = submit(url, audio_bytes(music_like(8000)))
        assert status == 202, created
        assert wait_until(url, created["id"])["status"] == "done"
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert err == ""
    lines = [line for line in out.splitlines() if not line.startswith("On-device separation:")]
    assert re.fullmatch(r"Job [0-9a-f]{8} 'song.wav' \(tiny, [0-9.]+ s\): done in [0-9.]+ s", lines[0]), out
    assert lines[-1] == "Stopped."
