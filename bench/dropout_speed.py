"""Dropout's masks on the CPU, in the forms a bf16 training step could draw them.

    .venv/bin/python bench/dropout_speed.py --threads 2 --repeats 5 --json bench/results/DATE_dropout_forms_CPU.json

No data: random tensors. Times forward + backward of dropout (p = 0.1) on the Transformer
preset's shapes ([4096, 1024] after the feed-forward's ReLU, [4096, 256] on the residual stream) in bf16
and fp32: ``F.dropout`` as nn.Dropout runs it, and masks drawn as a bool from ``torch.rand``
or from ``bernoulli_`` on an fp32 buffer. Medians of ``--repeats`` runs of ``--iters`` calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mt.api import machine


def plain(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.dropout(x, p, True)


def rand_bool(x: torch.Tensor, p: float) -> torch.Tensor:
    keep = torch.rand(x.shape, dtype=torch.float32) >= p
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))


def bernoulli_fp32(x: torch.Tensor, p: float) -> torch.Tensor:
    keep = torch.empty(x.shape, dtype=torch.float32).bernoulli_(1.0 - p)
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))


FORMS = {"F.dropout": plain, "rand >= p (bool)": rand_bool, "bernoulli_ on fp32": bernoulli_fp32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json")
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    rows = []
    for shape in ((4096, 1024), (4096, 256)):
        for dtype in (torch.bfloat16, torch.float32):
            for name, form in FORMS.items():
                x = torch.randn(shape, dtype=dtype, requires_grad=True)
                times = []
                for _ in range(ns.repeats):
                    start = time.perf_counter()
                    for _ in range(ns.iters):
                        form(x, 0.1).sum().backward()
                    times.append((time.perf_counter() - start) / ns.iters * 1000)
                row = {"shape": list(shape), "dtype": str(dtype).split(".")[1], "form": name,
                       "ms": round(statistics.median(times), 3)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if ns.json:
        Path(ns.json).write_text(json.dumps({"rows": rows, "threads": ns.threads, "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
