"""Headless Chromium for the page tests (Debian's chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import contextlib
import pathlib
import shutil

import pytest

ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu")


def chromium_paths() -> tuple[str, str]:
    """Paths of the Chromium binary and its driver; skip (with how to install them) where there are none."""
    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no Chromium here: install the Debian packages chromium and chromium-driver (sh tests/install-browser.sh)")
    return browser, driver


@contextlib.contextmanager
def headless_chromium(downloads: pathlib.Path, *, extra_arguments: tuple[str, ...] = (), console: bool = False):
    """A headless Chromium that downloads into ``downloads`` without asking (and keeps the JS console with ``console``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (*ARGUMENTS, *extra_arguments):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()
