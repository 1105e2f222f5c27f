#!/bin/sh
# Install the Debian packages holding the real recordings used by training/real (apt-packages.txt)
# and the renderer's own packages (training/synth/apt-packages.txt: FluidSynth renders the SF2 kits).
# Idempotent: does nothing when all are installed; otherwise one `apt-get update`, then installs
# only the missing ones (without recommends). Run as root or as a user with sudo. ~300 MB download.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
missing=""
for pkg in $(grep -hv '^[[:space:]]*#' "$here/apt-packages.txt" "$here/../synth/apt-packages.txt"); do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -z "$missing" ]; then
    echo "training/real: Debian packages already installed"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "training/real: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "training/real: installed$missing"
