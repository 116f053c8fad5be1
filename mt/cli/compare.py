"""``mt compare``: several models on one test set, tested against a baseline, by length and by
attention (``mt.analysis.compare.job.run_compare``)."""

from __future__ import annotations

import argparse

from mt.cli.flags import (
    add_explore_flag,
    add_language_flag,
    add_model_flags,
    add_search_flags,
    new_parser,
    search_config,
)
from mt.errors import MTError


def parser() -> argparse.ArgumentParser:
    compare = new_parser("compare", "Translate one test set with several models and compare them: BLEU and chrF "
                         "with sacrebleu's paired bootstrap against a baseline, BLEU by source length, attention "
                         "entropy and AER, and the same sentence's attention from every model side by side.")
    compare.add_argument("models", nargs="*", help="model directories (runs/NAME/model), run directories, or a "
                         "Hydra multirun directory (every model below it)")
    compare.add_argument("--systems", nargs="+", action="extend", metavar="PATH",
                         help="records of models translated before (folders or *.system.json.gz files written by "
                         "--save-systems): compared as if translated now, on the same test set and search settings")
    compare.add_argument("--save-systems", metavar="DIR", help="write each model's translations, run record and "
                         "attention statistics here, one *.system.json.gz per model, for a later --systems")
    compare.add_argument("--src", help="source file, one sentence a line (.gz accepted)")
    compare.add_argument("--ref", help="reference file, line-aligned with --src")
    compare.add_argument("--split", choices=["valid", "test"],
                         help="instead of --src/--ref: this split of the corpus the models were trained on")
    compare.add_argument("--out", required=True, help="folder for the tables, plots and translations: a new or empty "
                         "one, or an earlier compare report (its files replaced)")
    compare.add_argument("--force", action="store_true", help="also write into a folder of heatmaps mt wrote "
                         "(mt align --out-dir; its files are kept); never into a folder mt did not write")
    compare.add_argument("--baseline", help="the model the others are tested against, by its directory or its name "
                         "in the tables (default: the first without "
                         "attention, else the first given; of several seeds of it, the one of median BLEU)")
    compare.add_argument("--gold", help="gold word alignments of the test pairs (Pharaoh i-j / ipj, 0-based) for AER")
    compare.add_argument("--buckets", default="10,20,30,40", help="upper bounds of the source-length buckets in words")
    compare.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples")
    compare.add_argument("--seed", type=int, default=12345,
                         help="seed of the resampling, 1 or more: the same seed, the same p-values")
    compare.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_explore_flag(compare, "these models on the first 500 sentences")
    add_search_flags(compare)
    add_model_flags(compare)
    add_language_flag(compare)
    return compare


def _buckets(text: str) -> list[tuple[int, int]]:
    """'10,20,30,40' -> (1-10), (11-20), (21-30), (31-40), (41+)."""
    from mt.evaluation.metrics import length_buckets

    try:
        edges = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        edges = []
    try:
        return length_buckets(edges)
    except MTError:
        raise MTError(f"--buckets {text!r}: give increasing upper bounds in words, e.g. --buckets 10,20,30,40") from None


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    from mt.analysis.compare.job import CompareRequest, run_compare

    request = CompareRequest(ns.out, ns.models, ns.systems or (), ns.src, ns.ref, ns.split, search_config(ns),
                             ns.baseline, ns.gold, _buckets(ns.buckets), ns.bootstrap, ns.seed, ns.save_systems,
                             ns.explore, ns.device, ns.precision, not ns.no_progress, force=ns.force,
                             force_language=ns.force_language)
    _, report = run_compare(request)
    print(report)
    return 0
