"""The package's layer order: every import inside stemtf goes down (or sideways within a layer), never up.

The layers, lowest first, as the README's layout line states them. A module of a subpackage
(``audio/``, ``data/``, ``serve/``, ``train/``, ``cli/``) sits in its package's layer; the modules of
``export/`` sit apart (the masks graph and its writers are below the runtimes that convert with
them, the browser export above). Imports inside functions count too: they are imports all the same.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "stemtf"

LAYERS = [
    ["errors", "interrupts", "model_store"],  # model_store: model folders, search path, user store
    ["config"],
    ["options", "outputs", "dsp"],  # dsp: the numpy engine's signal processing, TensorFlow-free
    ["audio", "spectral", "wiener", "interpreters", "plans", "streamio"],  # plans: ChunkPlan, SlidingPlan
    ["unet", "sliding", "export.artifacts"],
    ["model", "spleeter"],
    ["apply", "spleeter_import", "export.inference"],
    ["export.graphs"],
    ["export.writers", "export"],
    ["runtimes"],
    ["separator", "data", "plots", "litert_runner"],
    ["streaming", "train", "evaluate", "scoring", "export.web", "serve", "beam"],  # scoring: per-track cSDR
    ["cli"],
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def unit(module: str) -> str:
    """``stemtf.serve.jobs.manager`` -> ``serve``; ``stemtf.export.writers`` -> ``export.writers``."""
    parts = module.split(".")[1:]
    if not parts:
        return ""
    if parts[0] == "export" and len(parts) > 1 and f"export.{parts[1]}" in LEVEL:
        return f"export.{parts[1]}"
    return parts[0]


def imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, stemtf module)`` of every import in a file (``from stemtf import x`` names ``stemtf.x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "stemtf":
            if node.module == "stemtf":
                found += [(node.lineno, f"stemtf.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "stemtf"]
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        yield path, ".".join(part for part in relative.parts if part != "__init__")


def test_every_module_has_a_layer():
    missing = sorted({unit(name) for _, name in modules()} - set(LEVEL) - {"", "__version__"})
    assert not missing, f"put these modules in a layer of tests/test_layers.py (and the README's layout): {missing}"


@pytest.mark.parametrize("path,name", list(modules()), ids=lambda value: str(value) if isinstance(value, str) else None)
def test_imports_only_go_down(path, name):
    source = unit(name)
    if not source:  # stemtf/__init__.py: the lazy front door (Separator)
        return
    upward = []
    for line, target in imports(path):
        target_unit = unit(target)
        if target_unit in ("", "__version__") or target_unit == source:
            continue
        if LEVEL[target_unit] > LEVEL[source]:
            upward.append(f"{path.name}:{line} {source} (layer {LEVEL[source]}) imports {target_unit} (layer {LEVEL[target_unit]})")
    assert not upward, upward


def test_the_numpy_engine_imports_no_tensorflow_and_no_higher_stemtf():
    for name in ("dsp", "plans", "interpreters"):
        path = PACKAGE / f"{name}.py"
        text = path.read_text()
        assert "tensorflow" not in text and "keras" not in text.replace("Keras", ""), name
        assert all(unit(target) in ("dsp", "errors") for _, target in imports(path)), name


def test_the_phone_runner_and_the_runtimes_do_not_import_each_other():
    runner = {unit(target) for _, target in imports(PACKAGE / "litert_runner.py")}
    runtimes = {unit(target) for _, target in imports(PACKAGE / "runtimes.py")}
    assert "runtimes" not in runner and "litert_runner" not in runtimes


# Sizes a newcomer can read (issue 25): no module over 400 lines, no function over 80 (from its first
# decorator to its last line, docstring and nested functions included).
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def sizes_over_the_limits(root: pathlib.Path) -> list[str]:
    """``path: N lines`` and ``path:LINE name(): N lines`` for every module and function of ``root`` over the limits."""
    over = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(root.parent)
        if (lines := text.count("\n")) > MAX_MODULE_LINES:
            over.append(f"{where}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
                if (length := node.end_lineno - start + 1) > MAX_FUNCTION_LINES:
                    over.append(f"{where}:{start} {node.name}(): {length} lines")
    return over


def test_no_module_over_400_lines_and_no_function_over_80():
    assert sizes_over_the_limits(PACKAGE) == []


def test_the_size_check_sees_a_long_module_and_a_long_nested_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "long.py").write_text("\n".join(f"x{i} = {i}" for i in range(401)) + "\n")
    body = "\n".join(f"        y{i} = {i}" for i in range(79))
    (package / "nested.py").write_text(f"@staticmethod\ndef outer():\n    def inner():\n{body}\n    return inner\n")
    assert sizes_over_the_limits(package) == ["pkg/long.py: 401 lines", "pkg/nested.py:1 outer(): 83 lines"]
