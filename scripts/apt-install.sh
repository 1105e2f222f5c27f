#!/bin/sh
# Install Debian packages with apt, only those not installed yet. The one copy of this logic: the
# Makefile (ffmpeg), training/synth/install-deps.sh, training/real/install-data.sh and
# tests/install-browser.sh all call it.
#
#   sh scripts/apt-install.sh [--label NAME] [--file LIST]... [PACKAGE]...
#
#   --label NAME  what every line it prints starts with (default: apt-install)
#   --file LIST   package names from LIST: any number per line, '#' starts a comment (repeatable)
#   PACKAGE       more package names
#
# When every package is installed (dpkg-query) it says so and exits 0 without running apt. Otherwise
# it runs one `apt-get update`, checks that apt knows every missing package, then installs only the
# missing ones, without recommends and without questions. As root it runs apt-get itself, otherwise
# through sudo where sudo exists. When it cannot install (no apt, not root and no sudo, a package apt
# does not know, apt-get failing) it prints one line on stderr naming the packages and how to fix it,
# and exits 1; a wrong argument exits 2.
set -uf  # -f: no globbing, package names are split on blanks and never expanded

label=apt-install
packages=""
origins=""  # one "name where" line per package, for the error naming a package apt does not know

fail() {
    echo "$label: $*" >&2
    exit 1
}

usage() {
    echo "$label: $*; usage: sh scripts/apt-install.sh [--label NAME] [--file LIST]... [PACKAGE]..." >&2
    exit 2
}

# add NAME WHERE: one package, once; WHERE says where the name came from (LIST:LINE or the command line).
add() {
    case $1 in
        [!a-z0-9]* | *[!a-z0-9+.-]*)
            usage "'$1' ($2) is not a Debian package name: lower-case letters, digits and + - . only" ;;
    esac
    case " $packages " in
        *" $1 "*) ;;
        *) packages="${packages:+$packages }$1"
           origins="$origins$1 $2
" ;;
    esac
}

read_list() {
    [ -f "$1" ] && [ -r "$1" ] || usage "cannot read the package list $1"
    number=0
    while IFS= read -r line || [ -n "$line" ]; do
        number=$((number + 1))
        for name in ${line%%#*}; do
            add "$name" "$1:$number"
        done
    done <"$1"
}

origin_of() {
    printf '%s' "$origins" | while read -r name where; do
        if [ "$name" = "$1" ]; then echo "$where"; break; fi
    done
}

while [ $# -gt 0 ]; do
    case $1 in
        --label) [ $# -ge 2 ] || usage "--label needs a name"; label=$2; shift 2 ;;
        --label=*) label=${1#*=}; shift ;;
        --file) [ $# -ge 2 ] || usage "--file needs a path"; read_list "$2"; shift 2 ;;
        --file=*) read_list "${1#*=}"; shift ;;
        -h | --help) echo "usage: sh scripts/apt-install.sh [--label NAME] [--file LIST]... [PACKAGE]..."; exit 0 ;;
        --) shift; for name in "$@"; do add "$name" "command line"; done; break ;;
        -*) usage "unknown option $1" ;;
        *) add "$1" "command line"; shift ;;
    esac
done
[ -n "$packages" ] || usage "no packages given"

for tool in dpkg-query apt-get apt-cache; do
    command -v "$tool" >/dev/null 2>&1 \
        || fail "cannot install $packages: no $tool here (apt is Debian/Ubuntu's); install them with this system's package manager"
done

missing=""
for pkg in $packages; do
    case $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done
if [ -z "$missing" ]; then
    echo "$label: Debian packages already installed ($packages)"
    exit 0
fi

if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo=sudo
else
    fail "cannot install$missing: not root and no sudo here; run this again as root, or have root run: apt-get install --no-install-recommends$missing"
fi

echo "$label: installing$missing"
$sudo apt-get update -qq \
    || fail "cannot install$missing: apt-get update failed (its errors are above); check the network and /etc/apt/sources.list*, then run this again"

unknown=""
for pkg in $missing; do
    apt-cache show --no-all-versions "$pkg" >/dev/null 2>&1 || unknown="$unknown, $pkg ($(origin_of "$pkg"))"
done
[ -z "$unknown" ] \
    || fail "cannot install$missing: apt has no package ${unknown#, } even after apt-get update; correct the name, or add the apt source that has it to /etc/apt/sources.list* (nothing was installed)"

# env: sudo drops DEBIAN_FRONTEND from the environment; as an argument it reaches apt-get.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || fail "cannot install$missing: apt-get install failed (its errors are above); fix what it says, then run this again"
echo "$label: installed$missing"
