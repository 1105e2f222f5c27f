#!/bin/sh
# Install the Debian packages holding the real recordings used by training/real (apt-packages.txt,
# with lmms, which renders its demo songs for lmms_render.py) and the renderer's own packages
# (training/synth/apt-packages.txt: FluidSynth renders the SF2 kits), only those missing; root or
# sudo; ~330 MB download. scripts/apt-install.sh does the work and says how to fix a failure.
cd "$(dirname "$0")/../.." || exit 1
exec sh scripts/apt-install.sh --label training/real \
    --file training/real/apt-packages.txt --file training/synth/apt-packages.txt
