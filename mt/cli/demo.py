"""``mt demo``: attention versus no attention on the embedded demo corpus, fitted to the
machine's speed (``mt.analysis.demo.run_demo``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mt.cli.flags import new_parser


def parser() -> argparse.ArgumentParser:
    from mt.analysis.demo import DEFAULT_BUDGET_S
    from mt.decoding.search import DEFAULT_BEAM

    demo = new_parser("demo", "Train an RNN with and without attention on the demo corpus, fitted to this machine's "
                      "speed, and compare them.")
    demo.add_argument("--out", default="runs/demo", help="folder for models, tables and plots")
    demo.add_argument("--beam", type=int, default=DEFAULT_BEAM, help="beam size for the test translations")
    demo.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                      help="seconds the whole demo may take; training is fitted to it")
    demo.add_argument("--epochs", type=int, default=0, help="train exactly this many epochs instead of fitting the "
                      "budget (0: fit the budget)")
    demo.add_argument("--sequential", action="store_true", help="train one model after the other")
    demo.add_argument("overrides", nargs="*", help="Hydra overrides for both models, e.g. model.hidden_dim=256")
    return demo


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    from mt.analysis.demo import DemoSettings, run_demo

    settings = DemoSettings(Path(ns.out), ns.beam, ns.budget, ns.epochs, ns.sequential, tuple(ns.overrides))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_demo(settings)
    return 0
