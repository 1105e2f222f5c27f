"""Hostile web pages and hostile sockets: Origin and Host checks (DNS rebinding), deadlines, and room for other clients."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from stemtf.cli import main
from stemtf.serve.guard import OriginGuard, parse_origin
from stemtf.serve.server import address_lines

from web_server import running_server


def ask(url, *, method="GET", headers=None, body=None, timeout=20):
    """``(status, JSON or raw body)`` of one request with the given headers (4xx/5xx included)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, data = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, data = error.code, error.read()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    """A server with the page and the job API only (no model needed to check who may ask); yields ``(url, manager)``."""
    with running_server({}, tmp_path_factory.mktemp("guard"),
                        app_options={"allowed_origins": ["https://stems.example.com"]}) as running:
        yield running


def form_body():
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            f"RIFF\r\n--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_another_sites_page_cannot_post_jobs_or_read_results(page_server):
    url, manager = page_server
    body, headers = form_body()
    for origin in ["http://evil.example", "null", "http://localhost:1"]:  # a form POST from another page
        status, answer = ask(f"{url}/v1/jobs", method="POST", body=body, headers={**headers, "Origin": origin})
        assert status == 403 and answer["kind"] == "forbidden" and "other web sites" in answer["error"], answer
    job = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    for path in [f"/v1/jobs/{job}", f"/v1/jobs/{job}/stems.zip", "/v1/separators"]:
        status, answer = ask(url + path, headers={"Origin": "http://evil.example"})
        assert status == 403 and answer["kind"] == "forbidden", (path, answer)
        status, answer = ask(url + path, headers={"Sec-Fetch-Site": "cross-site"})  # <audio src> on another site
        assert status == 403, (path, answer)
    status, answer = ask(f"{url}/v1/jobs/{job}", method="DELETE", headers={"Origin": "http://evil.example"})
    assert status == 403
    assert list(manager.uploads_dir.iterdir()) == []


def test_dns_rebinding_is_refused_by_the_host_header(page_server):
    url, _ = page_server
    port = url.rsplit(":", 1)[1]
    for host in [f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"]:
        status, answer = ask(f"{url}/v1/separators", headers={"Host": host})
        assert status == 403 and "DNS rebinding" in answer["error"], (host, answer)
        status, _ = ask(f"{url}/", headers={"Host": host})  # the page too: it would read the rebound answers
        assert status == 403


def test_own_page_loopback_names_and_allowed_origins_are_served(page_server):
    url, _ = page_server
    port = url.rsplit(":", 1)[1]
    for host, origin in [(f"127.0.0.1:{port}", None), (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"),
                         (f"localhost:{port}", f"http://localhost:{port}"), ("stems.example.com", "https://stems.example.com"),
                         (f"127.0.0.1:{port}", "https://stems.example.com")]:
        headers = {"Host": host, **({"Origin": origin} if origin else {})}
        status, answer = ask(f"{url}/v1/separators", headers=headers)
        assert status == 200 and answer["models"] == [], (host, origin, answer)
    status, _ = ask(f"{url}/", headers={"Sec-Fetch-Site": "cross-site"})  # a link to the page is fine
    assert status == 200


def test_guard_knows_the_bound_name_and_wildcards():
    scope = lambda host: {"type": "http", "scheme": "http", "path": "/", "headers": [(b"host", host.encode())]}  # noqa: E731
    named = OriginGuard(None, host="studio.lan")
    assert named.refusal(scope("studio.lan:8501")) is None and named.refusal(scope("other.lan:8501")) is not None
    assert named.refusal(scope("192.168.1.20:8501")) is None  # an address cannot be rebound
    everywhere = OriginGuard(None, host="0.0.0.0")
    assert everywhere.refusal(scope(f"{socket.gethostname()}:8501")) is None
    assert parse_origin("HTTPS://Stems.Example.com/") == "https://stems.example.com"
    assert parse_origin("box.lan:8501") == "http://box.lan:8501"
    for bad in ["ftp://x", "http://x/path", "http://"]:
        with pytest.raises(ValueError):
            parse_origin(bad)


def test_binding_every_interface_warns_and_prints_a_url_that_works():
    lines = address_lines("0.0.0.0", 8501)
    assert lines[0].startswith("Warning: listening on 0.0.0.0:8501, reachable from other machines")
    assert "127.0.0.1" not in lines[-1] and lines[-1].startswith("Open http://") and "Ctrl-C to stop" in lines[-1]
    assert address_lines("127.0.0.1", 8501) == ["Open http://127.0.0.1:8501/ in a browser. Ctrl-C to stop."]
    assert address_lines("::1", 80) == ["Open http://[::1]:80/ in a browser. Ctrl-C to stop."]
    assert address_lines("192.168.1.20", 8501)[0].startswith("Warning:")


def test_cli_rejects_a_bad_allowed_origin_in_one_line(capsys):
    code = main(["serve", "x", "--allow-origin", "ftp://stems.example.com"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--allow-origin takes origins like" in err, err


# Sockets that send nothing, or trickle: the other clients are still served, and deadlines close them.


class Crowd:
    """``count`` hostile sockets to a server: silent ones, header tricklers and body tricklers, in turn.

    A thread sends the tricklers' next byte or header line every ``interval`` seconds, ``rounds`` times at
    most (it stops by itself); :meth:`closed` counts the sockets the server has closed.
    """

    def __init__(self, url: str, count: int, *, interval: float, rounds: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.socks, self.kinds = [], []
        for index in range(count):
            sock = socket.create_connection((host, int(port)), timeout=10)
            kind = ("silent", "head", "body")[index % 3]
            if kind == "head":
                sock.sendall(f"GET /v1/separators HTTP/1.1\r\nHost: {host}\r\n".encode())
            elif kind == "body":
                sock.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                              "Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
                              ).encode())
            self.socks.append(sock)
            self.kinds.append(kind)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, args=(interval, rounds), daemon=True)
        self._thread.start()

    def _trickle(self, interval: float, rounds: int) -> None:
        for round_ in range(rounds):
            if self._stop.wait(interval):
                return
            for sock, kind in zip(self.socks, self.kinds):
                try:
                    if kind == "head":
                        sock.sendall(f"X-Trickle-{round_}: 1\r\n".encode())
                    elif kind == "body":
                        sock.sendall(b"x")
                except OSError:
                    pass  # closed by the server

    def closed(self, wait: float) -> dict[str, list[bytes]]:
        """What each kind of socket read until the server closed it (``wait`` s at most each); open ones are left out."""
        answers: dict[str, list[bytes]] = {"silent": [], "head": [], "body": []}
        self.reset = []  # the kinds of the sockets closed by a reset rather than an orderly FIN
        deadline = time.monotonic() + wait
        for sock, kind in zip(self.socks, self.kinds):
            data = b""
            try:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                while chunk := sock.recv(65536):
                    data += chunk
            except TimeoutError:
                continue  # still open at the deadline
            except ConnectionResetError:
                self.reset.append(kind)  # what was read before the reset is what the client saw
            answers[kind].append(data)
        return answers

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.socks:
            sock.close()


def test_64_idle_and_trickling_connections_do_not_lock_other_clients_out(tmp_path):
    with running_server({}, tmp_path / "cache", max_connections=64) as (url, _):
        crowd = Crowd(url, 64, interval=0.5, rounds=40)
        try:
            time.sleep(1.5)  # the tricklers have sent a few bytes each
            for _ in range(6):  # each new client makes room by closing a silent or slow socket
                status, answer = ask(f"{url}/v1/separators", timeout=10)
                assert status == 200 and answer["models"] == [], answer
        finally:
            crowd.close()


def test_silent_and_trickling_connections_are_closed_by_their_deadlines(tmp_path):
    with running_server({}, tmp_path / "cache", read_timeout=0.5,
                        connection_options={"idle_timeout": 0.5, "header_timeout": 0.5}) as (url, manager):
        crowd = Crowd(url, 6, interval=0.1, rounds=60)
        try:
            answers = crowd.closed(wait=5.0)
        finally:
            crowd.close()
        assert answers["silent"] == [b"", b""]  # closed without a word
        assert len(answers["head"]) == 2 and all(b" 408 " in data.split(b"\r\n")[0] for data in answers["head"]), answers
        assert len(answers["body"]) == 2, answers  # 1 byte per 0.1 s: under the minimum rate
        assert crowd.reset == [], crowd.reset  # the server lingered: a byte unread at its close caused no reset
        for data in answers["body"]:
            head, _, body = data.partition(b"\r\n\r\n")
            assert b" 408 " in head.split(b"\r\n")[0] and json.loads(body)["kind"] == "timeout"
            assert "too slowly" in json.loads(body)["error"]
        assert list(manager.uploads_dir.iterdir()) == []
        status, _ = ask(f"{url}/v1/separators")
        assert status == 200


# The page's on-device files (helper E's web export) under /device/, cross-origin isolated.


def test_device_files_are_served_once_built_and_only_from_their_folder(tmp_path):
    from stemtf.serve.web import DeviceFiles

    folder = tmp_path / "web"
    (folder / "models").mkdir(parents=True)
    (folder / "device.js").write_text("// worker")
    (folder / "models" / "tiny.tflite").write_bytes(b"TFL3")
    (tmp_path / "secret.txt").write_text("no")
    device = DeviceFiles()
    with running_server({}, tmp_path / "cache", app_options={"device": device}) as (url, _):
        status, answer = ask(f"{url}/v1/separators")
        assert status == 200 and "device" not in answer  # not built yet: separate on the server only
        assert ask(f"{url}/device/device.js")[0] == 404
        device.folder = folder
        status, answer = ask(f"{url}/v1/separators")
        assert answer["device"] == "/device/"
        port = url.rsplit(":", 1)[1]
        worker = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "worker"}
        request = urllib.request.Request(f"{url}/device/device.js", headers=worker)
        with urllib.request.urlopen(request, timeout=20) as response:
            assert response.read() == b"// worker" and response.headers["Content-Type"].startswith("text/javascript")
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert ask(f"{url}/device/models/tiny.tflite")[1] == b"TFL3"
        for bad in ["../secret.txt", "%2e%2e/secret.txt", ".hidden", "models/../../secret.txt", ""]:
            assert ask(f"{url}/device/{bad}")[0] == 404, bad
        with urllib.request.urlopen(f"{url}/", timeout=20) as response:  # the page itself is isolated too
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert ask(f"{url}/device/device.js", headers={"Origin": "http://evil.example"})[0] == 403
