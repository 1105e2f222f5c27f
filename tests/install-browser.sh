#!/bin/sh
# Install the headless browsers the web page's tests drive: Debian's chromium and chromium-driver
# (through Selenium, from PyPI, in the dev extra) and firefox-esr (through its own WebDriver BiDi
# port: Debian has no geckodriver), only those missing; root or sudo. scripts/apt-install.sh does the
# work. Where they cannot be installed (no apt, no root or sudo, apt failing) it says why and this
# still exits 0: the browser tests are optional, tests/test_web_browser.py skips them, naming what to install.
cd "$(dirname "$0")/.." || exit 1
sh scripts/apt-install.sh --label tests chromium chromium-driver firefox-esr \
    || echo "tests: the web page's browser tests will be skipped"
exit 0
