"""The test tiers: `make test` runs everything; `make check` leaves out what conftest marks system or slow."""

from __future__ import annotations

import ast
import pathlib
import re

import conftest

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent


def _functions(module: str) -> set[str]:
    tree = ast.parse((TESTS / f"{module}.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_listed_module_and_test_exists():
    """A renamed test or module would silently move back into the fast tier."""
    for module in conftest.SYSTEM_MODULES:
        assert (TESTS / f"{module}.py").is_file(), module
    for module, names in conftest.SLOW_TESTS.items():
        missing = names - _functions(module)
        assert not missing, f"{module} has no {sorted(missing)}: update SLOW_TESTS in tests/conftest.py"
    for module, fixture in conftest.SLOW_FIXTURES.items():
        assert fixture in _functions(module), f"{module} has no fixture {fixture}: update SLOW_FIXTURES in tests/conftest.py"


def test_make_check_leaves_out_the_marked_tiers_and_make_test_runs_everything():
    makefile = (ROOT / "Makefile").read_text()
    markers = re.search(r"^CHECK_MARKERS := (.+)$", makefile, re.M).group(1)
    assert markers == "not slow and not system"
    check = re.search(r"^check: (.*)\n\t(.*)$", makefile, re.M)
    assert "browser-deps" not in check.group(1) and "training-deps" not in check.group(1)  # no renderers, no browsers
    assert check.group(2) == '$(BIN)/python -m pytest -m "$(CHECK_MARKERS)"'
    test = re.search(r"^test: (.*)\n\t(.*)$", makefile, re.M)
    assert test.group(2) == "$(BIN)/python -m pytest"  # the whole suite, what CI runs
    setup = (ROOT / "setup.cfg").read_text()
    assert re.search(r"^    slow: ", setup, re.M) and re.search(r"^    system: ", setup, re.M)  # --strict-markers would need them


def test_browser_and_renderer_tests_are_system():
    """The tests that need Debian's browsers or renderers are the ones `make check` cannot run."""
    needing = [path.stem for path in TESTS.glob("test_*.py") if path.stem != "test_tiers"
               and re.search(r"\bselenium\b|\bfluidsynth\b|\bfestival\b", path.read_text(), re.I)]
    assert set(needing) <= set(conftest.SYSTEM_MODULES), set(needing) - set(conftest.SYSTEM_MODULES)
