"""Start-up time and memory of ``mt train`` on corpora of 0.1M to millions of pairs.

    .venv/bin/python bench/large_corpus.py make --pairs 100000 1000000 4500000 --out /tmp/corpora
    .venv/bin/python bench/large_corpus.py run /tmp/corpora/1000000 --cache /tmp/cache_1m \
        --json bench/results/DATE_large_corpus_CPU.jsonl                    # appended, a line a run
    .venv/bin/python bench/large_corpus.py run /tmp/corpora/1000000 --cache /tmp/cache_1m --ddp 2 --json FILE

``make`` writes Multi30k's training set (``--multi30k``, by default ``../shared/data/multi30k``) repeated to each size
as plain ``train.{en,de}``, beside Multi30k's own ``valid`` and ``test`` files.

``run`` times ``python -m mt train data=files ... train.max_steps=2`` (the preset RNN with Bahdanau
attention, unigram 8k per side, 2 threads, validation on 10 sentences) as a user would
start it, from the start of the command to its end, and follows every process it starts
(torchrun ranks too) through /proc: peak resident memory (VmHWM) of each, and at that peak
how much was its own (RssAnon) and how much mapped files (RssFile, shared between processes:
the page cache of the encoded corpus). A first run with an empty ``--cache`` prepares the
corpus (tokenizers, encoding); a second run with the same cache shows a warm start. The
stage times ``mt train`` logs (``stage ...`` lines) are collected where it writes them.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from mt.api import machine

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"


def make(sizes: list[int], out: Path, multi30k: Path = MULTI30K) -> None:
    lines = {lang: gzip.decompress((multi30k / f"train.{lang}.gz").read_bytes()).decode().splitlines()
             for lang in ("en", "de")}
    for n in sizes:
        folder = out / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        for lang, text in lines.items():
            with open(folder / f"train.{lang}", "w", encoding="utf-8") as handle:
                handle.writelines(line + "\n" for line in itertools.islice(itertools.cycle(text), n))
            for split, name in (("val", "valid"), ("test_2016_flickr", "test")):
                (folder / f"{name}.{lang}").write_bytes(gzip.decompress((multi30k / f"{split}.{lang}.gz").read_bytes()))
        print(f"wrote {folder}: {n:,} training pairs", flush=True)


def _status(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v.split()[0]) // 1024 for k, v in re.findall(r"^(VmHWM|VmRSS|RssAnon|RssFile):\s+(.*)$", text,
                                                                 re.MULTILINE)}


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def follow(root: int, peaks: dict[int, dict], stop: threading.Event) -> None:
    """Every 0.1 s: each process of the tree, its VmHWM and the anon / file split at its peak RSS."""
    while not stop.is_set():
        tree, todo = [], [root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += _children(pid)
        for pid in tree:
            s = _status(pid)
            if not s:
                continue
            seen = peaks.setdefault(pid, {"cmd": _cmdline(pid), "VmHWM": 0, "VmRSS": 0})
            seen["VmHWM"] = max(seen["VmHWM"], s.get("VmHWM", 0))
            if s.get("VmRSS", 0) >= seen["VmRSS"]:
                seen.update(VmRSS=s.get("VmRSS", 0), RssAnon=s.get("RssAnon", 0), RssFile=s.get("RssFile", 0))
        stop.wait(0.1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return ""


def run(corpus: Path, cache: Path, ddp: int, label: str, out_json: str | None, code: Path | None = None) -> dict:
    run_dir = cache.parent / f"{cache.name}_run_{int(time.time())}"
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    if code is not None:  # another checkout's mt (e.g. the commit before a change), first on the path
        env["PYTHONPATH"] = str(code)
    command = [sys.executable, "-m", "mt", "train", "data=files", f"data.dir={corpus}", "data.src_lang=en",
               "data.tgt_lang=de", f"cache_dir={cache}", "train.max_steps=2", "train.valid_max_sentences=10",
               "train.threads=2", f"hydra.run.dir={run_dir}", *([f"train.ddp={ddp}"] if ddp > 1 else [])]
    peaks: dict[int, dict] = {}
    stop = threading.Event()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=code or REPO)  # python -m puts the working folder first on the path
    watcher = threading.Thread(target=follow, args=(proc.pid, peaks, stop), daemon=True)
    watcher.start()
    output = proc.communicate()[0]
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        sys.exit(f"mt train failed ({proc.returncode}):\n{output[-3000:]}")
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").is_file() else output
    stages = dict(re.findall(r"stage ([a-z ]+?): ([0-9.]+) s", log))
    trainers = [p for p in peaks.values() if " train " in p["cmd"] and "torch.distributed.run" not in p["cmd"]]
    result = {"label": label, "corpus": str(corpus), "pairs": (corpus / "train.en").read_bytes().count(b"\n"),
              "ddp": ddp, "seconds": round(seconds, 1), "stages_s": {k: float(v) for k, v in stages.items()},
              "processes": [{k: p.get(k) for k in ("VmHWM", "RssAnon", "RssFile")} for p in trainers],
              "peak_rss_mib": max((p["VmHWM"] for p in trainers), default=0),
              "cache_mib": round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20, 1),
              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    print(json.dumps(result), flush=True)
    if out_json:
        with open(out_json, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("make", help="write Multi30k repeated to each size")
    m.add_argument("--pairs", type=int, nargs="+", required=True)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--multi30k", type=Path, default=MULTI30K, help="Multi30k's folder (train, val, test_2016_flickr)")
    r = sub.add_parser("run", help="time mt train on a corpus folder written by make")
    r.add_argument("corpus", type=Path)
    r.add_argument("--cache", type=Path, required=True, help="mt's cache_dir (empty: a first run)")
    r.add_argument("--ddp", type=int, default=1)
    r.add_argument("--label", default="")
    r.add_argument("--json")
    r.add_argument("--code", type=Path, help="run the mt of this checkout instead (PYTHONPATH)")
    ns = parser.parse_args()
    if ns.what == "make":
        make(ns.pairs, ns.out, ns.multi30k)
    else:
        run(ns.corpus, ns.cache, ns.ddp, ns.label, ns.json, ns.code)


if __name__ == "__main__":
    main()
