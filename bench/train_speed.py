"""Training throughput (target tokens per second) of model variants on the demo corpus.

    .venv/bin/python bench/train_speed.py --models rnn_noattn rnn_bahdanau --repeats 3 --precision fp32 bf16 \
        --json bench/results/DATE_train_speed_CPU.json
    .venv/bin/python bench/train_speed.py --set data=multi30k data.dir=../shared/data/multi30k  # real data

Each repeat builds the model afresh with the same seed, runs ``--warmup`` updates
untimed, then times ``--steps`` updates (forward, backward, clip, Adam) on real
length-bucketed batches, with the timing loop the demo's estimate uses
(``timed_updates``). Data: the demo corpus (``data/demo``, generated on first use), or what
``--set`` names. Prints and optionally writes (``--json``) the median and all
repeats, with the machine and versions, so numbers in docs/ can be rerun.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mt.api import build_model, collate, compose, machine, prepare_data, resolve_precision, timed_updates, token_batches


def measure(model_name: str, precision: str, steps: int, warmup: int, max_tokens: int, data, seed: int,
            overrides: list[str]) -> float:
    """Tokens/s of ``steps`` updates after ``warmup`` untimed ones, in an epoch's batch order."""
    cfg = compose([*overrides, f"model={model_name}"])
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(data.src_tokenizer), len(data.tgt_tokenizer))
    batches = [collate([data.train.src[j] for j in idx], [data.train.tgt[j] for j in idx])
               for idx in token_batches(data.train.src.lengths, data.train.tgt.lengths,
                                        max_tokens, seed=seed)[: warmup + steps]]
    return timed_updates(model, batches[:warmup], batches[warmup:], resolve_precision(precision, "cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["rnn_noattn", "rnn_bahdanau"])
    parser.add_argument("--precision", nargs="+", choices=["auto", "fp32", "bf16"], default=["auto"],
                        help="precisions to measure (auto: what training would pick on this CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="mt train overrides for the data and models (default: the demo corpus)")
    parser.add_argument("--json", help="write the results here")
    ns = parser.parse_args()
    if ns.threads:
        torch.set_num_threads(ns.threads)
    data = prepare_data(compose(ns.set))
    results = []
    for name in ns.models:
        for precision in ns.precision:
            runs = [measure(name, precision, ns.steps, ns.warmup, ns.max_tokens, data, seed=r, overrides=ns.set)
                    for r in range(ns.repeats)]
            row = {"model": name, "precision": resolve_precision(precision, "cpu").name, "median_tok_s": round(statistics.median(runs)),
                   "runs": [round(r) for r in runs]}
            results.append(row)
            print(f"{name:<14} {row['precision']:<5} median {row['median_tok_s']:>6} tok/s   runs {row['runs']}", flush=True)
    if ns.json:
        Path(ns.json).write_text(json.dumps({
            "results": results, "threads": torch.get_num_threads(), "steps": ns.steps, "max_tokens": ns.max_tokens,
            "overrides": ns.set,
            "machine": machine(), "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
