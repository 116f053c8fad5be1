"""Time to quality: trials of `mt train` on Multi30k under a fixed wall-clock budget.

Each trial is one `mt train` command (the Transformer on Multi30k en-de, joint 8k vocabulary,
shared embeddings, 2 threads, bf16 where the CPU computes it natively) with a time budget
and the overrides under test. The script times the whole command, reads its peak resident
memory from the kernel (``wait4``), and appends one JSON line per trial to a records file:
the overrides, the machine, the versions, each validation's BLEU against the wall clock
since the command started, the best validation BLEU and the training speed. Test sets are
never read by the trials: they are compared on validation BLEU only; ``tune`` chooses the
beam size and length penalty on the whole validation set, and ``test`` reads test 2016 once
per final candidate.

    .venv/bin/python studies/time_to_quality/trials.py run RECORDS.jsonl NAME BUDGET_S [OVERRIDE ...]
    .venv/bin/python studies/time_to_quality/trials.py queue RECORDS.jsonl QUEUE.txt
    .venv/bin/python studies/time_to_quality/trials.py table RECORDS.jsonl [...]
    .venv/bin/python studies/time_to_quality/trials.py plot OUT.png RECORDS.jsonl [NAME ...]
    .venv/bin/python studies/time_to_quality/trials.py tune TUNE.jsonl RUN_DIR [BEAMS [ALPHAS]]
    .venv/bin/python studies/time_to_quality/trials.py test TEST.jsonl RUN_DIR BEAM ALPHA

``queue`` runs each line of QUEUE.txt (``NAME BUDGET_S OVERRIDE ...``; ``#`` comments) that has
no record yet, in order, rereading the file after each trial so lines can be added while it
runs. Runs go to ``runs/ttq/NAME`` (``TTQ_RUNS`` for another folder); ``MULTI30K`` points at
the corpus (default ``../shared/data/multi30k``). With ``--cold`` (after ``run``) the trial
gets a cache folder of its own, so tokenizer training and encoding count in its clock, as
they do for a user's first run.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mt
from mt.api import machine

REPO = Path(__file__).resolve().parents[2]
MT = REPO / ".venv" / "bin" / "mt"
RUNS = Path(os.environ.get("TTQ_RUNS", "runs/ttq"))  # relative to the repository's root, where mt runs
CORPUS = os.environ.get("MULTI30K", "../shared/data/multi30k")
# What every trial shares, the preset as it was when the search began (2026-12-07: constant 1e-3
# after 100 warm-up updates, Adam's betas 0.9 / 0.999, dropout 0.1 everywhere), pinned since the
# recipe the search found became the preset: only the overrides of a trial differ, and a queue
# line reruns as it ran.
BASE = ["data=multi30k", f"data.dir={CORPUS}", "data.tokenizer.joint=true", "data.tokenizer.src_vocab_size=8000",
        "model=transformer", "model.share_embeddings=true", "train.epochs=1000", "train.threads=2",
        "train.schedule=constant", "train.lr=0.001", "train.warmup_steps=100", "train.decay_from=0",
        "train.betas=[0.9,0.999]", "model.dropout=0.1", "model.attention_dropout=null"]


def resident_mib(pid: int) -> float | None:
    """The resident memory of a process now (VmRSS), in MiB; None once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def watch_memory(pid: int, start: float, every_s: float = 2.0) -> list[tuple[float, float]]:
    """(seconds since ``start``, resident MiB) every ``every_s`` until the process ends."""
    samples = []
    while (rss := resident_mib(pid)) is not None:
        samples.append((round(time.perf_counter() - start, 1), round(rss, 1)))
        time.sleep(every_s)
    return samples


def run_trial(records: Path, name: str, budget_s: float, overrides: list[str], cold: bool = False) -> dict:
    """Trains one trial and appends its record to ``records``. An override ``env:NAME=VALUE``
    sets an environment variable of the training process instead (oneDNN's cache sizes, an
    allocator)."""
    env = dict(os.environ)
    env.update(o.removeprefix("env:").split("=", 1) for o in overrides if o.startswith("env:"))
    settings = [o for o in overrides if not o.startswith("env:")]
    run_dir = RUNS / name
    if (REPO / run_dir).exists():
        sys.exit(f"{run_dir} exists: a trial writes a run folder of its own (remove it, or name the trial anew)")
    args = [*BASE, f"train.max_seconds={budget_s:g}", *settings, f"hydra.run.dir={run_dir}"]
    if cold:
        args.append(f"cache_dir={run_dir}_cache")
    command = [str(MT), "train", *args]
    (REPO / RUNS).mkdir(parents=True, exist_ok=True)
    print(f"[{name}] {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    with open(REPO / RUNS / f"{name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        watcher = concurrent.futures.ThreadPoolExecutor(1).submit(watch_memory, process.pid, start)
        _, status, usage = os.wait4(process.pid, 0)
        memory = watcher.result()
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    metrics = REPO / run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    trained = [r for r in rows if not r.get("averaged")]
    record = {
        "name": name, "budget_s": budget_s, "overrides": overrides, "cold": cold, "exit_code": code,
        "command": " ".join([*(o.removeprefix("env:") for o in overrides if o.startswith("env:")),
                             f"mt train {shlex.join(args)}"]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "mt": mt.__version__,
        "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rss_mib_every_2s": memory,
        "best_valid_bleu": max((r["valid_bleu"] for r in rows), default=None),
        "last_valid_bleu": trained[-1]["valid_bleu"] if trained else None,
        "averaged_valid_bleu": next((r["valid_bleu"] for r in rows if r.get("averaged")), None),
        "updates": trained[-1]["step"] if trained else 0,
        "epochs": trained[-1]["epoch"] if trained else 0,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in trained) if trained else None,
        "validations": [{k: r.get(k) for k in ("epoch", "step", "valid_bleu", "valid_loss", "lr", "elapsed", "wall",
                                               "averaged", "best")} for r in rows],
    }
    with records.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"[{name}] exit {code}, {wall:.0f} s, peak RSS {record['peak_rss_mib']:.0f} MiB, "
          f"best valid BLEU {record['best_valid_bleu']}", flush=True)
    return record


def read_records(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for p in paths if p.is_file() for line in p.read_text().splitlines() if line.strip()]


def run_queue(records: Path, queue: Path) -> None:
    """Each line of ``queue`` without a record, in order; the file is reread after each trial."""
    while True:
        done = {r["name"] for r in read_records([records])}
        todo = [shlex.split(line) for line in queue.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        todo = [t for t in todo if t[0] not in done]
        if not todo:
            return
        name, budget, *overrides = todo[0]
        cold = "--cold" in overrides
        run_trial(records, name, float(budget), [o for o in overrides if o != "--cold"], cold)


def table(records: list[dict]) -> str:
    """The trials as a Markdown table, in the order they ran."""
    lines = [("| trial | budget s | overrides | updates | tok/s | peak RSS MiB | best valid BLEU | last | averaged "
              "| last valid loss |"), "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in records:
        lines.append(f"| {r['name']} | {r['budget_s']:g} | {' '.join(r['overrides']) or '(the preset)'} | "
                     f"{r['updates']} | {r['tokens_per_s'] or 0:,.0f} | {r['peak_rss_mib']:,.0f} | "
                     f"{r['best_valid_bleu']} | {r['last_valid_bleu']} | {r['averaged_valid_bleu'] or ''} | "
                     f"{next((v['valid_loss'] for v in reversed(r['validations']) if not v.get('averaged')), '')} |")
    return "\n".join(lines)


def plot(out: Path, records: list[dict]) -> None:
    """Validation BLEU against the command's wall clock, one line per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in records:
        rows = [v for v in r["validations"] if not v.get("averaged")]
        # Trials recorded before metrics had a wall clock (or while it equalled the training clock)
        # are drawn by their training clock: a few seconds of start-up left out.
        own = all(v.get("wall") and v["wall"] > v["elapsed"] for v in rows)
        points = [((v["wall"] if own else v["elapsed"]) / 60, v["valid_bleu"]) for v in rows]
        ax.plot(*zip(*points), marker=".", label=r["name"] + ("" if own else " (training clock)"))
    ax.set_xlabel("wall clock since the command started (minutes)")
    ax.set_ylabel("validation BLEU (500 sentences, greedy)")
    cpus = sorted({f"{r['machine'].get('cpu', '?')}, {r['machine'].get('cores', '?')} cores" for r in records
                   if r.get("machine")})
    ax.set_title(f"Multi30k en-de, mt train under a wall-clock budget: {'; '.join(cpus)}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def search_grid(model: Path, beams: list[int], alphas: list[float], records: Path) -> dict:
    """Validation BLEU (all 1,014 sentences) of a trained model by beam size and length penalty:
    what ``test`` is then run with. Appends the grid to ``records``."""
    from mt.api import SearchConfig, corpus_scores, open_translator, read_test_set

    translator = open_translator(str(model))
    sources, references = read_test_set(f"{CORPUS}/val.en.gz", f"{CORPUS}/val.de.gz")
    grid = []
    for beam in beams:
        for alpha in (alphas if beam > 1 else [1.0]):
            start = time.perf_counter()
            hyps = [t.text for t in translator.translate(sources, SearchConfig(beam=beam, length_penalty=alpha,
                                                                               keep_attention=False))]
            scores = corpus_scores(hyps, references)
            grid.append({"beam": beam, "length_penalty": alpha, "valid_bleu": round(scores.bleu, 2),
                         "valid_chrf": round(scores.chrf, 2), "seconds": round(time.perf_counter() - start, 1)})
            print(f"beam {beam} alpha {alpha}: valid BLEU {scores.bleu:.2f}", flush=True)
    best = max(grid, key=lambda g: g["valid_bleu"])
    record = {"model": str(model), "machine": machine(), "mt": mt.__version__, "signature": scores.bleu_signature,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "grid": grid, "best": best}
    with records.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def capped_environment() -> dict[str, str]:
    """The variables that change which kernels run (an ISA cap plays an older CPU), as set when
    the record is written: the cache bounds are mt's own once it has decoded in bf16."""
    names = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MT_PRECISION", "ONEDNN_PRIMITIVE_CACHE_CAPACITY",
             "LRU_CACHE_CAPACITY")
    return {name: os.environ[name] for name in names if name in os.environ}


def test_scores(model: Path, beam: int, alpha: float, records: Path) -> dict:
    """Test 2016 BLEU (sacreBLEU, cased, 13a) and chrF of a final candidate, and the tokenized
    lower-cased BLEU that papers on Multi30k quote (sacreBLEU lower-cased, 13a: close to
    multi-bleu.perl on Moses-tokenized lower-cased text). Read once per final candidate."""
    import sacrebleu

    from mt.api import SearchConfig, corpus_scores, open_translator, read_test_set

    translator = open_translator(str(model))
    sources, references = read_test_set(f"{CORPUS}/test_2016_flickr.en.gz", f"{CORPUS}/test_2016_flickr.de.gz")
    hyps = [t.text for t in translator.translate(sources, SearchConfig(beam=beam, length_penalty=alpha,
                                                                       keep_attention=False))]
    scores = corpus_scores(hyps, references)
    lower = sacrebleu.metrics.BLEU(lowercase=True)
    lowered = lower.corpus_score(hyps, [references])
    record = {"model": str(model), "beam": beam, "length_penalty": alpha, "test": "test_2016_flickr",
              "bleu": round(scores.bleu, 2), "chrf": round(scores.chrf, 2), "signature": scores.bleu_signature,
              "bleu_lowercased": round(lowered.score, 2), "signature_lowercased": str(lower.get_signature()),
              "machine": machine(), "mt": mt.__version__, "environment": capped_environment(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with records.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps({k: record[k] for k in ("model", "beam", "length_penalty", "bleu", "chrf", "bleu_lowercased")}))
    return record


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("run", "queue", "table", "plot", "tune", "test"):
        sys.exit(__doc__)
    verb, rest = argv[0], argv[1:]
    if verb == "run":
        cold = "--cold" in rest
        rest = [a for a in rest if a != "--cold"]
        run_trial(Path(rest[0]), rest[1], float(rest[2]), rest[3:], cold)
    elif verb == "queue":
        run_queue(Path(rest[0]), Path(rest[1]))
    elif verb == "tune":  # tune RECORDS MODEL [BEAMS [ALPHAS]], e.g. tune R.jsonl runs/ttq/x "1,4,5,8" "0.6,1,1.4"
        beams = [int(b) for b in (rest[2] if len(rest) > 2 else "1,4,5,8").split(",")]
        alphas = [float(a) for a in (rest[3] if len(rest) > 3 else "0.6,1,1.4").split(",")]
        search_grid(Path(rest[1]), beams, alphas, Path(rest[0]))
    elif verb == "test":  # test RECORDS MODEL BEAM ALPHA
        test_scores(Path(rest[1]), int(rest[2]), float(rest[3]), Path(rest[0]))
    elif verb == "table":
        print(table(read_records([Path(p) for p in rest])))
    else:
        files = [Path(p) for p in rest[1:] if p.endswith(".jsonl")]
        names = [p for p in rest[1:] if not p.endswith(".jsonl")]
        records = [r for r in read_records(files) if not names or r["name"] in names]
        plot(Path(rest[0]), records)


if __name__ == "__main__":
    main(sys.argv[1:])
