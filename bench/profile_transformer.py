"""Training-step speed, peak memory and an operator profile of the Transformer on Multi30k.

    .venv/bin/python bench/profile_transformer.py eager            # tokens/s and peak RSS
    .venv/bin/python bench/profile_transformer.py eager --steps 12 --json bench/results/DATE_step_CPU.jsonl
    .venv/bin/python bench/profile_transformer.py profile          # plus torch.profiler's table
    .venv/bin/python bench/profile_transformer.py compile          # through torch.compile(dynamic=True)
    .venv/bin/python bench/profile_transformer.py compile-static --precision bf16  # dynamic=False, one batch
                                                                     # repeated: the compiled step at its best
    .venv/bin/python bench/profile_transformer.py compile-buckets --precision bf16 --bucket 8 --epochs 3
        # an epoch of batches with lengths rounded up to multiples of 8 and rows to what the
        # budget allows (a handful of shapes, each compiled once, dynamic=False), then epochs
        # alternating compiled (bucketed) and eager (as mt train batches): real target tokens/s
    .venv/bin/python bench/profile_transformer.py eager --precision bf16 --working-copy  # a bf16 copy
    .venv/bin/python bench/profile_transformer.py eager --unfused  # output layer and loss apart
    .venv/bin/python bench/profile_transformer.py eager --checkpointing  # train.activation_checkpointing
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 .venv/bin/python bench/profile_transformer.py eager

The same shape as studies/vs_joeynmt/bench_vs_joeynmt.py (3+3 layers, d 256, 4 heads, ff 1024,
shared and tied embeddings, joint 8k unigram SentencePiece, 4,096-token batches, 2
threads), on Multi30k en-de (``--multi30k``, by default ``../shared/data/multi30k``): 3
untimed updates, then ``--steps`` timed ones. Peak memory is the process's VmHWM, printed
after loading the data, after the warm-up and at the end. ``--json FILE`` appends a line
with the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

from mt.api import build_model, collate, compose, machine, prepare_data, resolve_precision, sequence_loss, token_batches

REPO = Path(__file__).resolve().parents[1]


def peak_mib() -> int:
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["eager", "profile", "compile", "compile-static", "compile-buckets"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unfused", action="store_true", help="the output layer and the loss apart (full "
                        "logits), as before mt.training.fused_loss: for the before/after comparison")
    parser.add_argument("--checkpointing", action="store_true", help="train.activation_checkpointing=true")
    parser.add_argument("--mmap-threshold", type=float, default=0, metavar="MIB",
                        help="fix glibc's mmap threshold at MIB, as train.mmap_threshold_mb does (through glibc's "
                        "MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_: the script starts itself again with "
                        "them; 0: glibc's default)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="bf16: the step under bf16 autocast, as train.precision=bf16 runs it")
    parser.add_argument("--optimizer", default="plain", choices=["plain", "foreach", "fused"],
                        help="Adam's implementation (plain: torch's default on CPU, a loop over parameters)")
    parser.add_argument("--working-copy", action="store_true", help="with --precision bf16: train a bf16 copy of "
                        "the model without autocast, its gradients applied to fp32 master weights that are copied "
                        "back after each update (instead of autocast casting weights and activations)")
    parser.add_argument("--bucket", type=int, default=8, help="compile-buckets: lengths rounded up to multiples of "
                        "this")
    parser.add_argument("--epochs", type=int, default=3, help="compile-buckets: timed epochs of each kind")
    parser.add_argument("--json", help="append the result here as one JSON line")
    parser.add_argument("--multi30k", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    ns = parser.parse_args()
    logging.disable(logging.INFO)
    if ns.mmap_threshold:
        fix_mmap_threshold(int(ns.mmap_threshold * 2**20))
    torch.set_num_threads(ns.threads)
    cfg = compose(["data=multi30k", f"data.dir={ns.multi30k}", "data.tokenizer.joint=true",
                   "data.tokenizer.src_vocab_size=8000", "model=transformer", "model.share_embeddings=true",
                   f"cache_dir={REPO / '.bench' / 'cache'}"])
    data = prepare_data(cfg)
    print(f"after loading the data: peak {peak_mib()} MiB")
    torch.manual_seed(0)
    model = build_model(cfg.model, len(data.src_tokenizer), len(data.tgt_tokenizer)).train()
    if ns.unfused:  # sequence_loss falls back to logits + F.cross_entropy without an output_layer
        type(model).output_layer = property(lambda self: None)
    model.set_activation_checkpointing(ns.checkpointing)
    forward = torch.compile(model, dynamic=ns.mode == "compile") if ns.mode.startswith("compile") else model
    if ns.mode == "compile-buckets":
        import torch._dynamo as dynamo

        dynamo.config.cache_size_limit = 256  # one graph per bucket shape
    impl = {"plain": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[ns.optimizer]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, **impl)
    precision = resolve_precision(ns.precision, torch.device("cpu"))
    pairs = []
    if ns.working_copy:  # forward and backward in a bf16 copy, no autocast; Adam on the fp32 master
        import copy

        forward = copy.deepcopy(model).to(torch.bfloat16)
        pairs = list(zip(model.parameters(), forward.parameters()))
        precision = resolve_precision("fp32", torch.device("cpu"))
    batches = token_batches(data.train.src.lengths, data.train.tgt.lengths, 4096, seed=0)

    def step(idx: list[int], padded_to: tuple[int, int, int] | None = None, net=None) -> int:
        batch = collate([data.train.src[j] for j in idx], [data.train.tgt[j] for j in idx])
        if padded_to is not None:
            batch = pad_batch(batch, *padded_to, data.src_tokenizer.sp.pad_id(), data.src_tokenizer.sp.eos_id())
        loss = sequence_loss(forward if net is None else net, batch, 0.1, precision)
        optimizer.zero_grad(set_to_none=True)
        (loss / batch.n_tgt_tokens).backward()
        for master, work in pairs:
            master.grad, work.grad = work.grad.float(), None
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for master, work in pairs:
                work.copy_(master)
        return batch.n_tgt_tokens

    if ns.mode == "compile-buckets":
        bucketed(ns, data, model, forward, step, batches, precision)
        return

    if ns.mode == "compile-static":  # one batch's shape: every step after the first reuses its graph
        one = batches[5]
        start = time.perf_counter()
        step(one)
        compile_s = time.perf_counter() - start
        step(one)
        start = time.perf_counter()
        tokens = sum(step(one) for _ in range(ns.steps))
        compiled = tokens / (time.perf_counter() - start)
        forward = model
        step(one)
        start = time.perf_counter()
        tokens = sum(step(one) for _ in range(ns.steps))
        eager = tokens / (time.perf_counter() - start)
        print(f"compile-static {ns.precision}: first step (compiling) {compile_s:.0f} s; the same batch "
              f"{compiled:.0f} target tokens/s compiled, {eager:.0f} eager")
        return

    start = time.perf_counter()
    for idx in batches[:3]:
        step(idx)
    print(f"warm-up (3 updates): {time.perf_counter() - start:.1f} s, peak {peak_mib()} MiB")
    start = time.perf_counter()
    tokens = sum(step(idx) for idx in batches[3:3 + ns.steps])
    rate = tokens / (time.perf_counter() - start)
    label = "bf16 working copy" if ns.working_copy else precision.name
    print(f"{ns.mode} {label}, Adam {ns.optimizer}: {rate:.0f} target tokens/s over {ns.steps} updates, "
          f"peak {peak_mib()} MiB")
    if ns.json:
        with open(ns.json, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"mode": ns.mode, "precision": label, "optimizer": ns.optimizer,
                                     "steps": ns.steps, "tokens_per_s": round(rate), "peak_mib": peak_mib(),
                                     "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}) + "\n")
    if ns.mode == "profile":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for idx in batches[3 + ns.steps: 7 + ns.steps]:
                step(idx)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def fix_mmap_threshold(threshold: int) -> None:
    """glibc's mmap threshold fixed at ``threshold`` bytes and its trim threshold at twice that,
    what ``train.mmap_threshold_mb`` sets with mallopt; glibc reads the two variables when the
    process starts, so the script starts itself again with them (once: they are then set)."""
    wanted = {"MALLOC_MMAP_THRESHOLD_": str(threshold), "MALLOC_TRIM_THRESHOLD_": str(2 * threshold)}
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        print(f"glibc malloc maps blocks of {threshold / 2**20:g} MiB and more (freed at once)", flush=True)
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})


def round_up(n, k):
    return -(-n // k) * k


def pad_batch(batch, rows: int, src_len: int, tgt_len: int, pad: int, eos: int):
    """The batch grown to a fixed shape: columns of ``pad``, and rows whose source is one ``eos``
    (a row with no source would be an all-masked softmax: NaN) and whose target is all ``pad``
    (no loss). ``pad`` and ``eos``: the tokenizer's ids."""
    def grow(x, r, c, fill):
        out = torch.full((r, c), fill, dtype=x.dtype)
        out[:x.size(0), :x.size(1)] = x
        return out

    src = grow(batch.src, rows, src_len, pad)
    src[batch.src.size(0):, 0] = eos
    return dataclasses.replace(batch, src=src, src_mask=src != pad, tgt_in=grow(batch.tgt_in, rows, tgt_len, pad),
                               tgt_out=grow(batch.tgt_out, rows, tgt_len, pad))


def bucketed(ns, data, model, compiled, step, eager_batches, precision) -> None:
    """Batches cut on lengths rounded up to ``--bucket`` (so a batch's rows fit the budget at its
    rounded shape), each padded to (budget // longest rounded side, rounded source, rounded target):
    one compiled graph per shape. An untimed first epoch compiles them; then epochs alternate
    compiled and eager (the eager ones cut as mt train cuts them), timed, real target tokens."""
    import statistics

    k = ns.bucket
    src_r = [round_up(int(n), k) for n in data.train.src.lengths]
    tgt_r = [round_up(int(n) + 1, k) - 1 for n in data.train.tgt.lengths]  # +1: BOS/EOS
    buckets = token_batches(src_r, tgt_r, 4096, seed=0)
    shapes = []
    for idx in buckets:
        s, t = max(src_r[j] for j in idx), max(tgt_r[j] for j in idx) + 1
        shapes.append((4096 // max(s, t), s, t))
    real = sum(int(data.train.tgt.lengths[j]) + 1 for idx in buckets for j in idx)
    padded = sum(r * t for r, _, t in shapes)
    print(f"{len(buckets)} batches ({len(eager_batches)} as mt train cuts them), {len(set(shapes))} shapes; "
          f"target cells real {real / padded:.0%} of padded", flush=True)
    start = time.perf_counter()
    seen = set()
    for idx, shape in zip(buckets, shapes):
        t0 = time.perf_counter()
        step(idx, shape, compiled)
        if shape not in seen:
            seen.add(shape)
            print(f"  shape {shape}: {time.perf_counter() - t0:.1f} s (first step)", flush=True)
    first = time.perf_counter() - start
    print(f"first epoch (compiling {len(seen)} shapes): {first:.0f} s", flush=True)
    rates = {"compiled": [], "eager": []}
    for _ in range(ns.epochs):
        for kind in ("eager", "compiled"):
            start = time.perf_counter()
            if kind == "compiled":
                tokens = sum(step(idx, shape, compiled) for idx, shape in zip(buckets, shapes))
            else:
                tokens = sum(step(idx, None, model) for idx in eager_batches)
            rates[kind].append(tokens / (time.perf_counter() - start))
            print(f"  {kind}: {rates[kind][-1]:.0f} target tokens/s", flush=True)
    result = {kind: round(statistics.median(r)) for kind, r in rates.items()}
    print(f"compile-buckets {precision.name}, bucket {k}: compiled {result['compiled']} vs eager {result['eager']} "
          f"target tokens/s (medians of {ns.epochs} epochs each); first epoch with compiling {first:.0f} s; "
          f"peak {peak_mib()} MiB", flush=True)
    if ns.json:
        with open(ns.json, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"mode": ns.mode, "precision": precision.name, "bucket": k,
                                     "shapes": len(seen), "real_share": round(real / padded, 3),
                                     "first_epoch_s": round(first), "rates": rates, "medians": result,
                                     "peak_mib": peak_mib(), "date": time.strftime("%Y-%m-%d %H:%M"),
                                     "machine": machine()}) + "\n")


if __name__ == "__main__":
    main()
