"""``mt average``: one model whose weights are the mean of several of a run's
(``mt.training.averaging.average_paths``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mt.cli.flags import new_parser


def parser() -> argparse.ArgumentParser:
    average = new_parser("average", "Average the weights of several models of a run.")
    average.add_argument("paths", nargs="+", help="model directories, or a run directory whose kept checkpoints "
                         "(train.keep_checkpoints) are averaged")
    average.add_argument("--last", type=int, default=0, help="use only the newest N models (0: all)")
    average.add_argument("--out", required=True, help="the model directory to write: a new or empty folder, or an "
                         "earlier average (replaced once the new one is complete)")
    average.add_argument("--force", action="store_true", help="also replace an export mt wrote at --out (never a "
                         "trained model or a folder mt did not write)")
    return average


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    from mt.training.averaging import average_paths

    dirs, out = average_paths([Path(p) for p in ns.paths], Path(ns.out), ns.last, ns.force)
    print(f"averaged {len(dirs)} models: {', '.join(str(d) for d in dirs)}\nmodel directory: {out}")
    return 0
