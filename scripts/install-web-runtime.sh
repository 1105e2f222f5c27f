#!/bin/sh
# Install LiteRT.js (npm @litertjs/core, the version pinned in package-lock.json) into node_modules/:
# the browser runtime that `stemtf export MODEL --format web` and `stemtf serve`'s "separate on this
# device" copy next to the page. Needs npm (Debian's `npm`, installed by scripts/apt-install.sh when
# missing) and the npm registry once; nothing is fetched when the page runs.
#
# Already installed (the pinned version present): says so and exits 0 without npm. Where it cannot
# install (no npm and no apt/root, no registry) it says why and still exits 0: the web export then
# answers with one line naming `npm ci`, tests/test_web_export.py skips, and `stemtf serve` offers
# separation on the server only.
cd "$(dirname "$0")/.." || exit 1
want=$(grep -A3 '"node_modules/@litertjs/core": {' package-lock.json | sed -n 's/.*"version": "\([^"]*\)".*/\1/p' | head -n 1)
have=$(sed -n 's/.*"version": "\([^"]*\)".*/\1/p' node_modules/@litertjs/core/package.json 2>/dev/null | head -n 1)
if [ -n "$want" ] && [ "$want" = "$have" ] && [ -f node_modules/@litertjs/wasm-utils/dist/index.js ]; then
    echo "web-runtime: LiteRT.js $have is installed (node_modules/@litertjs/core)"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    sh scripts/apt-install.sh --label web-runtime npm || {
        echo "web-runtime: no npm: the web export and on-device separation stay off (install npm, then: npm ci)" >&2
        exit 0
    }
fi
if npm ci --no-audit --no-fund --loglevel=error; then
    echo "web-runtime: LiteRT.js installed in node_modules/"
else
    echo "web-runtime: npm ci failed: the web export and on-device separation stay off (retry: npm ci)" >&2
fi
exit 0
