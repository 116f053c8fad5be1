"""GFLOP/s of one matrix product in fp32 and bf16 on this CPU, as PyTorch runs it.

    .venv/bin/python bench/matmul_precision.py >> bench/results/DATE_matmul_precision_CPU.jsonl
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/matmul_precision.py   # oneDNN kept off bf16 instructions

No data: random matrices of a Transformer-preset shape ([4096, 256] x [256, 1024] by default),
median of ``--repeats`` timed products after two untimed ones. Tells native bf16 (several times fp32) from
emulated bf16 (many times slower than fp32), which is what ``train.precision=auto``
decides on (mt/precision.py). Prints one JSON line with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from mt.api import cpu_bf16_support, machine


def gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="4096,256,1024", help="M,K,N of [M, K] x [K, N]")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    m, k, n = (int(x) for x in ns.shape.split(","))
    fp32 = gflops(m, k, n, torch.float32, ns.repeats)
    bf16 = gflops(m, k, n, torch.bfloat16, max(2, ns.repeats // 5))
    native, why = cpu_bf16_support()
    print(json.dumps({"shape": [m, k, n], "fp32_gflops": round(fp32, 1), "bf16_gflops": round(bf16, 2),
                      "bf16_over_fp32": round(bf16 / fp32, 3), "mt_native_bf16": native, "why": why,
                      "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
                      "machine": machine(), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
