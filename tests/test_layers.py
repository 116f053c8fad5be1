"""The house's layers: imports point only down, no cycle between modules, and no import inside
a library function hides one (the CLI alone imports lazily, for start-up time)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mt"

# Bottom to top (README, Layout). A module may import its own package and anything lower.
LAYERS = {
    "mt": 0,  # the package itself: its version only
    "mt.errors": 1, "mt.files": 2, "mt.config": 2, "mt.hardware": 2, "mt.precision": 3, "mt.presets": 3,
    "mt.data": 4,
    "mt.models": 5, "mt.evaluation": 5, "mt.visualization": 5,
    "mt.model_dir": 6,
    "mt.decoding": 7,
    "mt.export": 8,
    "mt.training": 9,
    "mt.analysis": 10,
    "mt.serving": 11,
    "mt.cli": 12, "mt.__main__": 13,
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> tuple[str, int]:
    """The layer key (package or module) of ``module`` and its rank."""
    for key in sorted(LAYERS, key=len, reverse=True):
        if module == key or (key != "mt" and module.startswith(key + ".")):
            return key, LAYERS[key]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and the README's Layout")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported mt module, whether the import sits inside a function)."""
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("mt"):
            for alias in node.names:  # "from mt.training import distributed" imports a module
                candidate = f"{node.module}.{alias.name}"
                name = candidate if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").is_file() \
                    else node.module
                out.append((name, id(node) in inside))
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in inside) for a in node.names if a.name.startswith("mt")]
    return out


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer_and_imports_only_down_it():
    upward = []
    for module, path in MODULES.items():
        key, rank = _layer(module)
        for target, _ in _imports(path):
            target_key, target_rank = _layer(target)
            if target_key != key and target_rank >= rank:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up or sideways between layers: " + "; ".join(sorted(upward))


def test_evaluation_and_visualization_know_nothing_of_models_decoding_or_analysis():
    for module, path in MODULES.items():
        if module.startswith(("mt.evaluation", "mt.visualization")):
            bad = [t for t, _ in _imports(path) if t.startswith(("mt.decoding", "mt.analysis", "mt.models",
                                                                  "mt.training"))]
            assert not bad, f"{module} imports {bad}"


def test_no_import_cycle_between_modules():
    graph = {m: {t for t, _ in _imports(p) if t in MODULES} for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, stack + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("mt.cli")))
def test_the_library_imports_its_own_modules_at_the_top(module):
    hidden = [t for t, local in _imports(MODULES[module]) if local]
    assert not hidden, f"{module} imports {hidden} inside a function (a cycle hidden, or start-up time: say which)"
