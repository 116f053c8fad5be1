"""Does a precision (or any change to the training step) learn as fp32 does? The per-update
training loss of the first ``--updates`` updates and the validation BLEU after them.

    R=bench/results/DATE_loss_curve
    .venv/bin/python bench/loss_curve.py --precision fp32 --seed 1 --json ${R}_fp32_seed1_CPU.json
    .venv/bin/python bench/loss_curve.py --precision bf16 --seed 1 --json ${R}_bf16_seed1_CPU.json
    .venv/bin/python bench/loss_curve.py --precision fp32 --seed 2 --json ${R}_fp32_seed2_CPU.json
    .venv/bin/python bench/loss_curve.py --compare ${R}_fp32_seed1_CPU.json ${R}_bf16_seed1_CPU.json \
        ${R}_fp32_seed2_CPU.json   # the second against the first, beside the third against the first

The setting is bench/profile_transformer.py's (the Transformer preset on Multi30k,
``--multi30k``, by default ``../shared/data/multi30k``; joint 8k
SentencePiece, shared and tied embeddings, 4,096-token batches, label smoothing 0.1), with
the preset's learning rate and warm-up and the trainer's own step (``sequence_loss``, the
preset's optimizer and schedule, clipping at 1). Runs are deterministic for a seed, so they can share a
busy machine. ``--compare`` reports the mean absolute difference of the per-update losses
(raw, and smoothed over 25 updates) of each run against the first, and each run's BLEU:
a change that learns alike differs from the reference by no more than another seed does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from mt.api import (
    Translator,
    build_model,
    build_optimizer,
    collate,
    compose,
    corpus_scores,
    learning_rate_factor,
    machine,
    prepare_data,
    resolve_precision,
    sequence_loss,
    token_batches,
)

REPO = Path(__file__).resolve().parents[1]


def train(ns: argparse.Namespace) -> dict:
    logging.disable(logging.INFO)
    torch.set_num_threads(ns.threads)
    # The preset's recipe of 2026-11 (constant rate after warm-up; issue 51 made it a linear decay over the
    # run, which this loop, with no run length, does not know): the recipe the recorded curves used.
    cfg = compose(["data=multi30k", f"data.dir={ns.multi30k}", "data.tokenizer.joint=true",
                   "data.tokenizer.src_vocab_size=8000", "model=transformer", "model.share_embeddings=true",
                   f"cache_dir={REPO / '.bench' / 'cache'}", "train.schedule=constant", "train.lr=0.001",
                   "train.warmup_steps=100", "train.decay_from=0", "train.betas=[0.9,0.999]", "model.dropout=0.1",
                   "model.attention_dropout=null"])
    data = prepare_data(cfg)
    torch.manual_seed(ns.seed)
    model = build_model(cfg.model, len(data.src_tokenizer), len(data.tgt_tokenizer)).train()
    optimizer = build_optimizer(model, cfg.train)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(s, cfg.train, 1.0))
    precision = resolve_precision(ns.precision, torch.device("cpu"))
    def batches():  # epoch after epoch, shuffled as the trainer shuffles them
        for epoch in range(1, 1000):
            yield from token_batches(data.train.src.lengths, data.train.tgt.lengths, 4096, seed=ns.seed * 1000 + epoch)

    losses, start = [], time.perf_counter()
    for idx in itertools.islice(batches(), ns.updates):
        batch = collate([data.train.src[j] for j in idx], [data.train.tgt[j] for j in idx])
        loss = sequence_loss(model, batch, cfg.train.label_smoothing, precision)
        optimizer.zero_grad(set_to_none=True)
        (loss / batch.n_tgt_tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(round(loss.item() / batch.n_tgt_tokens, 5))
    seconds = time.perf_counter() - start
    model.eval()
    translator = Translator(model, data.src_tokenizer, data.tgt_tokenizer, precision=precision)
    src, ref = data.valid_src[: ns.valid], data.valid_ref[: ns.valid]
    hyps = [t.text for t in translator.translate(src, beam=1)]
    peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) // 1024
    return {"precision": precision.name, "seed": ns.seed, "updates": len(losses), "losses": losses,
            "valid_bleu": corpus_scores(hyps, ref).bleu, "valid_sentences": len(src), "seconds": round(seconds),
            "peak_mib": peak, "threads": ns.threads, "date": time.strftime("%Y-%m-%d %H:%M"),
            "command": " ".join(["bench/loss_curve.py", *sys.argv[1:]]), "machine": machine()}


def smooth(values: list[float], window: int = 25) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def compare(paths: list[Path]) -> None:
    runs = [json.loads(p.read_text()) for p in paths]
    ref = runs[0]
    print(f"reference: {paths[0].name} ({ref['precision']}, seed {ref['seed']}): valid BLEU {ref['valid_bleu']}, "
          f"last-50 mean loss {statistics.fmean(ref['losses'][-50:]):.4f}")
    for path, run in zip(paths[1:], runs[1:]):
        n = min(len(run["losses"]), len(ref["losses"]))
        raw = statistics.fmean(abs(a - b) for a, b in zip(run["losses"][:n], ref["losses"][:n]))
        sm = statistics.fmean(abs(a - b) for a, b in zip(smooth(run["losses"][:n]), smooth(ref["losses"][:n])))
        print(f"{path.name} ({run['precision']}, seed {run['seed']}): mean |loss difference| {raw:.4f} raw, "
              f"{sm:.4f} smoothed over 25 updates, over {n} updates; valid BLEU {run['valid_bleu']}; "
              f"last-50 mean loss {statistics.fmean(run['losses'][-50:]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--valid", type=int, default=1014, help="validation sentences translated (greedy)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--multi30k", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compare", nargs="+", type=Path, help="the runs' JSON files, the reference first")
    ns = parser.parse_args()
    if ns.compare:
        compare(ns.compare)
        return
    result = train(ns)
    print(f"{result['precision']} seed {result['seed']}: {result['updates']} updates in {result['seconds']} s, "
          f"valid BLEU {result['valid_bleu']}, peak {result['peak_mib']} MiB")
    if ns.json:
        ns.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
