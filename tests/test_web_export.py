"""``stemtf export MODEL --format web``: the static folder, served by a real static file server on
127.0.0.1 (``http.server`` in a thread, as ``python -m http.server`` serves it), opened in a real
headless Chromium (Debian ``chromium`` + ``chromium-driver``, through Selenium), separating real
audio with LiteRT.js in WebAssembly. The stems the browser offers for download are compared with
stemtf's own separator (LiteRT, the same ``.tflite`` file) sample by sample.

Needs the LiteRT.js runtime (``npm ci`` in the stemtf folder); skips with that advice otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import pathlib
import threading
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

import stemtf.export.web as web  # not `from stemtf.export import web`: the package's __getattr__ would load TensorFlow

from chromium import headless_chromium
from conftest import EXAMPLE, SAMPLE_RATE, music_like



def _runtime() -> pathlib.Path:
    try:
        return web.find_runtime()
    except Exception:
        pytest.skip("no LiteRT.js runtime here: run `npm ci` in the stemtf folder (sh scripts/install-web-runtime.sh)")


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10 of the reference's energy over the difference's."""
    noise = np.sum((reference.astype(np.float64) - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-30)))


@contextlib.contextmanager
def static_server(folder: pathlib.Path, *, isolation: bool = False):
    """``python -m http.server -d FOLDER`` in a thread on a free 127.0.0.1 port; yields its base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def end_headers(self):
            if isolation:
                for name, value in web.ISOLATION_HEADERS.items():
                    self.send_header(name, value)
            super().end_headers()

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """A headless Chromium that downloads into a folder and keeps the console; ``(driver, downloads)``."""
    downloads = tmp_path_factory.mktemp("web-downloads")
    with headless_chromium(downloads, console=True) as driver:
        yield driver, downloads


def wait_for(condition, timeout=60.0, what="the page"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def click_download(driver, element, downloads: pathlib.Path, name: str) -> pathlib.Path:
    """Click a download link; the finished file (named by the page) in ``downloads``."""
    target = downloads / name
    target.unlink(missing_ok=True)
    driver.execute_script("arguments[0].click();", element)
    wait_for(lambda: target.is_file() and not list(downloads.glob("*.crdownload")), what=f"the download of {name}")
    return target


def separate_in_page(driver, url: str, song: pathlib.Path, *, model: str | None = None, timeout: float = 120.0) -> str:
    """Open the page, choose ``song`` and press Separate; the final status text (or the error's)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(url)
    driver.get_log("browser")  # start from a clean console
    by_id = lambda name: driver.find_element(By.ID, name)  # noqa: E731
    wait_for(lambda: by_id("model").find_elements(By.TAG_NAME, "option"), what="the model list")
    if model:
        Select(by_id("model")).select_by_value(model)
    by_id("file").send_keys(str(song))
    wait_for(lambda: by_id("separate").is_enabled(), what="the Separate button")
    by_id("separate").click()
    return wait_for(lambda: driver.execute_script(
        "const b = document.body.dataset.state; if (b === 'ready') return 'ready: ' + document.getElementById('job-status').textContent;"
        "if (b === 'error' || !document.getElementById('error').hidden) return 'error: ' + document.getElementById('error-text').textContent;"
        "return null;"), timeout=timeout, what="the separation in the page")


@pytest.fixture(scope="module")
def tiny_web(tmp_path_factory, tiny_model_dir):
    """The tiny model exported for the web in float32 (the file `stemtf separate` runs: the JS port is
    then compared with the numpy engine alone), with a 2 s song limit."""
    _runtime()
    folder = tmp_path_factory.mktemp("web") / "tiny-web"
    web.export_web(tiny_model_dir, folder, quantize="none", max_duration=2.0)
    return folder


def test_the_folder_is_complete_and_fetches_nothing_from_elsewhere(tiny_web, tiny_model_dir):
    from stemtf import runtimes
    from stemtf.config import load_model_config

    index = json.loads((tiny_web / web.INDEX_FILE).read_text())
    (entry,) = index["models"]
    assert entry["name"] == "tiny" and entry["stems"] == ["vocals", "drums", "other"]
    assert entry["description"]["kind"] == "masks" and entry["description"]["chunk_samples"] == 3904
    config, directory = load_model_config(tiny_model_dir)
    cached = runtimes.litert_cache_path(directory, config, segment_frames=config.segment_frames, precision="float32")
    assert (tiny_web / entry["file"]).read_bytes() == cached.read_bytes()  # the very model `stemtf separate` runs
    assert index["max_duration"] == 2.0 and index["runtime"]["version"] == web.runtime_version(web.find_runtime())
    litert = (tiny_web / "litert" / "index.js").read_text()
    assert '"./wasm-utils.js"' in litert and '"@litertjs/wasm-utils"' not in litert
    for build in web.WASM_BUILDS:
        assert (tiny_web / "litert" / "wasm" / f"{build}.wasm").stat().st_size > 1_000_000
    html = (tiny_web / "index.html").read_text()
    assert 'data-mode="device"' in html and 'src="/' not in html and 'href="/' not in html and "on-device" not in html
    for name in ("index.html", "app.js", "app.css", "device.js", "worker.js"):
        text = (tiny_web / name).read_text()
        assert "http://" not in text and "https://" not in text, name
    assert "Apache" in (tiny_web / "NOTICE.md").read_text()


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``stemtf ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    from stemtf.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, text: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("stemtf: error: ") and text in lines[0], err


def test_cli_writes_the_folder_and_refuses_to_overwrite(tmp_path, tiny_model_dir, capsys):
    _runtime()
    target = tmp_path / "out"
    code, out, err = run_cli(capsys, "export", tiny_model_dir, "--format", "web", "-o", target)
    assert code == 0, err
    assert [p.name for p in (target / "models").glob("*.tflite")] == ["tiny_masks_float16.tflite"]  # the web's default
    assert "python -m http.server" in out
    marker = (target / "index.html").read_bytes()
    code, _, err = run_cli(capsys, "export", tiny_model_dir, "--format", "web", "-o", target)
    assert_one_line_error(code, err, "already exists; pass --overwrite")
    assert (target / "index.html").read_bytes() == marker
    for extra, word in ((["--latency", "0.5"], "--latency"), (["--chunk-seconds", "5"], "--chunk-seconds"),
                        (["--quantize", "int4"], "--quantize"), (["--max-duration", "0"], "--max-duration")):
        code, _, err = run_cli(capsys, "export", tiny_model_dir, "--format", "web", "-o", tmp_path / "x", *extra)
        assert_one_line_error(code, err, word)
        assert not (tmp_path / "x").exists()
    code, _, err = run_cli(capsys, "export", tiny_model_dir, "--format", "onnx", "--max-duration", "5", "-o", tmp_path / "y")
    assert_one_line_error(code, err, "--max-duration")


def test_a_missing_runtime_is_one_sentence_before_any_work(tmp_path, tiny_model_dir):
    from stemtf.errors import MissingExtraError

    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(MissingExtraError, match="npm ci"):
        web.export_web(tiny_model_dir, tmp_path / "out", runtime_dir=empty)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def _fake_folder_writer(calls: list, fail_after: int | None = None):
    """A write_folder that writes index.html and one model file, or fails (disk full) after ``fail_after`` files."""

    def write_folder(models, target, **_):
        calls.append(pathlib.Path(target))
        target.mkdir(parents=True)
        for count, name in enumerate((web.INDEX_FILE, "model.tflite")):
            if count == fail_after:
                raise OSError(28, "No space left on device")
            (target / name).write_text(f"written by call {len(calls)}")

    return write_folder


def test_export_web_stages_the_folder_and_places_it_whole(tmp_path, tiny_model_dir, monkeypatch):
    from stemtf.errors import OutputError

    monkeypatch.setattr(web, "find_runtime", lambda runtime_dir=None: tmp_path)
    calls: list = []
    target = tmp_path / "out"
    monkeypatch.setattr(web, "write_folder", _fake_folder_writer(calls, fail_after=1))
    with pytest.raises(OutputError, match=r"Cannot write .*out'.*No space left on device"):
        web.export_web(tiny_model_dir, target)
    assert calls[0].parent != tmp_path and not calls[0].exists()  # written in a staging folder, removed
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written, no staging left
    monkeypatch.setattr(web, "write_folder", _fake_folder_writer(calls))
    assert web.export_web(tiny_model_dir, target) == target
    assert sorted(p.name for p in target.iterdir()) == sorted([web.INDEX_FILE, "model.tflite"])
    with pytest.raises(OutputError, match=r"already exists; pass `overwrite`") as raised:
        web.export_web(tiny_model_dir, target)
    assert "pass --overwrite" in raised.value.for_cli() and len(calls) == 2  # refused before any work
    (target / "mine.txt").write_text("old")
    web.export_web(tiny_model_dir, target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == sorted([web.INDEX_FILE, "model.tflite"])
    assert (target / web.INDEX_FILE).read_text() == "written by call 3" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_device_folder_is_built_once_in_a_staging_folder(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("STEMTF_CACHE", str(tmp_path / "cache"))  # its own cache: the session's holds other tests' folders
    monkeypatch.setattr(web, "find_runtime", lambda runtime_dir=None: tmp_path)
    monkeypatch.setattr(web, "runtime_version", lambda core: "0.0.test")
    calls: list = []
    monkeypatch.setattr(web, "write_folder", _fake_folder_writer(calls, fail_after=1))
    with pytest.raises(OSError, match="No space left on device"):
        web.device_folder([tiny_model_dir])
    assert not any(calls[0].parent.parent.iterdir())  # no half folder, no staging left
    monkeypatch.setattr(web, "write_folder", _fake_folder_writer(calls))
    folder = web.device_folder([tiny_model_dir])
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no staging left, no half folder
    assert web.device_folder([tiny_model_dir]) == folder and len(calls) == 2  # cached: built once

    def racing(models, target, **kwargs):  # another server finishes the same folder meanwhile
        _fake_folder_writer(calls)(models, target, **kwargs)
        final = target.parent.parent / target.name  # the staging folder is a sibling of the final one
        final.mkdir()
        (final / web.INDEX_FILE).write_text("theirs")

    monkeypatch.setenv("STEMTF_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setattr(web, "write_folder", racing)
    theirs = web.device_folder([tiny_model_dir])
    assert theirs != folder and (theirs / web.INDEX_FILE).read_text() == "theirs"  # kept, not replaced
    assert sorted(p.name for p in theirs.parent.iterdir()) == [theirs.name]


def test_device_file_serves_only_files_inside_the_folder(tiny_web):
    assert web.device_file(tiny_web, "index.html") == (tiny_web / "index.html").resolve()
    assert web.device_file(tiny_web, "litert/wasm/litert_wasm_internal.wasm") is not None
    for bad in ("", "../tiny-web/index.html", "litert/../index.html", "/etc/passwd", ".hidden", "litert", "nope.js"):
        assert web.device_file(tiny_web, bad) is None, bad


def _reference_stems(model, song: pathlib.Path, out: pathlib.Path) -> dict[str, np.ndarray]:
    """The stems of ``stemtf separate SONG -m MODEL --runtime litert`` (float32, 16-bit WAV files), read back."""
    from stemtf.cli import main

    assert main(["separate", str(song), "-m", str(model), "--runtime", "litert", "-o", str(out), "-q"]) == 0
    return {path.stem: sf.read(path, dtype="float32", always_2d=True)[0] for path in (out / song.stem).glob("*.wav")}


# The tiny model's chunks: 3904 samples, cross-faded over 976 (a stride of 2928). 65392 samples end
# exactly with the 22nd chunk (stemtf.plans.ChunkPlan keeps its tail unfaded); 66150 need a 23rd,
# zero-padded chunk.
@pytest.mark.parametrize("num_samples", [65392, 66150])
def test_the_page_separates_on_the_device_like_stemtf(chromium, tiny_web, tiny_model_dir, tmp_path, num_samples):
    """Many chunks of the tiny model with their cross-fades, through the page."""
    from selenium.webdriver.common.by import By

    driver, downloads = chromium
    song = tmp_path / "tones.wav"
    sf.write(song, music_like(num_samples, seed=3), SAMPLE_RATE, subtype="PCM_16")
    reference = _reference_stems(tiny_model_dir, song, tmp_path / "separated")
    with static_server(tiny_web) as url:
        status = separate_in_page(driver, url, song)
        assert status.startswith("ready: Separated 0:01.5 into 3 stems with tiny on this device"), status
        lanes = driver.find_elements(By.CSS_SELECTOR, "#lanes .lane")
        assert [lane.get_attribute("data-stem") for lane in lanes] == ["vocals", "drums", "other", "mixture"]
        for lane in lanes[:3]:
            stem = lane.get_attribute("data-stem")
            path = click_download(driver, lane.find_element(By.CSS_SELECTOR, "a.download-wav"), downloads, f"{stem}.wav")
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            assert rate == SAMPLE_RATE and data.shape == reference[stem].shape
            assert snr_db(reference[stem], data) > 60, (stem, snr_db(reference[stem], data))
        archive = click_download(driver, driver.find_element(By.ID, "zip"), downloads, "tones.zip")
        with zipfile.ZipFile(archive) as zipped:
            assert zipped.testzip() is None
            assert sorted(zipped.namelist()) == ["tones/drums.wav", "tones/other.wav", "tones/vocals.wav"]
            assert zipped.read("tones/vocals.wav") == (downloads / "vocals.wav").read_bytes()
        assert console_errors(driver) == []


def test_bad_input_is_a_sentence_and_the_page_stays_usable(chromium, tiny_web, tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = chromium
    garbage = tmp_path / "notes.mp3"
    garbage.write_bytes(b"this is not audio at all" * 100)
    long_song = tmp_path / "long.wav"
    sf.write(long_song, music_like(3 * SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    with static_server(tiny_web) as url:
        status = separate_in_page(driver, url, garbage)
        assert status == "error: This browser cannot decode notes.mp3; try a WAV, FLAC, OGG or MP3 file, or the server.", status
        status = separate_in_page(driver, url, long_song)
        assert "long.wav is 3 s long; this page separates at most 2 s" in status, status
        assert driver.find_element(By.ID, "separate").is_enabled()  # never frozen: ready for the next file
        assert console_errors(driver) == []


def test_a_song_beyond_the_devices_memory_is_a_sentence(chromium, tiny_web):
    """The worker's stems for a song whose length the browser cannot allocate (4e9 samples a channel,
    48 GB of stems): it answers with the sentence, it does not crash or hang."""
    driver, _ = chromium
    with static_server(tiny_web) as url:
        driver.get(url)
        driver.get_log("browser")
        answer = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            StemtfDevice.loadIndex("./").then((index) => {
              const worker = new Worker("worker.js");
              worker.onmessage = (event) => {
                if (event.data.type === "error" || event.data.type === "done") { worker.terminate(); done(event.data); }
              };
              const huge = { length: 4e9 };  // what the worker reads of a channel before allocating the stems
              worker.postMessage({ type: "start", base: location.href, model: index.models[0], channels: [huge, huge], threads: 0 });
            });""")
        assert answer == {"type": "error", "kind": "too_long",
                          "message": "This song is too long for this device's memory; try a shorter excerpt, or the server."}
        assert console_errors(driver) == []


def test_cancel_stops_the_worker(chromium, tiny_web, tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = chromium
    song = tmp_path / "song.wav"
    sf.write(song, music_like(int(1.9 * SAMPLE_RATE), seed=5), SAMPLE_RATE, subtype="PCM_16")
    with static_server(tiny_web) as url:
        driver.get(url)
        by_id = lambda name: driver.find_element(By.ID, name)  # noqa: E731
        wait_for(lambda: by_id("model").find_elements(By.TAG_NAME, "option"), what="the model list")
        by_id("file").send_keys(str(song))
        leave = ("const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented;")
        assert not driver.execute_script(leave)  # nothing running: leaving needs no question
        by_id("separate").click()
        # The worker is loading LiteRT.js (a fresh worker per song: about a second): closing the tab now
        # would end the separation, so the page asks first.
        wait_for(lambda: by_id("job-status").text.startswith(("Loading", "Separating")), what="the worker")
        assert driver.execute_script(leave)
        by_id("cancel").click()  # the worker is stopped wherever it is
        wait_for(lambda: by_id("job-status").text == "Cancelled.", what="the cancel")
        assert not driver.execute_script(leave)
        assert driver.execute_script("return document.body.dataset.state") == "idle"
        assert by_id("player").get_attribute("hidden") is not None and by_id("separate").is_enabled()
        assert console_errors(driver) == []


@pytest.mark.slow
def test_the_shipped_2stems_model_in_the_browser_matches_stemtf_separate(chromium, tmp_path):
    """The real model on the bundled 20 s song: browser stems (float16 weights, the web export's default)
    vs `stemtf separate`'s (float32), >= 40 dB each (measured: 55-66 dB; float32 in the page: 56-71 dB)."""
    from selenium.webdriver.common.by import By

    driver, downloads = chromium
    _runtime()
    folder = tmp_path / "2stems-web"
    web.export_web("2stems", folder)
    song = tmp_path / "caesium.wav"
    waveform, rate = sf.read(EXAMPLE, dtype="float32", always_2d=True)
    sf.write(song, waveform, rate, subtype="PCM_16")  # what the browser and soundfile decode identically
    reference = _reference_stems("2stems", song, tmp_path / "separated")
    with static_server(folder) as url:
        status = separate_in_page(driver, url, song, timeout=300)
        assert status.startswith("ready: Separated 0:20.0 into 2 stems with 2stems on this device"), status
        for stem in ("vocals", "accompaniment"):
            lane = driver.find_element(By.CSS_SELECTOR, f'#lanes .lane[data-stem="{stem}"]')
            path = click_download(driver, lane.find_element(By.CSS_SELECTOR, "a.download-wav"), downloads, f"{stem}.wav")
            data, _ = sf.read(path, dtype="float32", always_2d=True)
            assert data.shape == reference[stem].shape
            assert snr_db(reference[stem], data) >= 40, (stem, snr_db(reference[stem], data))
        assert console_errors(driver) == []


def test_the_server_page_separates_on_the_device_without_uploading(chromium, tiny_model_dir, tmp_path):
    """`stemtf serve`'s page with its /device/ files: "Separate on this device" runs LiteRT.js on
    WebAssembly threads (the page is cross-origin isolated) and never posts a job."""
    from selenium.webdriver.common.by import By

    from stemtf import serve
    from stemtf.serve.jobs import JobManager
    from stemtf.serve.web import DeviceFiles
    from web_server import serving

    driver, downloads = chromium
    _runtime()
    song = tmp_path / "tones.wav"
    sf.write(song, music_like(20000, seed=7), SAMPLE_RATE, subtype="PCM_16")
    reference = _reference_stems(tiny_model_dir, song, tmp_path / "separated")
    device = DeviceFiles()
    device.folder = web.device_folder([str(tiny_model_dir)], quantize="none")
    with JobManager({"tiny": str(tiny_model_dir)}, tmp_path / "jobs") as manager:
        submitted = []
        original = manager.submit
        manager.submit = lambda *args, **kwargs: submitted.append(args) or original(*args, **kwargs)
        app = serve.create_app(None, jobs=manager, device=device)
        with serving(app) as url:
            driver.get(url + "/")
            by_id = lambda name: driver.find_element(By.ID, name)  # noqa: E731
            wait_for(lambda: by_id("on-device-row").is_displayed(), what="the on-device switch")
            assert driver.execute_script("return self.crossOriginIsolated") is True
            driver.get_log("browser")
            by_id("on-device").click()
            by_id("file").send_keys(str(song))
            by_id("separate").click()
            wait_for(lambda: driver.execute_script("return document.body.dataset.state") in ("ready", "error"), what="the separation")
            assert by_id("job-status").text.endswith("with tiny on this device."), by_id("error-text").text
            timings = json.loads(driver.execute_script("return document.body.dataset.timings"))
            assert timings["threads"] >= 1  # the threaded LiteRT.js build
            lane = driver.find_element(By.CSS_SELECTOR, '#lanes .lane[data-stem="vocals"]')
            path = click_download(driver, lane.find_element(By.CSS_SELECTOR, "a.download-wav"), downloads, "vocals.wav")
            data, _ = sf.read(path, dtype="float32", always_2d=True)
            assert snr_db(reference["vocals"], data) > 60
            assert console_errors(driver) == []
        assert submitted == []  # nothing was uploaded
