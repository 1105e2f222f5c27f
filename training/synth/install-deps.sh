#!/bin/sh
# Install the Debian packages the synthetic renderer needs (training/synth/apt-packages.txt), only
# those missing; root or sudo. scripts/apt-install.sh does the work and says how to fix a failure.
cd "$(dirname "$0")/../.." || exit 1
exec sh scripts/apt-install.sh --label training/synth --file training/synth/apt-packages.txt
