"""mt and JoeyNMT 2.3.0 side by side: training speed and peak memory on Multi30k en-de.

    .venv/bin/python scripts/bench_vs_joeynmt.py --seconds 150 --rounds 2 --json docs/bench/FILE.json

Installs JoeyNMT 2.3.0 into its own virtual environment (``.bench/joeynmt-venv``: torch
2.13.0 first, then joeynmt with sentencepiece 0.2.0 and importlib_metadata), writes the
Multi30k English-German text and ONE joint 8k unigram SentencePiece model that both
systems use, and trains the same models in both, alternating run by run (mt, JoeyNMT,
mt, JoeyNMT, ...) so that a drift of the machine hits both alike:

- transformer: 3+3 pre-norm layers, d_model 256, 4 heads, ff 1024, tied (shared source,
  target and output) embeddings, dropout 0.1;
- rnn: bidirectional GRU encoder 256 per direction, GRU decoder 256, Bahdanau attention,
  embeddings 128 (JoeyNMT's recurrent model with ``attention: bahdanau``).

Both take 4,096-token batches counted the same way (rows x longest side, padding
included), the same number of threads and the same allocator (``--jemalloc`` preloads
Debian's libjemalloc2 for both). Each run trains for ``--seconds``; the script reads each
system's own periodic target-tokens/s lines (JoeyNMT's "Tokens per Sec", mt's progress
lines, both over the interval since the previous line), drops the first ``--warmup-lines``
of each run and reports the median of the rest, and the peak resident memory (VmHWM)
of the training process. Prints a table and writes everything with the machine's CPU,
its flags, the versions and the date.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / ".bench"
JOEY_VENV = BENCH / "joeynmt-venv"
JOEY_PACKAGES = ["joeynmt==2.3.0", "sentencepiece==0.2.0", "importlib_metadata"]
TORCH = "torch==2.13.0"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}

MT_MODELS = {
    "transformer": ["model=transformer", "model.share_embeddings=true", "model.tie_output=true"],
    "rnn": ["model=rnn_bahdanau"],
}


def sh(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def setup_joeynmt() -> Path:
    python = JOEY_VENV / "bin" / "python"
    stamp = JOEY_VENV / ".installed"
    if stamp.is_file():
        return python
    sh([sys.executable, "-m", "venv", str(JOEY_VENV)])
    sh([str(python), "-m", "pip", "install", "-q", TORCH])
    sh([str(python), "-m", "pip", "install", "-q", *JOEY_PACKAGES])
    stamp.write_text("ok\n")
    return python


def prepare_data(multi30k: Path) -> tuple[Path, Path, Path]:
    """Plain text of each split, a joint 8k unigram SentencePiece model and JoeyNMT's vocabulary file."""
    data = BENCH / "multi30k-ende"
    data.mkdir(parents=True, exist_ok=True)
    for name, prefix in SPLITS.items():
        for lang in ("en", "de"):
            target = data / f"{name}.{lang}"
            if not target.is_file():
                with gzip.open(multi30k / f"{prefix}.{lang}.gz", "rt", encoding="utf-8") as handle:
                    target.write_text(handle.read(), encoding="utf-8")
    spm_model = data / "spm_joint8k.model"
    if not spm_model.is_file():
        import sentencepiece as spm

        # The same settings as mt's tokenizer (mt/data/tokenizer.py): pad 0, unk 1, bos 2, eos 3.
        spm.SentencePieceTrainer.train(
            input=[str(data / "train.en"), str(data / "train.de")], model_prefix=str(data / "spm_joint8k"),
            vocab_size=8000, model_type="unigram", character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2,
            eos_id=3, input_sentence_size=1_000_000, shuffle_input_sentence=True, num_threads=2, minloglevel=2)
    vocab = data / "joint_vocab.txt"
    if not vocab.is_file():
        import sentencepiece as spm

        proc = spm.SentencePieceProcessor(model_file=str(spm_model))
        pieces = [proc.id_to_piece(i) for i in range(proc.get_piece_size()) if not proc.is_control(i)
                  and not proc.is_unknown(i)]
        vocab.write_text("".join(p + "\n" for p in pieces), encoding="utf-8")
    return data, spm_model, vocab


def joeynmt_config(model: str, data: Path, spm_model: Path, vocab: Path, out: Path) -> Path:
    side = lambda lang: {  # noqa: E731
        "lang": lang, "level": "bpe", "lowercase": False, "max_length": 128, "voc_file": str(vocab),
        "tokenizer_type": "sentencepiece", "tokenizer_cfg": {"model_file": str(spm_model)}}
    if model == "transformer":
        layer = {"type": "transformer", "num_layers": 3, "num_heads": 4, "hidden_size": 256, "ff_size": 1024,
                 "dropout": 0.1, "layer_norm": "pre", "embeddings": {"embedding_dim": 256, "scale": True}}
        encoder, decoder = dict(layer), dict(layer)
        tied = {"tied_embeddings": True, "tied_softmax": True}
    else:
        encoder = {"type": "recurrent", "rnn_type": "gru", "hidden_size": 256, "bidirectional": True,
                   "num_layers": 1, "dropout": 0.1, "embeddings": {"embedding_dim": 128}}
        decoder = {"type": "recurrent", "rnn_type": "gru", "hidden_size": 256, "num_layers": 1, "dropout": 0.1,
                   "attention": "bahdanau", "input_feeding": False, "init_hidden": "bridge",
                   "embeddings": {"embedding_dim": 128}}
        tied = {}
    cfg = {
        "name": f"bench_{model}",
        "joeynmt_version": "2.3.0",
        "data": {"train": str(data / "train"), "dev": str(data / "dev"), "test": str(data / "test"),
                 "dataset_type": "plain", "src": side("en"), "trg": side("de")},
        "training": {
            "model_dir": str(out), "overwrite": True, "optimizer": "adam", "learning_rate": 0.0005,
            "scheduling": "warmupinversesquareroot", "learning_rate_warmup": 1000,  # its plateau fails on torch 2.13
            "batch_size": 4096, "batch_type": "token", "epochs": 100, "logging_freq": 2,
            "validation_freq": 10 ** 9, "use_cuda": False, "fp16": False, "random_seed": 1, "shuffle": True,
            "label_smoothing": 0.1 if model == "transformer" else 0.0, "num_workers": 0, "print_valid_sents": [],
            "eval_metrics": ["bleu"], "keep_best_ckpts": 1,
        },
        "testing": {"beam_size": 5, "alpha": 1.0, "batch_size": 4096, "batch_type": "token", "max_output_length": 100,
                    "eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a"}},
        "model": {"initializer": "xavier_uniform", "encoder": encoder, "decoder": decoder, **tied},
    }
    import yaml  # in mt's environment through hydra/omegaconf

    path = out.parent / f"joeynmt_{model}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_timed(cmd: list[str], env: dict, seconds: float, log: Path, cwd: Path) -> tuple[str, float]:
    """Runs ``cmd`` for at most ``seconds`` after it starts training (or to its end);
    returns its output and its peak resident memory in MiB (VmHWM, polled)."""
    peak_kib = 0
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
        start = time.time()
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak_kib = max(peak_kib, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
            except (OSError, AttributeError):
                pass
            if time.time() - start > seconds:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            time.sleep(0.5)
        proc.wait()
    return log.read_text(errors="replace"), peak_kib / 1024


JOEY_RATE = re.compile(r"Tokens per Sec:\s+([\d.]+)")
MT_RATE = re.compile(r"\bepoch \d+\s+batch \d+/\d+.*?([\d.]+) tok/s")
MT_PARAMS = re.compile(r"model \S+: ([\d,]+) parameters")
JOEY_PARAMS = re.compile(r"Total params: ([\d,]+)")


def median_after_warmup(rates: list[float], warmup: int) -> float | None:
    kept = rates[warmup:] or rates[-1:]
    return statistics.median(kept) if kept else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--multi30k", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--models", nargs="+", default=["transformer", "rnn"], choices=list(MT_MODELS))
    parser.add_argument("--seconds", type=float, default=150, help="training seconds of each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each system and model, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup-lines", type=int, default=2, help="throughput lines dropped at each run's start")
    parser.add_argument("--jemalloc", action="store_true", help="preload libjemalloc for both systems")
    parser.add_argument("--json", help="write the results here")
    ns = parser.parse_args()
    joey_python = setup_joeynmt()
    data, spm_model, vocab = prepare_data(Path(ns.multi30k))
    env = dict(os.environ, OMP_NUM_THREADS=str(ns.threads), MKL_NUM_THREADS=str(ns.threads),
               PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="1")
    if ns.jemalloc:
        if not Path(JEMALLOC).is_file():
            sys.exit(f"{JEMALLOC} not found: apt-get install libjemalloc2")
        env["LD_PRELOAD"] = JEMALLOC
    runs_dir = BENCH / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for model in ns.models:
        results[model] = {"mt": [], "joeynmt": []}
        for round_no in range(ns.rounds):
            for system in ("mt", "joeynmt"):
                out = runs_dir / f"{system}_{model}_{round_no}"
                shutil.rmtree(out, ignore_errors=True)
                if system == "mt":
                    cmd = [str(REPO / ".venv" / "bin" / "mt"), "train", "data=multi30k", f"data.dir={ns.multi30k}",
                           "data.tokenizer.joint=true", "data.tokenizer.src_vocab_size=8000", *MT_MODELS[model],
                           "train.max_tokens=4096", f"train.threads={ns.threads}", f"train.max_seconds={ns.seconds}",
                           "train.log_seconds=10", "train.valid_max_sentences=20", f"hydra.run.dir={out}",
                           f"cache_dir={BENCH / 'cache'}"]
                    budget, pattern, params = ns.seconds + 240, MT_RATE, MT_PARAMS
                else:
                    out.mkdir(parents=True)
                    cfg = joeynmt_config(model, data, spm_model, vocab, out / "model")
                    cmd = [str(joey_python), "-m", "joeynmt", "train", str(cfg)]
                    budget, pattern, params = ns.seconds + 60, JOEY_RATE, JOEY_PARAMS
                print(f"== {model} round {round_no + 1}/{ns.rounds}: {system}", flush=True)
                text, peak = run_timed(cmd, env, budget, out.with_suffix(".log"), REPO)
                if system == "joeynmt":
                    # JoeyNMT logs from its first update; keep the lines of the first ns.seconds only.
                    text = text[: _cut_after_seconds(text, ns.seconds)]
                rates = [float(x) for x in pattern.findall(text)]
                found = params.search(text)
                run = {"median_tok_s": median_after_warmup(rates, ns.warmup_lines), "lines": len(rates),
                       "peak_rss_mib": round(peak), "parameters": found.group(1) if found else None,
                       "rates": [round(r) for r in rates]}
                print(f"   {system}: median {run['median_tok_s']} tok/s over {len(rates)} lines, "
                      f"peak RSS {run['peak_rss_mib']} MiB, parameters {run['parameters']}", flush=True)
                results[model][system].append(run)
    print("\nmodel        system    target tok/s (median of runs)   peak RSS MiB   parameters")
    summary = {}
    for model, systems in results.items():
        row = {}
        for system, runs in systems.items():
            speeds = [r["median_tok_s"] for r in runs if r["median_tok_s"]]
            row[system] = {"tok_s": round(statistics.median(speeds)) if speeds else None,
                           "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                           "parameters": runs[0]["parameters"]}
            print(f"{model:<12} {system:<9} {row[system]['tok_s']!s:>28}   {row[system]['peak_rss_mib']:>12}   "
                  f"{row[system]['parameters']}")
        if row["mt"]["tok_s"] and row["joeynmt"]["tok_s"]:
            row["ratio"] = round(row["mt"]["tok_s"] / row["joeynmt"]["tok_s"], 2)
            print(f"{model:<12} mt / JoeyNMT: {row['ratio']}x")
        summary[model] = row
    if ns.json:
        Path(ns.json).write_text(json.dumps({
            "summary": summary, "runs": results, "seconds": ns.seconds, "rounds": ns.rounds, "threads": ns.threads,
            "allocator": "jemalloc" if ns.jemalloc else "glibc", "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "versions": versions(joey_python)}, indent=2))


def _cut_after_seconds(text: str, seconds: float) -> int:
    """Offset in JoeyNMT's log after its first ``seconds`` of training (from its timestamps)."""
    stamps = [(m.start(), time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")))
              for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text, re.MULTILINE)]
    first = next((t for pos, t in stamps if "Tokens per Sec" in text[pos:pos + 300]), None)
    if first is None:
        return len(text)
    return next((pos for pos, t in stamps if t - first > seconds), len(text))


def machine() -> dict:
    info = {"cores": os.cpu_count(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1)
        flags = set(re.search(r"flags\s*:\s*(.*)", cpuinfo).group(1).split())
        info["flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except (OSError, AttributeError):
        pass
    import torch

    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def versions(joey_python: Path) -> dict:
    import torch

    script = "import importlib.metadata as m; print(m.version('joeynmt'), m.version('torch'))"
    joey = subprocess.run([str(joey_python), "-c", script], capture_output=True, text=True, check=False)
    return {"mt_torch": torch.__version__, "joeynmt_and_torch": joey.stdout.strip()}


if __name__ == "__main__":
    main()
