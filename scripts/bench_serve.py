"""Load test of ``mt serve`` on loopback: throughput, latency, errors and memory.

    .venv/bin/python scripts/bench_serve.py rnn=RUN1/model transformer=RUN2/model \
        --clients 1 8 32 128 --seconds 60 --unbatched-at 32 --soak 600 --json docs/bench/FILE.jsonl

For each model: the offline ceiling first (``mt translate`` of the same sentences in one
file, timed inside one process: sentences/s), then ``mt serve`` in a subprocess, and for
each level N clients (asyncio + aiohttp), each sending one Multi30k test sentence at a time for
``--seconds``: requests/s, sentences/s, p50 / p95 / p99 latency, errors (any status but 200,
or a failed connection), and the server's peak RSS (VmHWM of the server process plus its search
processes). ``--unbatched-at N`` repeats level
N against a server started with ``--no-batching`` (each request translated alone).
``--soak S`` keeps N = 32 clients on the first model for S seconds and samples the server's RSS
every 10 s: growth is the last sample over the one after the first minute. Every request
and every second is bounded; the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TEST = REPO.parent / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS (MiB) of the server and its search processes together (children that run
    multiprocessing's spawn_main; its resource tracker left out)."""
    total = {"VmHWM": 0, "VmRSS": 0}
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for p in [str(pid)] + [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]:
        text = Path(f"/proc/{p}/status").read_text()
        for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+)", text, re.MULTILINE):
            total[k] += int(v) // 1024
    return total


class Server:
    def __init__(self, model: str, threads: int, *more: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "mt", "serve", model, "--port", str(self.port),
                                      "--threads", str(threads), "--max-queue", "100000", *more], cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("mt serve did not start")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


async def _load(url: str, sentences: list[str], clients: int, seconds: float, pair: tuple[str, str]) -> dict:
    """``clients`` connections, each sending one sentence at a time for ``seconds``. The client is
    aiohttp: httpx's pool spent 16 ms of CPU a request at 128 connections (3 ms at 32), so the
    load generator, not the server, set the pace on this 2-core machine."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds

    async def client(k: int, http) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                async with http.post(f"{url}/translate", json={"q": sentences[i % len(sentences)],
                                                               "source": pair[0], "target": pair[1]}) as answer:
                    await answer.read()
                    ok, kind = answer.status == 200, f"HTTP {answer.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                ok, kind = False, type(err).__name__
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
                kinds[kind] = kinds.get(kind, 0) + 1
            i += clients

    began = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(client(k, http) for k in range(clients)))
    elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0] if latencies else 0] * 99
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies) + errors,
            "requests_per_s": round((len(latencies) + errors) / elapsed, 2),
            "sentences_per_s": round(len(latencies) / elapsed, 2), "errors": errors, "error_kinds": kinds,
            "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "client": "aiohttp"}


def offline(model: str, sentences: list[str], threads: int, env: dict[str, str], batch: int = 0,
            prune_share: float | None = None, stream: int = 0, join_share: float | None = None,
            held_autocast: bool = True) -> dict:
    """``mt translate`` of the sentences in one file, timed around the translation only;
    ``batch`` N > 0: N lines a call, in file order (what a server's batches can hold when N
    clients each have one sentence in flight); ``prune_share``: greedy search's PRUNE_SHARE
    for this measurement (None: mt's); ``stream`` N > 0: continuous batching as ``mt serve`` does
    it, N sentences in flight (a new one joins as one ends), without HTTP, with ``join_share``
    (None: mt's JOIN_SHARE; 0: every sentence joins at once) and the autocast context held
    open across steps as the server's search process holds it (``held_autocast``), or one per step."""
    share = f"import mt.decoding.search as S; S.PRUNE_SHARE = {prune_share}; " if prune_share is not None else ""
    code = (f"import sys, time, torch; {share}from mt.decoding.translator import Translator; "
            f"torch.set_num_threads({threads}); t = Translator.from_dir(sys.argv[1]); "
            "lines = open(sys.argv[2]).read().splitlines(); t.translate(lines[:50]); ")
    if not stream:
        code += (f"n = {batch} or len(lines); s = time.perf_counter(); "
                 "[t.translate(lines[i:i + n]) for i in range(0, len(lines), n)]; "
                 "print(len(lines) / (time.perf_counter() - s))")
    else:  # continuous batching without the server: ``stream`` sentences in flight, each replaced as it ends
        joins = f", join_share={join_share}" if join_share is not None else ""
        context = "t.precision.autocast()" if held_autocast else "__import__('contextlib').nullcontext()"
        code += ("from mt.decoding.streaming import StreamingTranslator; from mt.decoding.search import SearchConfig; "
                 f"st, cfg, todo, done = StreamingTranslator(t{joins}), SearchConfig(keep_attention=False), "
                 "list(lines), 0; s = time.perf_counter(); "
                 f"[st.submit(i, [todo.pop()], cfg) for i in range({stream})]\n"
                 f"with {context}:\n"
                 "  while st.busy:\n"
                 "    ended = st.step(); done += len(ended)\n"
                 "    [st.submit(0, [todo.pop()], cfg) for _ in ended if todo]\n"
                 "print(done / (time.perf_counter() - s))")
    path = Path("/tmp") / f"bench_serve_{time.time_ns()}.txt"
    path.write_text("\n".join(sentences) + "\n")
    runs = [float(subprocess.run([sys.executable, "-c", code, model.split("=")[-1], str(path)], cwd=REPO, check=True,
                                 capture_output=True, text=True, env={**os.environ, **env}).stdout.split()[-1])
            for _ in range(3)]
    path.unlink()
    return {"offline_sentences_per_s": round(statistics.median(runs), 2), "offline_runs": [round(r, 2) for r in runs],
            "offline_batch": f"{stream} in flight, streamed" if stream else batch or "whole file"}


async def _soak(server: Server, sentences: list[str], seconds: float, pair: tuple[str, str],
                samples: list[int]) -> dict:
    """32 clients for ``seconds``, the server's RSS sampled every 10 s into ``samples``."""
    task = asyncio.create_task(_load(server.url, sentences, 32, seconds, pair))
    while not task.done():
        samples.append(_rss(server.proc.pid)["VmRSS"])
        await asyncio.sleep(10)
    return await task


def _pair(url: str) -> tuple[str, str]:
    m = httpx.get(f"{url}/models").json()[0]
    return m["source"], m["target"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 8, 32, 128],
                        help="client levels (none: only the offline rates)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--unbatched-at", type=int, nargs="*", default=[32])
    parser.add_argument("--no-offline", dest="offline", action="store_false", help="skip the offline ceiling")
    parser.add_argument("--soak", type=float, default=0, help="seconds of the RSS soak at 32 clients (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server's search processes")
    parser.add_argument("--offline-threads", type=int, nargs="+", default=[1, 2],
                        help="torch threads of the offline runs (one measurement each)")
    parser.add_argument("--offline-batches", type=int, nargs="*", default=[],
                        help="also the offline rate N lines a call, for each N (e.g. 32: the most a batch holds "
                        "with 32 clients)")
    parser.add_argument("--prune-share", type=float, help="offline only: greedy search drops its ended rows once "
                        "they are this share of the batch (mt.decoding.search.PRUNE_SHARE; default: mt's)")
    parser.add_argument("--offline-stream", type=int, nargs="*", default=[], metavar="N",
                        help="offline also with continuous batching, N sentences in flight (mt serve's search "
                             "without HTTP)")
    parser.add_argument("--join-share", type=float, help="--offline-stream only: waiting sentences join once they "
                        "are this share of those searching (mt.decoding.streaming.JOIN_SHARE; 0: each at once)")
    parser.add_argument("--autocast-per-step", action="store_true", help="--offline-stream only: one autocast "
                        "context per step (the weights re-cast each step) instead of one held open")
    parser.add_argument("--json", help="append one line per measurement here")
    parser.add_argument("--label", default="", help="written into every line (what this run varies)")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="environment of the server process (e.g. OMP_WAIT_POLICY=PASSIVE)")
    parser.add_argument("--server-args", default="", help="more mt serve options, one string")
    ns = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from mt.hardware import machine

    sentences = gzip.decompress(TEST.read_bytes()).decode().splitlines()
    info = {"label": ns.label, "server_env": ns.server_env, "server_args": ns.server_args, "threads": ns.threads,
            **({"prune_share": ns.prune_share} if ns.prune_share is not None else {}),
            **({"join_share": ns.join_share} if ns.join_share is not None else {}),
            **({"autocast": "per step"} if ns.autocast_per_step else {}),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    env = dict(item.split("=", 1) for item in ns.server_env)

    def emit(row: dict) -> None:
        row = {**row, **info}
        print(json.dumps(row), flush=True)
        if ns.json:
            with open(ns.json, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")

    for model in ns.models:
        name = model.split("=")[0]
        if ns.offline:
            for threads in ns.offline_threads:
                emit({"model": name, "kind": "offline", "offline_threads": threads,
                      **offline(model, sentences, threads, env, prune_share=ns.prune_share)})
                for batch in ns.offline_batches:
                    emit({"model": name, "kind": "offline", "offline_threads": threads,
                          **offline(model, sentences, threads, env, batch, ns.prune_share)})
                for stream in ns.offline_stream:
                    emit({"model": name, "kind": "offline", "offline_threads": threads,
                          **offline(model, sentences, threads, env, prune_share=ns.prune_share, stream=stream,
                                    join_share=ns.join_share, held_autocast=not ns.autocast_per_step)})
        for batching in (True, False):
            levels = ns.clients if batching else ns.unbatched_at
            if not levels:
                continue
            server = Server(model, ns.threads, *ns.server_args.split(), *([] if batching else ["--no-batching"]),
                            env=env)
            pair = _pair(server.url)
            for clients in levels:
                row = asyncio.run(_load(server.url, sentences, clients, ns.seconds, pair))
                emit({"model": name, "kind": "server" if batching else "server, no batching", **row,
                      "server_peak_rss_mib": _rss(server.proc.pid)["VmHWM"]})
            if batching and ns.soak and model == ns.models[0]:
                samples: list[int] = []
                row = asyncio.run(_soak(server, sentences, ns.soak, pair, samples))
                base = samples[min(6, len(samples) - 1)]  # after the first minute
                emit({"model": name, "kind": "soak", **row, "rss_samples_mib": samples,
                      "rss_growth_pct": round(100 * (samples[-1] - base) / base, 2)})
            emit({"model": name, "kind": "stop", "batching": batching, "exit_status": server.stop()})


if __name__ == "__main__":
    main()
