"""The house's layers: imports point only down, no cycle between modules, and no import inside
a library function hides one (the CLI alone imports lazily, for start-up time). The lab (bench/,
studies/) stands outside the house: it imports mt.api, the supported surface, and nothing else of mt."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mt"

# Bottom to top (docs/architecture.md). A module may import its own package and anything lower.
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
    "mt.api": 12,  # the supported surface (what bench/ and studies/ import): everything below it
    "mt.cli": 13, "mt.__main__": 14,
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> tuple[str, int]:
    """The layer key (package or module) of ``module`` and its rank."""
    for key in sorted(LAYERS, key=len, reverse=True):
        if module == key or (key != "mt" and module.startswith(key + ".")):
            return key, LAYERS[key]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md's layout")


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


def test_the_api_names_what_it_imports_and_each_name_resolves():
    """mt.api's table of names (imported on first use) is the list its type-checking imports give,
    __all__ is that list, and every name is found in its module."""
    from mt import api

    tree = ast.parse((PACKAGE / "api.py").read_text())
    typed = {alias.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module and node.module.startswith("mt.") for alias in node.names}
    assert typed == api._HOMES
    assert sorted(api.__all__) == sorted(api._HOMES)
    unresolved = [name for name in api.__all__ if getattr(api, name, None) is None]
    assert not unresolved, unresolved
    with pytest.raises(AttributeError):
        api.sequence_loss_of_nothing  # noqa: B018


# The lab: benchmarks (bench/) and studies (studies/NAME/) use mt as a user's code does, through
# its supported surface (mt.api) and its version, never through the modules behind it.
REPO = PACKAGE.parent
LAB = sorted(p for folder in ("bench", "studies") for p in (REPO / folder).rglob("*.py"))
LAB_SHELL = sorted(p for folder in ("bench", "studies") for p in (REPO / folder).rglob("*.sh")
                   if "results" not in p.relative_to(REPO).parts)  # a study's records are what ran then
LAB_MODULES = {"mt", "mt.api"}
FROM_MT = {"__version__", "api"}  # from mt import ...
MT_ATTRIBUTES = {"__version__", "__file__", "api"}  # mt.X after import mt
# An import inside a string (the code of a ``python -c`` child, a heredoc in a shell script).
CODE_FROM = re.compile(r"\bfrom\s+(mt(?:\.\w+)*)\s+import\s+(\([^)]*\)|[\w \t,]+)")
CODE_IMPORT = re.compile(r"\bimport\s+([\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)")


def _lab_imports_in_code(text: str) -> list[str]:
    """What ``text``, read as code, imports of mt beyond mt.api and mt's version."""
    bad = []
    for module, names in CODE_FROM.findall(text):
        if module == "mt":
            names = names.strip("()")
            bad += [f"from mt import {n}" for n in (x.split(" as ")[0].strip() for x in names.split(","))
                    if n and n not in FROM_MT]
        elif module not in LAB_MODULES:
            bad.append(f"from {module} import ...")
    for names in CODE_IMPORT.findall(text):
        for name in (x.split(" as ")[0].strip() for x in names.split(",")):
            if (name == "mt" or name.startswith("mt.")) and name not in LAB_MODULES:
                bad.append(f"import {name}")
    bad += [f"the module {m}" for m in re.findall(r"-m\s+(mt(?:\.\w+)+)", text) if m not in LAB_MODULES]
    return bad


MODULE_NAME = re.compile(r"mt(\.\w+)+")  # "mt.serving.server", as in [python, "-m", "mt.serving.server"]


def _lab_imports(path: Path) -> list[str]:
    return _lab_imports_in_tree(ast.parse(path.read_text(encoding="utf-8")))


def _lab_imports_in_tree(tree: ast.AST) -> list[str]:
    """The imports of mt in a lab script beyond mt.api's public names and mt's version: at the
    top, inside functions, through importlib, as ``mt.X`` attributes, a module run with ``-m``,
    and in strings of code (f-strings too, their fields read as X)."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mt":
                bad += [f"from mt import {a.name}" for a in node.names if a.name not in FROM_MT]
            elif node.module.startswith("mt.") and node.module not in LAB_MODULES:
                bad.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
            elif node.module == "mt.api":
                bad += [f"from mt.api import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names
                    if a.name.startswith("mt.") and a.name not in LAB_MODULES]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mt" \
                and node.attr not in MT_ATTRIBUTES:
            bad.append(f"mt.{node.attr}")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and (
                    getattr(node.func, "attr", None) == "import_module"
                    or getattr(node.func, "id", None) in ("import_module", "__import__")):
            name = node.args[0].value
            if name.startswith("mt.") and name not in LAB_MODULES:
                bad.append(f"import_module({name!r})")
        elif isinstance(node, (ast.List, ast.Tuple)):  # [python, "-m", "mt.serving.server", ...]
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            bad += [f"the module {b}" for a, b in itertools.pairwise(words) if a == "-m" and isinstance(b, str)
                    and MODULE_NAME.fullmatch(b) and b not in LAB_MODULES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            bad += _lab_imports_in_code(node.value)
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
            bad += [f for f in _lab_imports_in_code(text) if f not in _lab_imports_in_code(text.replace("X", ""))
                    or "X" in text]
    return bad


def test_the_lab_is_found():
    assert len(LAB) >= 20 and (REPO / "bench" / "train_speed.py") in LAB, LAB


@pytest.mark.parametrize("path", LAB, ids=lambda p: str(p.relative_to(REPO)))
def test_a_benchmark_or_study_imports_only_the_api(path):
    bad = _lab_imports(path)
    assert not bad, f"{path.relative_to(REPO)} reaches into mt: {bad}; use mt.api (give it a public name there)"


def test_the_lab_shell_scripts_import_only_the_api():
    bad = {str(p.relative_to(REPO)): found for p in LAB_SHELL if (found := _lab_imports_in_code(p.read_text()))}
    assert not bad, f"Python inside the lab's shell scripts reaches into mt: {bad}"


def test_the_lab_check_catches_what_it_should():
    assert _lab_imports_in_code("import sys, mt.decoding.search as S; S.PRUNE_SHARE = 0") == \
        ["import mt.decoding.search"]
    assert _lab_imports_in_code("x; from mt.export import open_translator; y") == ["from mt.export import ..."]
    assert _lab_imports_in_code("from mt import (\n  __version__, presets)") == ["from mt import presets"]
    assert _lab_imports_in_code("from mt.api import machine; import mt; print(mt.__file__)") == []
    assert _lab_imports_in_code("from mt.presets import compose\nfrom mt.models import build_model") == \
        ["from mt.presets import ...", "from mt.models import ..."]
    assert _lab_imports_in_code("load time (import plus construction) of mt.serving.detect") == []


@pytest.mark.parametrize("code, found", [
    ('subprocess.run([sys.executable, "-m", "mt.serving.server"])', ["the module mt.serving.server"]),
    ('code = f"from mt.{name} import build_model"', ["from mt.X import ..."]),
    ("from mt.api import _MODULES", ["from mt.api import _MODULES"]),
    ('subprocess.run([sys.executable, "-m", "mt", "serve"])', []),
    ('os.system("python -m mt.cli.main translate M")', ["the module mt.cli.main"]),
    ('print(f"{n} sentences with mt.api")', []),
])
def test_the_lab_check_catches_modules_run_fstrings_and_private_names(code, found):
    assert _lab_imports_in_tree(ast.parse(code)) == found
