"""Where the CPU goes while ``mt serve`` is under load: its process, its search processes, the
load generator, and what stays idle.

    .venv/bin/python studies/serving_load/cpu_split.py RUN/model --threads 2 --clients 32 --seconds 20 \
        >> studies/serving_load/results/DATE_cpu_split_CPU.txt

Starts the server as bench_serve.py (beside it) does, loads it with N clients each sending one
Multi30k test 2016 sentence at a time, and reads the CPU time of each process from /proc (and
the machine's idle time) before and after; prints cores used by each, and the mean batch size
from the server's /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import time
from pathlib import Path

import bench_serve  # beside this script: python puts the script's folder first on the path
import httpx

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int | str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _searchers(pid: int) -> list[str]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _idle() -> float:
    return int(Path("/proc/stat").read_text().split("\n")[0].split()[4]) / TICK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--server-args", default="")
    ns = parser.parse_args()
    sentences = gzip.decompress(bench_serve.TEST.read_bytes()).decode().splitlines()
    server = bench_serve.Server(ns.model, ns.threads, *ns.server_args.split())
    try:
        pair = bench_serve.served_pair(server.url)
        kids = _searchers(server.proc.pid)
        before = (_cpu(server.proc.pid), sum(map(_cpu, kids)), _cpu(os.getpid()), _idle(), time.time())
        row = asyncio.run(bench_serve.drive_clients(server.url, sentences, ns.clients, ns.seconds, pair))
        after = (_cpu(server.proc.pid), sum(map(_cpu, kids)), _cpu(os.getpid()), _idle(), time.time())
        span = after[4] - before[4]
        used = [(a - b) / span for a, b in zip(after[:4], before[:4])]
        metrics = httpx.get(f"{server.url}/metrics").text

        def total(name: str) -> float:
            return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))

        batch = total("mt_batch_sentences_sum") / max(total("mt_batch_sentences_count"), 1)
        print(f"{ns.clients} clients, {ns.threads} threads: {row['sentences_per_s']} sentences/s, p50 {row['p50_ms']} ms;"
              f" cores: server {used[0]:.2f}, search {used[1]:.2f}, load generator {used[2]:.2f}, idle {used[3]:.2f};"
              f" mean batch {batch:.1f} sentences")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
