"""scripts/apt-install.sh, the one apt helper behind make's *-deps targets and the install scripts.

Each test runs the script with a PATH holding only fake ``apt-get``, ``apt-cache``, ``dpkg-query``,
``id`` and (where wanted) ``sudo``, plus links to the few real tools the scripts need (sh, env,
dirname, make). The fakes read which packages are installed and which apt knows from files, and
``apt-get`` only writes its command line to a log: nothing is installed, and nothing runs as root.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "apt-install.sh"
SYNTH_LIST = REPO / "training" / "synth" / "apt-packages.txt"
REAL_LIST = REPO / "training" / "real" / "apt-packages.txt"
REAL_TOOLS = ("sh", "env", "dirname", "make")

# Shared by the fakes: is $2 a line of file $1?
LISTED = 'listed() { [ -f "$1" ] || return 1; while read -r n; do [ "$n" = "$2" ] && return 0; done <"$1"; return 1; }\n'
FAKES = {
    "dpkg-query": LISTED + 'for pkg; do :; done\n'
                  'listed "$FAKE/installed" "$pkg" && { printf "install ok installed"; exit 0; }\n'
                  'echo "dpkg-query: no packages found matching $pkg" >&2; exit 1\n',
    "apt-cache": LISTED + 'for pkg; do :; done\n'
                 'listed "$FAKE/known" "$pkg" && { echo "Package: $pkg"; exit 0; }\n'
                 'echo "E: No packages found" >&2; exit 100\n',
    "apt-get": 'echo "${VIA_SUDO:+sudo }apt-get $* (DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-})" >>"$FAKE/log"\n'
               '[ "$1" = install ] && [ -e "$FAKE/install-fails" ] && { echo "E: Unable to fetch some archives" >&2; exit 100; }\n'
               'exit 0\n',
    "sudo": 'unset DEBIAN_FRONTEND; VIA_SUDO=1 exec "$@"\n',  # env_reset, as sudo does
    "id": '[ "$1" = -u ] && echo "$FAKE_UID"\n',
}


class FakeApt:
    """A fake Debian system in ``root``: ``installed`` and ``known`` packages, the apt-get ``log``."""

    def __init__(self, root: pathlib.Path, *, installed=(), known=(), uid=0, tools=tuple(FAKES)):
        self.root = root
        bin_dir, real_dir = root / "bin", root / "real"
        bin_dir.mkdir()
        real_dir.mkdir()
        for name in tools:
            (bin_dir / name).write_text("#!/bin/sh\n" + FAKES[name])
            (bin_dir / name).chmod(0o755)
        for name in REAL_TOOLS:
            if shutil.which(name):
                (real_dir / name).symlink_to(shutil.which(name))
        (root / "installed").write_text("".join(f"{p}\n" for p in installed))
        (root / "known").write_text("".join(f"{p}\n" for p in known))
        self.env = {"PATH": f"{bin_dir}:{real_dir}", "FAKE": str(root), "FAKE_UID": str(uid), "LC_ALL": "C"}

    def run(self, *command, cwd: pathlib.Path = REPO) -> subprocess.CompletedProcess:
        return subprocess.run([str(c) for c in command], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=60)

    def apt(self, *args) -> subprocess.CompletedProcess:
        return self.run("/bin/sh", SCRIPT, *args)

    @property
    def log(self) -> list[str]:
        path = self.root / "log"
        return path.read_text().splitlines() if path.exists() else []


def listed_packages(*files: pathlib.Path) -> list[str]:
    """The package names in apt-packages.txt files, in order, without comments or repeats."""
    names = [name for file in files for line in file.read_text().splitlines() for name in line.split("#")[0].split()]
    return list(dict.fromkeys(names))


def shell_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Every ``*.sh`` and ``Makefile`` under ``root``, skipping hidden folders (.ci/ aside) and data/build output."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d == ".ci" or not d.startswith(".")
                         and d not in ("data-work", "build", "dist", "__pycache__", "peers-work")]
        found += [pathlib.Path(folder) / f for f in files if f.endswith(".sh") or f == "Makefile" or folder.endswith(".ci")]
    return found


def install_line(packages, *, sudo: bool = False) -> str:
    prefix = "sudo " if sudo else ""
    return f"{prefix}apt-get install -y -qq --no-install-recommends {' '.join(packages)} (DEBIAN_FRONTEND=noninteractive)"


def update_line(*, sudo: bool = False) -> str:
    return f"{'sudo ' if sudo else ''}apt-get update -qq (DEBIAN_FRONTEND=)"


@pytest.fixture
def package_list(tmp_path) -> pathlib.Path:
    path = tmp_path / "apt-packages.txt"
    path.write_text("# Debian packages for something\nfluidsynth festival   # two on a line\n\nfluid-soundfont-gm\n")
    return path


EVERYTHING = ("fluidsynth", "festival", "fluid-soundfont-gm", "ffmpeg")


def test_installs_only_the_missing_packages_from_a_list_and_arguments(tmp_path, package_list):
    fake = FakeApt(tmp_path, installed=["fluidsynth"], known=EVERYTHING)
    result = fake.apt("--label", "demo", "--file", package_list, "ffmpeg", "festival")
    assert result.returncode == 0, result.stderr
    missing = ["festival", "fluid-soundfont-gm", "ffmpeg"]
    assert fake.log == [update_line(), install_line(missing)]
    assert result.stdout.splitlines() == [f"demo: installing {' '.join(missing)}", f"demo: installed {' '.join(missing)}"]


def test_does_nothing_when_everything_is_installed(tmp_path, package_list):
    fake = FakeApt(tmp_path, installed=EVERYTHING, known=EVERYTHING, uid=1000, tools=("dpkg-query", "apt-get", "apt-cache", "id"))
    result = fake.apt("--file", package_list, "ffmpeg")
    assert result.returncode == 0, result.stderr
    assert fake.log == []
    assert result.stdout == "apt-install: Debian packages already installed (fluidsynth festival fluid-soundfont-gm ffmpeg)\n"


def test_a_user_installs_through_sudo(tmp_path):
    fake = FakeApt(tmp_path, known=["ffmpeg"], uid=1000)
    result = fake.apt("ffmpeg")
    assert result.returncode == 0, result.stderr
    # DEBIAN_FRONTEND reaches apt-get through sudo, which drops it from the environment.
    assert fake.log == [update_line(sudo=True), install_line(["ffmpeg"], sudo=True)]


def test_a_user_without_sudo_gets_one_line_and_nothing_runs(tmp_path):
    fake = FakeApt(tmp_path, installed=["festival"], known=EVERYTHING, uid=1000, tools=("dpkg-query", "apt-get", "apt-cache", "id"))
    result = fake.apt("--label", "training/synth", "festival", "fluidsynth", "ffmpeg")
    assert result.returncode == 1
    assert result.stderr == ("training/synth: cannot install fluidsynth ffmpeg: not root and no sudo here; run this again "
                             "as root, or have root run: apt-get install --no-install-recommends fluidsynth ffmpeg\n")
    assert fake.log == []


def test_a_package_apt_does_not_know_is_named_with_where_it_is_listed(tmp_path, package_list):
    package_list.write_text(package_list.read_text() + "fluidsynht\n")
    fake = FakeApt(tmp_path, known=EVERYTHING)
    result = fake.apt("--label", "training/real", "--file", package_list, "ffmpeg", "nonesuch")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("training/real: cannot install ")
    assert f"apt has no package fluidsynht ({package_list}:5), nonesuch (command line) even after apt-get update; " \
           "correct the name" in result.stderr
    assert fake.log == [update_line()]  # nothing installed, not even the packages apt knows


def test_no_apt_is_one_line(tmp_path):
    fake = FakeApt(tmp_path, tools=("dpkg-query", "apt-cache", "id", "sudo"))
    result = fake.apt("ffmpeg")
    assert result.returncode == 1
    assert result.stderr == ("apt-install: cannot install ffmpeg: no apt-get here (apt is Debian/Ubuntu's); "
                             "install them with this system's package manager\n")


def test_a_failing_apt_get_install_is_an_error(tmp_path):
    fake = FakeApt(tmp_path, known=["ffmpeg"])
    (tmp_path / "install-fails").touch()
    result = fake.apt("ffmpeg")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("apt-install: cannot install ffmpeg: apt-get install failed")
    assert "installed ffmpeg" not in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["Fluidsynth"], "'Fluidsynth' (command line) is not a Debian package name"),
    (["ffmpeg", "--bogus"], "unknown option --bogus"),
    (["--file", "no-such-list.txt"], "cannot read the package list no-such-list.txt"),
    (["--label", "x"], "no packages given"),
])
def test_bad_arguments_exit_2_before_touching_apt(tmp_path, args, message):
    fake = FakeApt(tmp_path, known=EVERYTHING)
    result = fake.apt(*args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert fake.log == []


# The documented ways in: a script by its path (run from elsewhere: it finds its lists itself), or a make target.
ENTRY_POINTS = {
    "training/synth/install-deps.sh": (["sh", REPO / "training/synth/install-deps.sh"], listed_packages(SYNTH_LIST)),
    "training/real/install-data.sh": ([REPO / "training/real/install-data.sh"], listed_packages(REAL_LIST, SYNTH_LIST)),
    "tests/install-browser.sh": (["sh", REPO / "tests/install-browser.sh"], ["chromium", "chromium-driver", "firefox-esr"]),
    "make system-deps": (["make", "-s", "system-deps"], ["ffmpeg"]),
    "make training-deps": (["make", "-s", "training-deps"], listed_packages(SYNTH_LIST)),
    "make browser-deps": (["make", "-s", "browser-deps"], ["chromium", "chromium-driver", "firefox-esr"]),
}


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_documented_entry_point_installs_its_packages(tmp_path, name):
    command, packages = ENTRY_POINTS[name]
    if command[0] == "make" and shutil.which("make") is None:
        pytest.skip("no make here")
    assert packages, f"{name}: no packages listed"
    fake = FakeApt(tmp_path, known=packages)
    result = fake.run(*command, cwd=REPO if command[0] == "make" else tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.log == [update_line(), install_line(packages)]


def test_the_browser_script_exits_0_when_it_cannot_install(tmp_path):
    fake = FakeApt(tmp_path, uid=1000, tools=("dpkg-query", "apt-get", "apt-cache", "id"))
    result = fake.run("sh", REPO / "tests" / "install-browser.sh", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr.startswith("tests: cannot install chromium chromium-driver firefox-esr: not root and no sudo")
    assert result.stdout == "tests: the web page's browser tests will be skipped\n"
    assert fake.log == []


def test_the_other_entry_points_fail_when_they_cannot_install(tmp_path):
    fake = FakeApt(tmp_path, uid=1000, tools=("dpkg-query", "apt-get", "apt-cache", "id"))
    for script in ("training/synth/install-deps.sh", "training/real/install-data.sh"):
        result = fake.run("sh", REPO / script, cwd=tmp_path)
        assert result.returncode == 1, script
        assert "not root and no sudo" in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_the_scripts_are_executable_and_no_other_script_calls_apt_get():
    """`sudo training/real/install-data.sh` (as documented) needs the executable bit; apt logic lives in one place."""
    for script in ("scripts/apt-install.sh", "training/synth/install-deps.sh", "training/real/install-data.sh",
                   "tests/install-browser.sh"):
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable (git update-index --chmod=+x)"
    callers = [path.relative_to(REPO) for path in shell_files(REPO) if path != SCRIPT and "apt-get " in path.read_text()]
    assert not callers, f"apt-get called outside scripts/apt-install.sh: {callers}"
