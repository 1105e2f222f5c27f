#!/bin/sh
# Install the Debian packages holding the real recordings used by training/real (apt-packages.txt)
# and the renderer's own packages (training/synth/apt-packages.txt: FluidSynth renders the SF2 kits),
# only those missing; root or sudo; ~300 MB download. scripts/apt-install.sh does the work and says
# how to fix a failure.
cd "$(dirname "$0")/../.." || exit 1
exec sh scripts/apt-install.sh --label training/real \
    --file training/real/apt-packages.txt --file training/synth/apt-packages.txt
