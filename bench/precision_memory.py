"""Where a training process's memory goes in fp32 and in bf16: the Transformer preset on Multi30k.

    .venv/bin/python bench/precision_memory.py --precision fp32 --json bench/results/DATE_bf16_memory_CPU.jsonl
    .venv/bin/python bench/precision_memory.py --precision bf16 --json bench/results/DATE_bf16_memory_CPU.jsonl
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 .venv/bin/python bench/precision_memory.py --precision bf16

Multi30k (``--multi30k``, by default ``../shared/data/multi30k``), joint 8k SentencePiece, shared
and tied embeddings, 4,096-token batches, 2 threads, and the trainer's own step (``sequence_loss``,
backward, clipping, Adam) for ``--steps`` updates in the order an epoch deals them. It prints,
and writes as one JSON line with the machine beside it (``--json FILE``, appended):

- peak resident memory (VmHWM) after loading the data, after the first update and at the end,
  and the resident memory (VmRSS) after every ``--every`` updates: a peak that keeps rising
  with new batch shapes is a cache, one reached at the first update is the step itself;
- the bytes autograd keeps for backward in one forward pass of a fixed batch, by dtype (what
  autocast adds: bf16 copies of fp32 activations that are saved too);
- the time per update: median, mean, and median of the last third (where shapes repeat, a
  smaller kernel cache shows as more time).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

from mt.api import build_model, collate, compose, machine, prepare_data, resolve_precision, sequence_loss, token_batches

REPO = Path(__file__).resolve().parents[1]


def _status(field: str) -> int:
    """A /proc/self/status field in MiB."""
    return int(Path("/proc/self/status").read_text().split(f"{field}:")[1].split()[0]) // 1024


def saved_for_backward(model, batch, precision) -> dict[str, int]:
    """MiB of tensors autograd saves in one forward pass, by dtype (views of one storage once)."""
    sizes: Counter = Counter()
    seen: set[int] = set()

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            sizes[str(t.dtype).removeprefix("torch.")] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = sequence_loss(model, batch, 0.1, precision)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return {k: round(v / 2**20, 1) for k, v in sorted(sizes.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=10, help="resident memory after every N updates")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--multi30k", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--json", help="append the figures here as one JSON line")
    parser.add_argument("--label", default="", help="a name for this setting in the JSON line")
    parser.add_argument("--primitive-cache", type=int, metavar="N",
                        help="set ONEDNN_PRIMITIVE_CACHE_CAPACITY=N from inside the process, after torch is imported")
    ns = parser.parse_args()
    if ns.primitive_cache is not None:
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(ns.primitive_cache)
    logging.disable(logging.INFO)
    torch.set_num_threads(ns.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 where it is emulated: asked for
        precision = resolve_precision(ns.precision, "cpu")
    cfg = compose(["data=multi30k", f"data.dir={ns.multi30k}", "data.tokenizer.joint=true",
                   "data.tokenizer.src_vocab_size=8000", "model=transformer", "model.share_embeddings=true",
                   f"cache_dir={REPO / '.bench' / 'cache'}"])
    data = prepare_data(cfg)
    after_data = _status("VmHWM")
    torch.manual_seed(0)
    model = build_model(cfg.model, len(data.src_tokenizer), len(data.tgt_tokenizer)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    src, tgt = data.train.src, data.train.tgt
    batches: list[list[int]] = []
    for epoch in range(1, 1 + -(-ns.steps // 100)):  # epochs in the trainer's order, as many as the steps need
        batches += token_batches(src.lengths, tgt.lengths, ns.max_tokens, seed=1000 + epoch)
    rss, seconds = [], []
    after_first = 0
    for step, idx in enumerate(batches[: ns.steps], 1):
        batch = collate([src[j] for j in idx], [tgt[j] for j in idx])
        start = time.perf_counter()
        loss = sequence_loss(model, batch, 0.1, precision)
        optimizer.zero_grad(set_to_none=True)
        (loss / batch.n_tgt_tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        if step == 1:
            after_first = _status("VmHWM")
        if step % ns.every == 0:
            rss.append((step, _status("VmRSS")))
    peak = _status("VmHWM")
    fixed = collate([src[j] for j in batches[0]], [tgt[j] for j in batches[0]])
    saved = saved_for_backward(model, fixed, precision)
    result = {"label": ns.label or ns.precision, "precision": precision.name, "native": precision.native,
              "steps": ns.steps, "peak_mib": peak, "peak_after_data_mib": after_data,
              "peak_after_first_update_mib": after_first, "rss_mib_by_step": rss,
              "saved_for_backward_mib": saved, "median_update_s": round(sorted(seconds)[len(seconds) // 2], 3),
              "median_last_third_update_s": round(sorted(seconds[-(len(seconds) // 3):])[len(seconds) // 6], 3),
              "mean_update_s": round(sum(seconds) / len(seconds), 3),
              "env": {k: v for k, v in os.environ.items() if k.startswith(("ONEDNN", "DNNL", "LRU_CACHE", "MALLOC", "LD_PRELOAD"))},
              "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    if ns.json:
        with open(ns.json, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
