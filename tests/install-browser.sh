#!/bin/sh
# Install the headless browsers the web page's tests drive: Debian's chromium and chromium-driver
# (through Selenium, from PyPI, in the dev extra) and firefox-esr (through its own WebDriver BiDi
# port: Debian has no geckodriver). Idempotent: does nothing when all are installed;
# otherwise one `apt-get update`, then only the missing ones (without recommends). Root or sudo.
# Where apt is missing or fails, it says so and exits 0: tests/test_web_browser.py then skips,
# naming what to install.
set -u
missing=""
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "tests: no apt here; install Chromium, its driver and Firefox yourself or the browser tests are skipped"
    exit 0
fi
for pkg in chromium chromium-driver firefox-esr; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -z "$missing" ]; then
    echo "tests: chromium, chromium-driver and firefox-esr already installed"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "tests: installing$missing (for the web page's browser tests)"
if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    echo "tests: installed$missing"
else
    echo "tests: could not install$missing; the browser tests will be skipped"
fi
exit 0
