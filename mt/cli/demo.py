"""``mt demo``: attention versus no attention on the embedded demo corpus, fitted to the
machine's speed (``mt.analysis.demo``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mt.analysis.demo import DEFAULT_BUDGET_S, DemoSettings, run_demo


def demo_main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt demo", description="Train an RNN with and without attention on "
                                     "the demo corpus, fitted to this machine's speed, and compare them.")
    parser.add_argument("--out", default="runs/demo", help="folder for models, tables and plots (default: runs/demo)")
    parser.add_argument("--beam", type=int, default=4, help="beam size for the test translations")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"seconds the whole demo may take; training is fitted to it (default {DEFAULT_BUDGET_S:.0f})")
    parser.add_argument("--epochs", type=int, default=0,
                        help="train exactly this many epochs instead of fitting the budget")
    parser.add_argument("--sequential", action="store_true", help="train one model after the other")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both models, e.g. model.hidden_dim=256")
    ns = parser.parse_args(args)
    settings = DemoSettings(Path(ns.out), ns.beam, ns.budget, ns.epochs, ns.sequential, tuple(ns.overrides))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_demo(settings)
    return 0
