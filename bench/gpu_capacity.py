"""How large a Transformer and batch fit on one GPU, and how fast each trains.

For a ladder of mt Transformer shapes (from the 7.6M Multi30k model up), doubles the
tokens per batch from 4,096 until the GPU runs out of memory, timing full training steps
(forward, backward, Adam) on random 32-token sentences (no data set) under the precision
``auto`` resolves on that GPU. Prints one row per (shape, batch) and writes them as JSON.

    python bench/gpu_capacity.py --json bench/results/DATE_gpu_GPU_capacity.json [--max-tokens 1048576]

A benchmark, not a test: it needs a CUDA GPU (``bench/gpu.sh`` runs it with the others).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mt.api import build_model, compose, resolve_precision

# name: (d_model, heads, ff, encoder layers, decoder layers)
SHAPES = {
    "multi30k (3+3, d256)": (256, 4, 1024, 3, 3),
    "base (6+6, d512)": (512, 8, 2048, 6, 6),
    "big (6+6, d1024)": (1024, 16, 4096, 6, 6),
    "deep big (12+12, d1024)": (1024, 16, 4096, 12, 12),
    "xl (12+12, d2048)": (2048, 32, 8192, 12, 12),
    "xxl (24+24, d2048)": (2048, 32, 8192, 24, 24),
}
VOCAB = 8000
LENGTH = 32


def build(shape: tuple[int, int, int, int, int]) -> torch.nn.Module:
    """The Transformer preset at this shape: sinusoidal positions, shared and tied embeddings."""
    d, heads, ff, enc, dec = shape
    cfg = compose(["model=transformer", f"model.hidden_dim={d}", f"model.heads={heads}", f"model.ff_dim={ff}",
                   f"model.enc_layers={enc}", f"model.dec_layers={dec}", "model.dropout=0.1",
                   "model.max_positions=1024", "model.positions=sinusoidal", "model.tie_output=true",
                   "model.share_embeddings=true", "data.tokenizer.joint=true"])
    return build_model(cfg.model, VOCAB, VOCAB)


def time_steps(model: torch.nn.Module, tokens: int, precision, device: torch.device, steps: int = 3) -> dict:
    batch = max(1, tokens // LENGTH)
    gen = torch.Generator(device="cpu").manual_seed(0)
    src = torch.randint(4, VOCAB, (batch, LENGTH), generator=gen).to(device)  # ids 0-3: pad, unk, bos, eos
    tgt = torch.randint(4, VOCAB, (batch, LENGTH + 1), generator=gen).to(device)
    mask = torch.ones_like(src, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda") if precision.needs_grad_scaler else None
    times = []
    torch.cuda.reset_peak_memory_stats(device)
    for step in range(steps + 1):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        with precision.autocast():
            logits, _ = model(src, mask, tgt[:, :-1], return_attention=False)
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), tgt[:, 1:].reshape(-1))  # no padding to ignore
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        torch.cuda.synchronize(device)
        if step >= 1:  # the first step warms up kernels and the allocator
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"tokens": batch * LENGTH, "sentences": batch, "step_ms": round(seconds * 1000, 2),
            "tgt_tokens_per_s": round(batch * LENGTH / seconds),
            "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--max-tokens", type=int, default=1 << 20, help="stop doubling the batch here")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    ns = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_capacity.py needs a CUDA GPU")
    device = torch.device("cuda")
    precision = resolve_precision(ns.precision, device)
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, precision {precision.name}", flush=True)
    rows: list[dict] = []
    report = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
              "precision": precision.name, "sentence_length": LENGTH, "date": time.strftime("%Y-%m-%d"), "rows": rows}

    def save() -> None:  # after every row, so a run stopped by a time limit keeps what it measured
        if ns.json:
            Path(ns.json).write_text(json.dumps(report, indent=2))

    for name, shape in SHAPES.items():
        try:
            model = build(shape).to(device)
        except torch.OutOfMemoryError:
            rows.append({"shape": name, "fits": False, "reason": "weights"})
            print(f"{name}: the weights alone do not fit", flush=True)
            break
        params = sum(p.numel() for p in model.parameters())
        tokens, fitted = 4096, False
        while tokens <= ns.max_tokens:
            try:
                row = time_steps(model, tokens, precision, device)
            except torch.OutOfMemoryError:
                print(f"{name}: {tokens} tokens per batch do not fit", flush=True)
                rows.append({"shape": name, "parameters": params, "tokens": tokens, "fits": False})
                save()
                break
            fitted = True
            rows.append({"shape": name, "parameters": params, "fits": True, **row})
            save()
            print(f"{name:26s} {params / 1e6:8.1f}M  {row['tokens']:8d} tok/batch  {row['step_ms']:9.1f} ms/step  "
                  f"{row['tgt_tokens_per_s']:10d} tgt tok/s  peak {row['peak_gib']:6.2f} GiB", flush=True)
            tokens *= 2
        del model
        torch.cuda.empty_cache()
        if not fitted:
            break
    save()


if __name__ == "__main__":
    main()
