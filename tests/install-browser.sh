#!/bin/sh
# Install the headless browser the web page's test drives: Debian's chromium and chromium-driver
# (Selenium, from PyPI, comes with the dev extra). Idempotent: does nothing when both are installed;
# otherwise one `apt-get update`, then only the missing ones (without recommends). Root or sudo.
# Where apt is missing or fails, it says so and exits 0: tests/test_web_browser.py then skips,
# naming what to install.
set -u
missing=""
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "tests: no apt here; install Chromium and its driver yourself or the browser test is skipped"
    exit 0
fi
for pkg in chromium chromium-driver; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -z "$missing" ]; then
    echo "tests: chromium and chromium-driver already installed"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "tests: installing$missing (for the web page's browser test)"
if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    echo "tests: installed$missing"
else
    echo "tests: could not install$missing; the browser test will be skipped"
fi
exit 0
