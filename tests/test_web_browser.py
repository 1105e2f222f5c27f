"""The web page in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``, driven by
Selenium), and in headless Firefox ESR (spoken to over WebDriver BiDi: Debian has no geckodriver).

The server, the job manager and the separator are real (a tiny random-weight model); the page
uploads a real clip, follows the progress bar, decodes the stems with the Web Audio API, and the
test checks what a person would see and hear.
"""

import base64
import io
import json
import pathlib
import re
import shutil
import socket
import subprocess
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

from stemtf.separator import Separator

from conftest import EXAMPLE, SAMPLE_RATE
from chromium import headless_chromium
from web_server import running_server

CLIP_SECONDS = 4.0


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium that downloads into a temporary folder; ``(driver, download_dir)``."""
    downloads = tmp_path_factory.mktemp("downloads")
    with headless_chromium(downloads, extra_arguments=("--autoplay-policy=no-user-gesture-required",)) as driver:
        yield driver, downloads


def wait_for(condition, timeout=30.0, what="the page"):
    """Poll ``condition()`` until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_upload_separate_play_mute_download_and_errors(browser, tiny_model, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, downloads = browser
    model, config = tiny_model
    clip = tmp_path / "Caesium clip.ogg"
    waveform, rate = sf.read(EXAMPLE, dtype="float32", frames=int(CLIP_SECONDS * SAMPLE_RATE), always_2d=True)
    sf.write(clip, waveform, rate, format="OGG", subtype="VORBIS")
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"this is a shopping list, not a song\n" * 50)

    with running_server({"tiny": Separator(model, config)}, tmp_path / "cache") as (url, manager):
        driver.get(url + "/")
        by_id = lambda name: driver.find_element(By.ID, name)  # noqa: E731
        wait_for(lambda: by_id("model").get_attribute("value") == "tiny", what="the model list")
        chips = [chip.text for chip in driver.find_elements(By.CSS_SELECTOR, "#model-stems .chip")]
        assert chips == list(config.stems)

        # Upload a real clip and follow the progress bar to the end.
        by_id("file").send_keys(str(clip))
        wait_for(lambda: by_id("separate").is_enabled(), what="the Separate button")
        by_id("separate").click()
        seen = set()

        def finished():
            seen.add(by_id("progress").get_attribute("value"))
            return driver.execute_script("return document.body.dataset.state") == "ready"

        wait_for(finished, timeout=60, what="the separation and the player")
        assert by_id("progress").get_attribute("value") == "1"
        assert "Separated 0:04.0 into 3 stems" in by_id("job-status").text

        # One lane per stem plus the mixture, each as long as the clip.
        lanes = driver.find_elements(By.CSS_SELECTOR, "#lanes .lane")
        assert [lane.get_attribute("data-stem") for lane in lanes] == [*config.stems, "mixture"]
        for lane in lanes:
            assert float(lane.get_attribute("data-duration")) == pytest.approx(CLIP_SECONDS, abs=2e-3)
        # The waveform is drawn: the canvas of a non-silent stem has coloured pixels.
        painted = driver.execute_script(
            "const c = document.querySelector('.lane canvas');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return [n, c.width * c.height];"
        )
        assert 0.05 < painted[0] / painted[1] < 0.9
        # The spectrogram view of a lane fills its canvas with levels, not a flat colour.
        lanes[1].find_element(By.CSS_SELECTOR, "button.view").click()
        assert lanes[1].get_attribute("data-view") == "spectrogram"
        colours = driver.execute_script(
            "const c = document.querySelectorAll('.lane canvas')[1];"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "const seen = new Set(); let opaque = 0;"
            "for (let i = 0; i < d.length; i += 4) { if (d[i + 3] === 255) opaque++; seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); }"
            "return [opaque / (c.width * c.height), seen.size];"
        )
        assert colours[0] > 0.99 and colours[1] > 50

        # Mute one stem, solo another: the gains the Web Audio graph really uses follow.
        gains = lambda: {lane.get_attribute("data-stem"): lane.get_attribute("data-gain") for lane in lanes}  # noqa: E731
        assert gains() == {"vocals": "1.000", "drums": "1.000", "other": "1.000", "mixture": "0.000"}
        lanes[0].find_element(By.CSS_SELECTOR, "button.mute").click()
        assert gains() == {"vocals": "0.000", "drums": "1.000", "other": "1.000", "mixture": "0.000"}
        assert lanes[0].find_element(By.CSS_SELECTOR, "button.mute").get_attribute("aria-pressed") == "true"
        lanes[1].find_element(By.CSS_SELECTOR, "button.solo").click()
        assert gains() == {"vocals": "0.000", "drums": "1.000", "other": "0.000", "mixture": "0.000"}

        # The space bar plays: the transport moves.
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.SPACE)
        wait_for(lambda: by_id("play").get_attribute("aria-label") == "Pause", what="playback to start")
        wait_for(lambda: not by_id("time").text.startswith("0:00.0"), timeout=10, what="the time to move")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.SPACE)
        assert by_id("play").get_attribute("aria-label") == "Play"
        driver.save_screenshot(str(tmp_path / "web-player.png"))

        # Download the zip: every stem, as long as the clip.
        by_id("zip").click()
        archive = wait_for(lambda: next((p for p in downloads.glob("*.zip")), None), what="the zip download")
        wait_for(lambda: not list(downloads.glob("*.crdownload")), what="the download to finish")
        assert archive.name == "Caesium clip_stems.zip"  # the upload's own name, kept by RFC 6266's filename*
        with zipfile.ZipFile(archive) as bundle:
            assert sorted(bundle.namelist()) == sorted(f"{stem}.wav" for stem in config.stems)
            stem_audio, stem_rate = sf.read(io.BytesIO(bundle.read("drums.wav")), dtype="float32", always_2d=True)
        assert stem_rate == SAMPLE_RATE and stem_audio.shape == waveform.shape
        assert np.abs(stem_audio).max() > 0.01

        # A phone-width screen: nothing sticks out sideways.
        driver.set_window_size(390, 844)
        wait_for(lambda: driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"),
                 what="the page to fit a phone-width screen")
        driver.save_screenshot(str(tmp_path / "web-player-phone.png"))
        driver.set_window_size(1280, 900)

        # Garbage: a sentence in the page, and the page stays usable.
        by_id("file").send_keys(str(garbage))
        wait_for(lambda: by_id("separate").is_enabled(), what="the Separate button")
        by_id("separate").click()
        wait_for(lambda: by_id("error").is_displayed(), what="the error message")
        assert by_id("error-title").text == "Not an audio file."
        assert by_id("error-text").text.startswith("'notes.wav' is not audio that stemtf can read")
        assert "{" not in by_id("error-text").text  # words, not JSON
        assert by_id("separate").is_enabled()
        driver.save_screenshot(str(tmp_path / "web-error.png"))
        assert pathlib.Path(tmp_path / "web-player.png").stat().st_size > 10_000
        assert manager.usage() > 0


def test_queue_position_busy_server_and_cancel_in_the_page(browser, tiny_model, tmp_path):
    from selenium.webdriver.common.by import By

    from test_web import audio_bytes, long_clip, request, submit, wait_until

    driver, _ = browser
    model, config = tiny_model
    clip = tmp_path / "short.wav"
    clip.write_bytes(audio_bytes(np.zeros((SAMPLE_RATE, 2), np.float32)))
    with running_server({"tiny": Separator(model, config)}, tmp_path / "cache", max_queue=1, workers=1) as (url, _):
        by_id = lambda name: driver.find_element(By.ID, name)  # noqa: E731
        _, _, running = submit(url, long_clip(60))
        wait_until(url, running["id"], done=("running",))
        _, _, waiting = submit(url, long_clip(1))  # the only place in the queue is taken

        driver.get(url + "/")
        wait_for(lambda: by_id("model").get_attribute("value") == "tiny", what="the model list")
        by_id("file").send_keys(str(clip))
        wait_for(lambda: by_id("separate").is_enabled(), what="the Separate button")
        by_id("separate").click()
        wait_for(lambda: by_id("error").is_displayed(), what="the busy message")
        assert by_id("error-title").text == "The server is busy."
        assert re.search(r"Try again in about \d+ (s|min)", by_id("error-text").text)

        # A place frees up: the page's job waits in the queue, visibly, and can be cancelled.
        request(f"{url}/v1/jobs/{waiting['id']}", method="DELETE")
        by_id("separate").click()
        wait_for(lambda: "Waiting in the queue: next." in by_id("job-status").text, what="the queue position")
        assert not by_id("error").is_displayed()
        assert driver.execute_script("return document.body.dataset.state") == "queued"
        by_id("cancel").click()
        wait_for(lambda: by_id("job-status").text == "Cancelled.", what="the cancellation")
        assert driver.execute_script("return document.body.dataset.state") == "idle"
        assert by_id("separate").is_enabled()
        request(f"{url}/v1/jobs/{running['id']}", method="DELETE")
        assert wait_until(url, running["id"], timeout=30)["status"] == "cancelled"


class _Bidi:
    """A minimal WebDriver BiDi client over Firefox's own remote port (Debian has no geckodriver)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        import websocket

        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket = websocket.create_connection(f"ws://127.0.0.1:{port}/session", timeout=60, suppress_origin=True)
                break
            except (OSError, websocket.WebSocketException):
                assert time.monotonic() < deadline, "Firefox's remote port did not open"
                time.sleep(0.2)
        self._next = 0
        self.call("session.new", capabilities={})
        self.context = self.call("browsingContext.getTree")["contexts"][0]["context"]

    def call(self, method: str, **params):
        self._next += 1
        self._socket.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next:
                assert message.get("type") != "error", message
                return message["result"]

    def js(self, expression: str, **options):
        result = self.call("script.evaluate", expression=expression, target={"context": self.context}, awaitPromise=True, **options)
        assert result.get("type") != "exception", result
        return result["result"] if options else result["result"].get("value")

    def close(self) -> None:
        self._socket.close()


def test_the_page_works_in_firefox(tiny_model, tmp_path):
    """Upload, progress, one lane per stem, mute, phone width: in headless Firefox ESR."""
    firefox = shutil.which("firefox-esr") or shutil.which("firefox")
    if firefox is None:
        pytest.skip("no Firefox here: install the Debian package firefox-esr (sh tests/install-browser.sh)")
    model, config = tiny_model
    clip = tmp_path / "clip.flac"
    waveform, rate = sf.read(EXAMPLE, dtype="float32", frames=int(CLIP_SECONDS * SAMPLE_RATE), always_2d=True)
    sf.write(clip, waveform, rate, format="FLAC")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    profile = tmp_path / "profile"
    profile.mkdir()
    process = subprocess.Popen([firefox, "--headless", "--no-remote", "--profile", str(profile),
                                f"--remote-debugging-port={port}", "--window-size=1280,900"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        browser = _Bidi(port)
        with running_server({"tiny": Separator(model, config)}, tmp_path / "cache") as (url, _):
            browser.call("browsingContext.navigate", context=browser.context, url=url + "/", wait="complete")
            wait_for(lambda: browser.js("document.getElementById('model').value") == "tiny", what="the model list")
            node = browser.js("document.getElementById('file')", resultOwnership="root")
            browser.call("input.setFiles", context=browser.context, element={"sharedId": node["sharedId"]}, files=[str(clip)])
            wait_for(lambda: browser.js("!document.getElementById('separate').disabled"), what="the Separate button")
            browser.js("document.getElementById('separate').click()")
            wait_for(lambda: browser.js("document.body.dataset.state") == "ready", timeout=60, what="the player")
            assert browser.js("document.getElementById('progress').value") == 1
            lanes = json.loads(browser.js(
                "JSON.stringify([...document.querySelectorAll('.lane')].map(l => [l.dataset.stem, Number(l.dataset.duration)]))"))
            assert [stem for stem, _ in lanes] == [*config.stems, "mixture"]
            assert all(duration == pytest.approx(CLIP_SECONDS, abs=2e-3) for _, duration in lanes)
            browser.js("document.querySelector('.lane[data-stem=other] button.mute').click()")
            gains = json.loads(browser.js("JSON.stringify([...document.querySelectorAll('.lane')].map(l => l.dataset.gain))"))
            assert gains == ["1.000", "1.000", "0.000", "0.000"]
            browser.call("browsingContext.setViewport", context=browser.context, viewport={"width": 390, "height": 844})
            wait_for(lambda: browser.js("document.documentElement.scrollWidth <= window.innerWidth"), what="the phone-width layout")
            shot = browser.call("browsingContext.captureScreenshot", context=browser.context)["data"]
            (tmp_path / "firefox-phone.png").write_bytes(base64.b64decode(shot))
        browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
