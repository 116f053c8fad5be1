"""One ``mt compare`` run from what a user passes: model folders and records found, the test
set read (files, or a split of the models' own corpus), the models compared, the tables and
plots written, records saved, the explorer page drawn. Python code can call ``run_compare``
as the command does."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mt.analysis.compare.comparison import Comparison, compare_models, systems_to_save
from mt.analysis.compare.entries import check_languages, describe_models, find_model_dirs
from mt.analysis.compare.report import format_by_length, format_scores, seal_report, write_comparison
from mt.analysis.compare.saved_systems import load_systems, save_systems
from mt.analysis.evaluate import read_test_set, training_split
from mt.analysis.explore import write_explore_page
from mt.analysis.outputs import (
    COMPARE_REPORT,
    RECORDS,
    check_output_files,
    check_report_dir,
    kind_of,
    same_file,
)
from mt.decoding.search import GREEDY, SearchConfig
from mt.errors import MTError
from mt.evaluation.aer import read_pharaoh
from mt.evaluation.metrics import DEFAULT_BUCKETS
from mt.export import open_translator


@dataclass(frozen=True)
class CompareRequest:
    """What ``mt compare`` was asked: models and/or records, a test set (``src``/``ref`` files or
    a ``split`` of the models' corpus), where to write, and how to test and search."""

    out: str
    models: Sequence[str] = ()
    systems: Sequence[str] = ()
    src: str | None = None
    ref: str | None = None
    split: str | None = None
    search: SearchConfig = GREEDY
    baseline: str | None = None
    gold: str | None = None
    buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS
    bootstrap: int = 1000
    seed: int = 12345
    save_systems: str | None = None
    explore: str | None = None
    device: str = "auto"
    precision: str = "auto"
    progress: bool = True
    force: bool = False        # also write into a folder of heatmaps mt wrote (mt.analysis.outputs)
    force_language: bool = False  # test files whose names say another language are read as they are

    def __post_init__(self) -> None:
        if (self.src is None) != (self.ref is None):
            raise MTError("give both --src and --ref, or --split")
        if self.split and self.src:
            raise MTError("give --src and --ref, or --split, not both")
        if not self.split and not self.src:
            raise MTError("no test set: give --src SRC --ref REF, or --split test")
        if self.bootstrap < 1:
            raise MTError(f"--bootstrap must be at least 1, got {self.bootstrap}")
        if self.seed < 1:
            raise MTError(f"--seed must be 1 or more, got {self.seed}: sacrebleu reads 0 as 'no seed', so the "
                          "p-values would change from run to run")
        if not self.models and not self.systems:
            raise MTError("no models: pass model directories (runs/NAME/model), run directories or a multirun "
                          "directory, and/or --systems records")


def run_compare(request: CompareRequest) -> tuple[Comparison, str]:
    """Compares, writes everything into ``request.out`` and returns the comparison and the
    report to print."""
    r = request
    entries = describe_models(find_model_dirs(r.models)) if r.models else []
    saved = load_systems(r.systems) if r.systems else []
    given = {str(Path(e.model_dir).resolve()) for e in entries}
    again = [s for s in saved if str(Path(s.entry.model_dir).resolve()) in given]
    if again:  # the model is at hand: translate it now rather than trust its older record
        print(f"note: {len(again)} record(s) under --systems are of models given too; those are translated again",
              file=sys.stderr)
        saved = [s for s in saved if s not in again]
    check_languages(entries + [s.entry for s in saved], r.src, r.ref, r.force_language)
    check_outputs(r, [Path(e.model_dir) for e in entries])
    if r.split:
        sources, references, where = training_split(entries, saved, r.split)
    else:
        assert r.src is not None and r.ref is not None
        (sources, references), where = read_test_set(r.src, r.ref), f"{r.src} -> {r.ref}"
    gold = read_pharaoh(r.gold) if r.gold else None
    comparison = compare_models(entries, sources, references, search=r.search, baseline=r.baseline,
                                buckets=r.buckets, gold=gold, samples=r.bootstrap, seed=r.seed, device=r.device,
                                precision=r.precision, progress=r.progress, saved=saved)
    if r.force and kind_of(Path(r.out)) not in (None, COMPARE_REPORT):
        print(f"note: writing the report into {r.out}, which mt wrote as {kind_of(Path(r.out))} (--force); "
              "its other files are kept", file=sys.stderr)
    files = write_comparison(comparison, r.out, seal=False)  # sealed once the page is written too
    lines = []
    if r.save_systems:
        written = save_systems(systems_to_save(comparison), r.save_systems)
        lines.append(f"records of {len(written)} translated model(s) written to {r.save_systems}")
    if saved:
        lines.append(f"{len(saved)} of the models read from --systems records (translated before, not now)")
    lines += [(f"{len(comparison.entries)} models on {where}: {len(sources)} sentences, beam {r.search.beam}; "
               f"baseline {comparison.baseline}; paired bootstrap {r.bootstrap} resamples, seed {r.seed}\n"),
              format_scores(comparison), f"(every column in {Path(r.out) / 'scores.csv'})",
              f"\n{next(iter(comparison.scores.values())).bleu_signature}",
              "\nBLEU by source length (gap: model minus baseline [95% paired-bootstrap interval])",
              format_by_length(comparison),
              textwrap.fill(f"\nwritten to {r.out}: {', '.join(sorted(files))}", 100, subsequent_indent="  ",
                            replace_whitespace=False)]
    if r.explore:
        lines.append(_explore(r, comparison, gold, where))
    seal_report(r.out)
    return comparison, "\n".join(lines)


def check_outputs(r: CompareRequest, model_dirs: Sequence[Path]) -> None:
    """Before any model translates: ``--out`` is new, empty or an earlier compare report (with
    ``--force``, also heatmaps mt wrote); ``--save-systems`` is new, empty or holds records;
    neither is a folder mt did not write or a model it reads, and the page is no input."""
    check_report_dir(r.out, COMPARE_REPORT, r.force, "--out", model_dirs)
    if r.save_systems:
        if same_file(Path(r.save_systems), Path(r.out)):
            raise MTError(f"--save-systems {r.save_systems} is the --out folder: give the records a folder of their "
                          "own (e.g. records/), which later comparisons read with --systems")
        check_report_dir(r.save_systems, RECORDS, False, "--save-systems", model_dirs)
    check_output_files([("--explore", r.explore)], [("--src", r.src), ("--ref", r.ref), ("--gold", r.gold)],
                       model_dirs)


def _explore(r: CompareRequest, comparison: Comparison, gold: list | None, where: str) -> str:
    """The explorer page of the models at hand (records hold no model to explore)."""
    models = [(e.name, open_translator(e.model_dir, r.device, r.precision)) for e in comparison.entries
              if e.name not in comparison.saved]
    said = []
    if len(models) < len(comparison.entries):
        print(f"note: the explorer page shows the {len(models)} models at hand; records hold no model to explore",
              file=sys.stderr)
    if models:
        page = write_explore_page(r.explore or "", models, comparison.sources, comparison.references, gold,
                                  r.search, f"mt compare: {where}")
        said.append(f"explorer page: {page} (the first {min(len(comparison.sources), 500)} sentences; open it in "
                    "a browser)")
    return "\n".join(said)
