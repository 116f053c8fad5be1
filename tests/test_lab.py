"""The lab (bench/, studies/NAME/) stays runnable and described: every script compiles, every
study has a README whose commands name scripts that exist and that names every record in its
results/, and bench/README.md names every benchmark and every raw result. Cheap: no script
runs here (tests/test_compare.py and tests/test_hansards_prep.py run two of them; each
script's own --help and a tiny run are the checks by hand)."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
STUDIES = sorted(p for p in (REPO / "studies").iterdir() if p.is_dir())
SCRIPTS = sorted(p for folder in (BENCH, REPO / "studies") for p in folder.rglob("*")
                 if p.suffix in (".py", ".sh") and "results" not in p.relative_to(REPO).parts)
FENCED = re.compile(r"```[a-z]*\n(.*?)```", re.DOTALL)
SCRIPT_PATH = re.compile(r"(?<![\w./-])((?:bench|studies)/[\w./-]+\.(?:py|sh))\b")
INLINE = re.compile(r"`([^`\n]+)`")


def _braces(pattern: str) -> list[str]:
    """``a{b,c}d`` as ``abd``, ``acd`` (shell brace expansion, nested too)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    return [x for part in m.group(1).split(",") for x in _braces(pattern[:m.start()] + part + pattern[m.end():])]


def _record_patterns(readme: str) -> list[str]:
    """Names and patterns of records the README's prose lists (inline code outside the commands),
    relative to its folder's results/: the first part of each, braces expanded."""
    prose = FENCED.sub("", readme)
    patterns = []
    for span in INLINE.findall(prose):
        for token in span.split():
            token = token.strip(",;()")
            token = token.removeprefix("results/")
            if re.match(r"[\d*]", token) or token.endswith("/"):
                patterns += [p.split("/")[0] for p in _braces(token)]
    return patterns


def _uncovered(results: Path, readme: str) -> list[str]:
    patterns = _record_patterns(readme)
    return sorted(p.name for p in results.iterdir() if not any(fnmatch(p.name, pat) for pat in patterns))


def test_the_lab_is_found():
    assert {p.name for p in STUDIES} == {"multi30k_attention", "hansards_alignment", "vs_joeynmt", "deployment_speed",
                                         "serving_load", "time_to_quality"}
    assert len(SCRIPTS) >= 20


@pytest.mark.parametrize("path", [p for p in SCRIPTS if p.suffix == ".py"], ids=lambda p: str(p.relative_to(REPO)))
def test_every_lab_script_compiles(path):
    compile(path.read_text(encoding="utf-8"), str(path), "exec")


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_every_study_has_a_readme_that_reruns_it_and_lists_its_records(study):
    readme = (study / "README.md").read_text(encoding="utf-8")
    for heading in ("## Rerun it", "## Result", "## Records in `results/`"):
        assert heading in readme, f"{study.name}/README.md has no '{heading}' section"
    commands = "\n".join(FENCED.findall(readme))
    named = set(SCRIPT_PATH.findall(commands))
    assert any(n.startswith(f"studies/{study.name}/") for n in named), \
        f"{study.name}/README.md names no command of its own in a code block"
    missing = sorted(n for n in named if not (REPO / n).is_file())
    assert not missing, f"{study.name}/README.md runs scripts that do not exist: {missing}"
    own = [p for p in SCRIPTS if study in p.parents]
    unnamed = [p.name for p in own if f"studies/{study.name}/{p.name}" not in readme]
    assert not unnamed, f"{study.name}/README.md never names {unnamed}"
    assert not re.search(r"\bissue \d+|superseded", readme, re.IGNORECASE), "a README is not the lab notebook"
    uncovered = _uncovered(study / "results", readme)
    assert not uncovered, f"{study.name}/README.md does not list these records of results/: {uncovered}"


def test_bench_readme_names_every_benchmark_and_raw_result():
    readme = (BENCH / "README.md").read_text(encoding="utf-8")
    unnamed = [p.name for p in SCRIPTS if p.parent == BENCH and f"`{p.name}`" not in readme]
    assert not unnamed, f"bench/README.md has no line for {unnamed}"
    uncovered = _uncovered(BENCH / "results", readme)
    assert not uncovered, f"bench/README.md does not say which benchmark wrote {uncovered}"


def test_the_record_patterns_read_what_the_readmes_write():
    text = "- `2026-12-01_x_{a,b}.csv`: ...; `results/2026-11-22_gpu_*`, `2026-12-07_dir/`; `mt compare`"
    assert _record_patterns(text) == ["2026-12-01_x_a.csv", "2026-12-01_x_b.csv", "2026-11-22_gpu_*", "2026-12-07_dir"]
    assert _braces("a{,_s}_z{1,2}") == ["a_z1", "a_z2", "a_s_z1", "a_s_z2"]
