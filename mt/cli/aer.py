"""``mt aer``: alignment error rate, precision and recall of word alignments against gold
(``mt.evaluation.aer``), overall and by source length. No model, no torch."""

from __future__ import annotations

import argparse
import json

from mt.cli.flags import add_json_flag, check_files, new_parser


def parser() -> argparse.ArgumentParser:
    aer = new_parser("aer", "Alignment error rate, precision and recall (Och & Ney 2003) of predicted word alignments "
                     "against gold with sure (i-j) and possible (ipj) links; one line per sentence pair, i the source "
                     "word and j the target word.")
    aer.add_argument("--gold", required=True, help="gold alignments (Pharaoh: i-j sure, ipj possible)")
    aer.add_argument("--pred", required=True, help="predicted alignments (Pharaoh i-j, as mt align --pharaoh writes)")
    aer.add_argument("--gold-one-based", action="store_true", help="the gold counts words from 1 (as the Hansards "
                     "set of ../shared/data/alignments does)")
    aer.add_argument("--pred-one-based", action="store_true", help="the prediction counts words from 1")
    aer.add_argument("--swap-gold", action="store_true",
                     help="the gold writes target-source (j-i): swap each pair before scoring")
    aer.add_argument("--by-length", metavar="TEXT", help="also score by source length: the source sentences of the "
                     "same pairs, one a line (or 'source ||| target' lines, as mt align --pairs reads)")
    aer.add_argument("--edges", type=int, nargs="+", default=[10, 18], metavar="N",
                     help="with --by-length: the longest sentence of each bucket (default 10 18: 1-10, 11-18, 19+)")
    add_json_flag(aer)
    return aer


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    check_files(ns, ["--json"], ["--gold", "--pred", "--by-length"])
    from mt.evaluation.aer import aer_by_length, alignment_error_rate, read_gold_and_predicted

    gold, predicted = read_gold_and_predicted(ns.gold, ns.pred, ns.gold_one_based, ns.pred_one_based, ns.swap_gold)
    scores = alignment_error_rate(gold, predicted)
    print(f"AER {scores.aer:.2f}  precision {scores.precision:.2f}  recall {scores.recall:.2f}  "
          f"({scores.sentences} sentences; {scores.predicted} predicted, {scores.sure} sure and "
          f"{scores.possible} possible gold links)")
    result = scores.as_dict()
    if ns.by_length:
        from mt.data.corpus import read_lines

        lengths = [len(line.split("|||")[0].split()) for line in read_lines(ns.by_length)]  # source words
        buckets = aer_by_length(gold, predicted, lengths, ns.edges)
        for label, s in buckets:
            print(f"  {label:>7} source words: AER {s.aer:.2f}  precision {s.precision:.2f}  recall {s.recall:.2f}  "
                  f"({s.sentences} sentences)")
        result["by_length"] = [{"source_words": label, **s.as_dict()} for label, s in buckets]
    if ns.json:
        from mt.files import write_text_file

        write_text_file(ns.json, json.dumps(result, indent=2) + "\n")
    return 0
