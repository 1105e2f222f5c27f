"""Separation in the browser: seconds per audio second, first load and peak memory, in headless Chromium.

Exports MODEL for the web (``stemtf.export.web.export_web``), serves the folder from a static server on
127.0.0.1 (plain, and with the cross-origin isolation headers that let LiteRT.js use WebAssembly
threads), opens the page in a fresh headless Chromium (Debian ``chromium`` + ``chromium-driver``) for
each run, and separates a real song: the bundled excerpt repeated to ``--seconds``.

Reported per run:

- ``load_s``: LiteRT.js's runtime + the model: download and compile (the worker's own timing, first
  run in a fresh browser: nothing cached);
- ``separate_s`` and ``rtf``: separation time (chunks: STFT, the model, inverse STFT, cross-fade) and
  its ratio to the song's duration (seconds per audio second);
- ``page_s``: from pressing Separate to the player being ready (decode + load + separate + WAV/zip);
- ``peak_mb``: peak resident memory of all of the browser's processes during the run (sampled every
  0.1 s), and ``idle_mb`` before it.

    .venv/bin/python benchmarks/browser_speed.py --model 4stems --seconds 60
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import threading
import time

import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_web_export import static_server  # noqa: E402  (the tests' static server: http.server in a thread)


def browser_tree_rss(root_pid: int) -> int:
    """Resident bytes of the browser process and all its children."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_once(folder: pathlib.Path, song: pathlib.Path, *, isolation: bool, timeout: float) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    service = Service(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], browser_tree_rss(service.process.pid))
            time.sleep(0.1)

    try:
        with static_server(folder, isolation=isolation) as url:
            driver.get(url)
            by_id = lambda name: driver.find_element(By.ID, name)  # noqa: E731
            deadline = time.monotonic() + 30
            while not by_id("model").find_elements(By.TAG_NAME, "option"):
                assert time.monotonic() < deadline, "the page did not list its model"
                time.sleep(0.1)
            isolated = driver.execute_script("return self.crossOriginIsolated")
            time.sleep(1.0)
            idle = browser_tree_rss(service.process.pid)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            by_id("file").send_keys(str(song))
            started = time.monotonic()
            by_id("separate").click()
            while True:
                state = driver.execute_script("return document.body.dataset.state")
                if state == "ready":
                    break
                if state == "error":
                    raise RuntimeError(by_id("error-text").text)
                assert time.monotonic() - started < timeout, "the separation timed out"
                time.sleep(0.1)
            page_s = time.monotonic() - started
            timings = json.loads(driver.execute_script("return document.body.dataset.timings"))
            stop.set()
            sampler.join()
    finally:
        stop.set()
        driver.quit()
    return {"isolated": bool(isolated), "load_s": round(timings["load"], 2), "separate_s": round(timings["separate"], 2),
            "model_s": round(timings["model"], 2), "threads": timings["threads"],
            "page_s": round(page_s, 2), "idle_mb": round(idle / 1e6), "peak_mb": round(peak[0] / 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="4stems")
    parser.add_argument("--seconds", type=float, default=60.0, help="song length (the bundled excerpt repeated)")
    parser.add_argument("--quantize", default="none", choices=["none", "float16", "int8"])
    parser.add_argument("--folder", type=pathlib.Path, help="an existing web export (skips the export)")
    parser.add_argument("--modes", default="plain,isolated", help="plain (no threads) and/or isolated (COOP/COEP: threads)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = parser.parse_args()

    from stemtf.export.web import export_web

    with tempfile.TemporaryDirectory(prefix="stemtf-browser-bench-") as work:
        work = pathlib.Path(work)
        folder = args.folder
        if folder is None:
            folder = export_web(args.model, work / "web", quantize=args.quantize, max_duration=max(600.0, args.seconds + 1))
        excerpt, rate = sf.read(REPO / "examples" / "caesium_excerpt.ogg", dtype="float32", always_2d=True)
        repeats = int(np.ceil(args.seconds * rate / excerpt.shape[0]))
        song = work / "song.wav"
        sf.write(song, np.tile(excerpt, (repeats, 1))[: int(args.seconds * rate)], rate, subtype="PCM_16")
        results = []
        for mode in args.modes.split(","):
            result = run_once(folder, song, isolation=mode == "isolated", timeout=args.timeout)
            result.update(mode=mode, model=args.model, quantize=args.quantize, seconds=args.seconds,
                          rtf=round(result["separate_s"] / args.seconds, 3))
            results.append(result)
            print(json.dumps(result), flush=True)
    print()
    print("| mode | threads | song | first load (s) | separate (s) | of which the model (s) | s per audio s | page total (s) | idle / peak memory (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['threads'] or 1} | {r['seconds']:g} s | {r['load_s']} | {r['separate_s']} | {r['model_s']} | "
              f"{r['rtf']} | {r['page_s']} | {r['idle_mb']} / {r['peak_mb']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
