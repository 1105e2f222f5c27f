"""Make docs/web-player.png: the real `stemtf serve` with the shipped 2stems model, the bundled CC0
excerpt uploaded through the page in headless Chromium, the player after separation.

    python docs/web_player_screenshot.py            # needs chromium + chromium-driver (make browser-deps)
"""

import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as cache:
        server = subprocess.Popen(
            [sys.executable, "-m", "stemtf.cli", "serve", "2stems", "--port", str(port), "--cache-dir", cache],
            stdout=subprocess.PIPE, text=True,
        )
        url = server.stdout.readline().strip()
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1000", "--hide-scrollbars"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url)
            time.sleep(1)
            driver.find_element(By.ID, "file").send_keys(str(ROOT / "examples" / "caesium_excerpt.ogg"))
            driver.find_element(By.ID, "separate").click()
            deadline = time.monotonic() + 300
            while driver.execute_script("return document.body.dataset.state") != "ready":
                assert time.monotonic() < deadline, driver.find_element(By.ID, "job-status").text
                time.sleep(0.2)
            lanes = driver.find_elements(By.CSS_SELECTOR, "#lanes .lane")
            lanes[0].find_element(By.CSS_SELECTOR, "button.mute").click()  # "everything but the vocals"
            lanes[1].find_element(By.CSS_SELECTOR, "button.view").click()  # the accompaniment as a spectrogram
            driver.execute_script("page.player.seek(7.4)")
            driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
            time.sleep(0.3)
            target = ROOT / "docs" / "web-player.png"
            driver.save_screenshot(str(target))
            print(target, target.stat().st_size, "bytes")
        finally:
            driver.quit()
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
