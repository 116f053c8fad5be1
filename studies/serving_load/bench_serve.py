"""Load test of ``mt serve`` on loopback: throughput, latency, errors and memory.

    .venv/bin/python studies/serving_load/bench_serve.py rnn=RUN1/model transformer=RUN2/model \
        --clients 1 8 32 128 --seconds 60 --unbatched-at 32 --soak 600 \
        --json studies/serving_load/results/DATE_serve_CPU.jsonl

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

Robustness (``mt serve --read-timeout`` / ``--max-connections`` / a timed-out request cancelled
in the search process):

    .venv/bin/python studies/serving_load/bench_serve.py rnn=RUN1/model --no-offline --unbatched-at \
        --clients 32 --seconds 30 --slow-clients 200 --slow-rounds 3 --json FILE
    .venv/bin/python studies/serving_load/bench_serve.py rnn=RUN1/model --no-offline --unbatched-at --clients \
        --overload 45 --overload-clients 256 --overload-lines 8 --overload-timeout 2 --json FILE

``--slow-clients N``: each level runs twice in a row, first alone (kind ``server``), then
beside N slow clients (kind ``server, slow clients``), ``--slow-rounds`` times, alternating,
so both see the same machine state. The slow clients run in a process of their own: each
opens a connection and sends a /translate request one byte every ``--slow-interval`` s
(headers then body; ``--slow-part body``: headers at once, the body slowly), opening a new
connection once the server answers or closes it. Their starts spread over ``--slow-ramp`` s,
and the normal clients start once all have. Reported beside the normal clients' figures: the
slow connections opened, their answers (``HTTP 408`` ...; ``closed``: closed without an
answer; ``open at the end``: still sending when the level ended), and how long each stayed
open (median / max of those that ended; the longest still open at the end).

``--overload S``, ``--overload-rounds`` times against a fresh server each (started with
``--timeout T`` from ``--overload-timeout`` and mt's own ``--max-queue``): the one-line
request and ``/health`` unloaded first (median of 5), then a flood of ``--overload-clients``
clients for S seconds, each with a connection of its own and requests of
``--overload-lines`` sentences (a q list), recording every status seen (with the 503s'
reasons, digits as N); once the flood's last request is answered, three rounds of one
one-line /translate and one ``/health`` on fresh connections, each timed, and the server's
search processes' CPU use over the next 3 s (about 1.0 a thread: they still search, for
nobody); then one-line requests one after another until one is answered 200 (at most 300 s
after the flood: ``first_200_after_s``). Without a hidden backlog the first one-line request answers in about its unloaded
time. The server command's ``mt`` is whatever ``python -m mt`` imports from the repository
root this script sits in (``PYTHONPATH`` first): each line names it (``mt_source``).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from mt.api import machine

REPO = Path(__file__).resolve().parents[2]
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
    def __init__(self, model: str, threads: int, *more: str, env: dict[str, str] | None = None,
                 max_queue: int | None = 100000) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        queue = ["--max-queue", str(max_queue)] if max_queue is not None else []  # None: mt's default
        # --beam 1: greedy, as every figure of this study was measured (the commands' default is 4 since)
        self.proc = subprocess.Popen([sys.executable, "-m", "mt", "serve", model, "--port", str(self.port),
                                      "--threads", str(threads), "--beam", "1", *queue, *more], cwd=REPO,
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


async def drive_clients(url: str, sentences: list[str], clients: int, seconds: float, pair: tuple[str, str],
                        lines: int = 1) -> dict:
    """``clients`` connections, each sending one sentence at a time for ``seconds`` (``lines`` > 1:
    a q list of that many sentences a request; then the 503s' reasons are counted too). The
    client is aiohttp: httpx's pool spent 16 ms of CPU a request at 128 connections (3 ms at 32),
    so the load generator, not the server, set the pace on this 2-core machine."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    reasons: Counter[str] = Counter()
    stop_at = time.perf_counter() + seconds

    async def client(k: int, http) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            q = sentences[i % len(sentences)] if lines == 1 else \
                [sentences[(i * lines + j) % len(sentences)] for j in range(lines)]
            try:
                async with http.post(f"{url}/translate", json={"q": q, "source": pair[0], "target": pair[1]}) as answer:
                    body = await answer.read()
                    ok, kind = answer.status == 200, f"HTTP {answer.status}"
                    if lines > 1 and not ok:
                        try:
                            reason = str(json.loads(body).get("error", ""))
                        except (ValueError, AttributeError):
                            reason = body[:60].decode(errors="replace")
                        reasons[f"{answer.status} " + re.sub(r"\d+(\.\d+)?", "N", reason)[:60]] += 1
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
            "sentences_per_s": round(len(latencies) * lines / elapsed, 2), "errors": errors, "error_kinds": kinds,
            "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "client": "aiohttp", **({"lines_per_request": lines, "answered_200": len(latencies),
                                     "error_reasons": dict(reasons)} if lines > 1 else {})}


def _request_bytes(port: int, sentence: str, pair: tuple[str, str]) -> tuple[bytes, bytes]:
    """A /translate request as a client writes it: (headers, body)."""
    body = json.dumps({"q": sentence, "source": pair[0], "target": pair[1]}).encode()
    head = (f"POST /translate HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nuser-agent: bench-slow\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    return head, body


async def _slow_clients(port: int, requests: list[tuple[bytes, bytes]], n: int, interval: float, ramp: float,
                        part: str, ready, stop) -> dict:
    """``n`` slow clients until ``stop`` (a multiprocessing Event) is set; ``ready`` once all began."""
    ended: list[float] = []        # seconds each connection stayed open, of those that ended
    statuses: Counter[str] = Counter()
    still_open: list[float] = []   # of those open when the level ended
    done = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)
        done.set()

    async def client(k: int) -> None:
        await asyncio.sleep(ramp * k / n)
        r = k
        while not done.is_set():
            opened = time.perf_counter()
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            except (OSError, asyncio.TimeoutError) as err:
                statuses[f"connect: {type(err).__name__}"] += 1
                await asyncio.sleep(interval)
                continue
            head, body = requests[r % len(requests)]
            r += n
            answer = asyncio.ensure_future(reader.read(65536))
            stopping = asyncio.ensure_future(done.wait())
            try:
                if part == "body":
                    writer.write(head)
                    slow = body
                else:
                    slow = head + body
                for i in range(len(slow)):
                    writer.write(slow[i:i + 1])
                    await writer.drain()
                    await asyncio.wait([answer, stopping], timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                    if answer.done() or stopping.done():
                        break
                if not answer.done() and not stopping.done():  # all sent: the answer, or the level's end
                    await asyncio.wait([answer, stopping], return_when=asyncio.FIRST_COMPLETED)
            except OSError:  # reset by the server while writing
                pass
            lived = time.perf_counter() - opened
            if answer.done() and not answer.cancelled() and answer.exception() is None:
                first = answer.result()
                status = f"HTTP {first.split()[1].decode()}" if first.startswith(b"HTTP/") else "closed"
                ended.append(lived)
            elif answer.done() and not answer.cancelled():
                status = f"closed: {type(answer.exception()).__name__}"
                ended.append(lived)
            else:
                status = "open at the end"
                still_open.append(lived)
            statuses[status] += 1
            answer.cancel()
            stopping.cancel()
            writer.close()

    watcher = asyncio.ensure_future(watch())
    tasks = [asyncio.ensure_future(client(k)) for k in range(n)]
    await asyncio.sleep(ramp)
    ready.set()
    await asyncio.gather(*tasks)
    watcher.cancel()
    return {"slow_clients": n, "slow_interval_s": interval, "slow_part": part, "slow_connections": len(ended) +
            len(still_open), "slow_answers": dict(statuses),
            "slow_open_s_median": round(statistics.median(ended), 2) if ended else None,
            "slow_open_s_max": round(max(ended), 2) if ended else None,
            "slow_still_open_s_max": round(max(still_open), 2) if still_open else None}


def _slow_process(args: tuple, ready, stop, results) -> None:
    results.put(asyncio.run(_slow_clients(*args, ready, stop)))


class SlowClients:
    """``_slow_clients`` in a process of its own, so their event loop does not delay the normal
    clients' (the two still share the machine's cores with the server)."""

    def __init__(self, port: int, requests: list[tuple[bytes, bytes]], n: int, interval: float, ramp: float,
                 part: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop_event, self.results = context.Event(), context.Event(), context.Queue()
        self.proc = context.Process(target=_slow_process, args=((port, requests, n, interval, ramp, part),
                                                                self.ready, self.stop_event, self.results))
        self.proc.start()
        if not self.ready.wait(ramp + 60):
            self.proc.terminate()
            raise SystemExit("the slow clients did not start")

    def stop(self) -> dict:
        self.stop_event.set()
        result = self.results.get(timeout=60)
        self.proc.join(10)
        return result


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _search_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _probe(url: str, sentence: str, pair: tuple[str, str]) -> tuple[float, int, float, int]:
    """One one-line /translate and one /health, each on a fresh connection (http.client: next to no
    client time of its own): (s, status, s, status)."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    timed = []
    for method, path, body in (("POST", "/translate", json.dumps({"q": sentence, "source": pair[0],
                                                                  "target": pair[1]})), ("GET", "/health", None)):
        start = time.perf_counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=300)
        connection.request(method, path, body, {"content-type": "application/json"} if body else {})
        status = connection.getresponse()
        status.read()
        connection.close()
        timed += [time.perf_counter() - start, status.status]
    return timed[0], timed[1], timed[2], timed[3]


def overload(server: Server, sentences: list[str], pair: tuple[str, str], seconds: float, clients: int,
             lines: int) -> dict:
    """The flood and what follows it (module docstring, ``--overload``)."""
    line = sentences[0]
    for _ in range(3):  # warm-up
        _probe(server.url, line, pair)
    quiet = [_probe(server.url, line, pair) for _ in range(5)]
    flood = asyncio.run(drive_clients(server.url, sentences, clients, seconds, pair, lines))
    flood_end = time.perf_counter()
    after = []
    for _ in range(3):
        at = time.perf_counter() - flood_end
        t, status, h, hstatus = _probe(server.url, line, pair)
        after.append({"at_s": round(at, 3), "translate_ms": round(t * 1000, 1), "translate_status": status,
                      "health_ms": round(h * 1000, 1), "health_status": hstatus})
    pids = _search_pids(server.proc.pid)
    cpu0, t0 = sum(_cpu_seconds(p) for p in pids), time.perf_counter()
    time.sleep(3)
    cpu = (sum(_cpu_seconds(p) for p in pids) - cpu0) / (time.perf_counter() - t0)
    tries = 0  # then one-line requests until one is answered 200 (at most 300 s after the flood)
    while time.perf_counter() - flood_end < 300:
        tries += 1
        if _probe(server.url, line, pair)[1] == 200:
            break
    first_200 = time.perf_counter() - flood_end
    return {"first_200_after_s": round(first_200, 2), "tries_to_200": tries, "flood": {k: flood[k] for k in ("clients", "seconds", "requests", "answered_200", "error_kinds",
                                             "error_reasons", "p50_ms", "p99_ms", "lines_per_request")},
            "quiet_translate_ms": round(statistics.median(q[0] for q in quiet) * 1000, 1),
            "quiet_health_ms": round(statistics.median(q[2] for q in quiet) * 1000, 1),
            "after": after, "after_first_translate_ms": after[0]["translate_ms"],
            "after_health_ms_median": round(statistics.median(a["health_ms"] for a in after), 1),
            "search_cpu_after": round(cpu, 2), "server_peak_rss_mib": _rss(server.proc.pid)["VmHWM"]}


def offline(model: str, sentences: list[str], threads: int, env: dict[str, str], batch: int = 0,
            stream: int = 0, join_share: float | None = None, held_autocast: bool = True) -> dict:
    """``mt translate`` of the sentences in one file, timed around the translation only;
    ``batch`` N > 0: N lines a call, in file order (what a server's batches can hold when N
    clients each have one sentence in flight); ``stream`` N > 0: continuous batching as ``mt serve`` does
    it, N sentences in flight (a new one joins as one ends), without HTTP, with ``join_share``
    (None: mt's JOIN_SHARE; 0: every sentence joins at once) and the autocast context held
    open across steps as the server's search process holds it (``held_autocast``), or one per step."""
    code = ("import sys, time, torch; from mt.api import open_translator; "
            f"torch.set_num_threads({threads}); t = open_translator(sys.argv[1]); "
            "lines = open(sys.argv[2]).read().splitlines(); t.translate(lines[:50]); ")
    if not stream:
        code += (f"n = {batch} or len(lines); s = time.perf_counter(); "
                 "[t.translate(lines[i:i + n]) for i in range(0, len(lines), n)]; "
                 "print(len(lines) / (time.perf_counter() - s))")
    else:  # continuous batching without the server: ``stream`` sentences in flight, each replaced as it ends
        joins = f", join_share={join_share}" if join_share is not None else ""
        context = "t.precision.autocast()" if held_autocast else "__import__('contextlib').nullcontext()"
        code += ("from mt.api import SearchConfig, StreamingTranslator; "
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
    task = asyncio.create_task(drive_clients(server.url, sentences, 32, seconds, pair))
    while not task.done():
        samples.append(_rss(server.proc.pid)["VmRSS"])
        await asyncio.sleep(10)
    return await task


def served_pair(url: str) -> tuple[str, str]:
    """The (source, target) languages of the first model the server at ``url`` serves."""
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
    parser.add_argument("--slow-clients", type=int, default=0, metavar="N",
                        help="each level also beside N slow clients, right after it ran alone (docstring)")
    parser.add_argument("--slow-interval", type=float, default=0.5, help="seconds between a slow client's bytes")
    parser.add_argument("--slow-ramp", type=float, default=5, help="seconds over which the slow clients start")
    parser.add_argument("--slow-part", choices=["all", "body"], default="all",
                        help="what a slow client sends slowly: the whole request, or only its body")
    parser.add_argument("--slow-rounds", type=int, default=1, help="alone / beside slow clients, this many times")
    parser.add_argument("--overload", type=float, default=0, metavar="S",
                        help="a flood of S seconds on the first model, then a one-line request and /health timed")
    parser.add_argument("--overload-clients", type=int, default=256)
    parser.add_argument("--overload-lines", type=int, default=8, help="sentences in each request of the flood")
    parser.add_argument("--overload-timeout", type=float, default=2, help="the flooded server's --timeout")
    parser.add_argument("--overload-rounds", type=int, default=3, help="floods, each against a fresh server")
    ns = parser.parse_args()
    sentences = gzip.decompress(TEST.read_bytes()).decode().splitlines()
    info = {"label": ns.label, "server_env": ns.server_env, "server_args": ns.server_args, "threads": ns.threads,
            **({"join_share": ns.join_share} if ns.join_share is not None else {}),
            **({"autocast": "per step"} if ns.autocast_per_step else {}),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    env = dict(item.split("=", 1) for item in ns.server_env)
    info["mt_source"] = subprocess.run([sys.executable, "-c", "import mt; print(mt.__file__)"], cwd=REPO, check=False,
                                       env={**os.environ, **env}, capture_output=True, text=True).stdout.strip()

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
                      **offline(model, sentences, threads, env)})
                for batch in ns.offline_batches:
                    emit({"model": name, "kind": "offline", "offline_threads": threads,
                          **offline(model, sentences, threads, env, batch)})
                for stream in ns.offline_stream:
                    emit({"model": name, "kind": "offline", "offline_threads": threads,
                          **offline(model, sentences, threads, env, stream=stream,
                                    join_share=ns.join_share, held_autocast=not ns.autocast_per_step)})
        for batching in (True, False):
            levels = ns.clients if batching else ns.unbatched_at
            if not levels:
                continue
            server = Server(model, ns.threads, *ns.server_args.split(), *([] if batching else ["--no-batching"]),
                            env=env)
            pair = served_pair(server.url)
            slow_requests = [_request_bytes(server.port, s, pair) for s in sentences]
            for clients in levels:
                for _ in range(ns.slow_rounds if ns.slow_clients and batching else 1):
                    row = asyncio.run(drive_clients(server.url, sentences, clients, ns.seconds, pair))
                    emit({"model": name, "kind": "server" if batching else "server, no batching", **row,
                          "server_peak_rss_mib": _rss(server.proc.pid)["VmHWM"], "load": os.getloadavg()})
                    if ns.slow_clients and batching:
                        slow = SlowClients(server.port, slow_requests, ns.slow_clients, ns.slow_interval,
                                           ns.slow_ramp, ns.slow_part)
                        row = asyncio.run(drive_clients(server.url, sentences, clients, ns.seconds, pair))
                        emit({"model": name, "kind": "server, slow clients", **row, **slow.stop(),
                              "server_peak_rss_mib": _rss(server.proc.pid)["VmHWM"], "load": os.getloadavg()})
            if batching and ns.soak and model == ns.models[0]:
                samples: list[int] = []
                row = asyncio.run(_soak(server, sentences, ns.soak, pair, samples))
                base = samples[min(6, len(samples) - 1)]  # after the first minute
                emit({"model": name, "kind": "soak", **row, "rss_samples_mib": samples,
                      "rss_growth_pct": round(100 * (samples[-1] - base) / base, 2)})
            emit({"model": name, "kind": "stop", "batching": batching, "exit_status": server.stop()})
        if ns.overload and model == ns.models[0]:
            for _ in range(ns.overload_rounds):
                server = Server(model, ns.threads, "--timeout", f"{ns.overload_timeout:g}", *ns.server_args.split(),
                                env=env, max_queue=None)
                pair = served_pair(server.url)
                row = overload(server, sentences, pair, ns.overload, ns.overload_clients, ns.overload_lines)
                emit({"model": name, "kind": "overload", "overload_timeout_s": ns.overload_timeout, **row,
                      "exit_status": server.stop(), "load": os.getloadavg()})


if __name__ == "__main__":
    main()
