"""How many sentences translate differently alone than in a batch, at a precision.

    .venv/bin/python bench/batch_invariance.py MODEL_DIR --precision bf16 [--lines 400 --alone 100] \
        >> bench/results/DATE_batch_invariance_CPU.jsonl

Data: the first ``--lines`` sentences of Multi30k test 2016 (``--test``, by default
``../shared/data/multi30k/test_2016_flickr.en.gz``). Greedy search over them four ways: the whole
set in one call (batched by length, as ``mt translate`` does a file), 32 lines a call (as a
server's window batches at 32 clients), streamed (``mt serve``'s continuous batching: one
sentence joins the running search at every step, each beside whatever is under way), and the
first ``--alone`` one at a time. In fp32 the search is batch-invariant so far as measured; in
bf16 the products' rounding depends on a batch's padded length, which this counts. Prints
one JSON line with the machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import torch

from mt.api import SearchConfig, StreamingTranslator, machine, open_translator

REPO = Path(__file__).resolve().parents[1]
TEST = REPO.parent / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--alone", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test", type=Path, default=TEST, help="source sentences, one a line (.gz or plain)")
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    translator = open_translator(ns.model, "cpu", ns.precision)
    raw = ns.test.read_bytes()
    lines = (gzip.decompress(raw) if ns.test.suffix == ".gz" else raw).decode().splitlines()[: ns.lines]
    whole = [t.text for t in translator.translate(lines)]
    by_32 = [t.text for i in range(0, len(lines), 32) for t in translator.translate(lines[i:i + 32])]
    alone = [translator.translate([line])[0].text for line in lines[: ns.alone]]
    streamed = _streamed(translator, lines)
    print(json.dumps({"model": ns.model, "precision": translator.precision.name, "lines": len(lines),
                      "whole_vs_32_a_call": sum(a != b for a, b in zip(whole, by_32)), "alone": len(alone),
                      "whole_vs_alone": sum(a != b for a, b in zip(whole, alone)),
                      "streamed_vs_whole": sum(a != b for a, b in zip(whole, streamed)),
                      "streamed_vs_alone": sum(a != b for a, b in zip(alone, streamed)), "threads": ns.threads,
                      "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}))


def _streamed(translator, lines: list[str]) -> list[str]:
    stream, search = StreamingTranslator(translator), SearchConfig(keep_attention=False)
    done: dict[int, str] = {}
    for i, line in enumerate(lines):
        for key, result in stream.submit(i, [line], search) + stream.step():
            done[key] = result[0][0].text
    while stream.busy:
        for key, result in stream.step():
            done[key] = result[0][0].text
    return [done[i] for i in range(len(lines))]


if __name__ == "__main__":
    main()
