"""The training loop: read it top to bottom.

Each epoch: token-count batches in a seeded order, teacher-forced cross-entropy,
gradient clipping, Adam; then validation loss and BLEU/chrF of greedy output; the best
model by validation BLEU is written as a model directory. Metrics go to
``metrics.jsonl`` as they are measured. Batches are sharded by rank so the same loop
serves several processes; only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mt.config import TrainConfig
from mt.data.batching import Batch, EncodedCorpus, collate, token_batches
from mt.data.tokenizer import PAD
from mt.decoding.translator import Translator
from mt.errors import MTError
from mt.evaluation.metrics import corpus_scores
from mt.models import Seq2SeqModel

log = logging.getLogger("mt.train")


class TrainingDiverged(MTError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MTError(f"train.device={name} but no CUDA device is visible: use train.device=cpu")
    return torch.device(name)


def rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@dataclass
class EpochRecord:
    epoch: int
    step: int
    train_loss: float
    valid_loss: float
    valid_ppl: float
    valid_bleu: float
    valid_chrf: float
    tokens_per_s: float
    seconds: float
    best: bool


@dataclass
class TrainResult:
    best_dir: Path | None
    best_bleu: float
    history: list[EpochRecord] = field(default_factory=list)


def sequence_loss(model: Seq2SeqModel, batch: Batch, label_smoothing: float, bf16: bool) -> torch.Tensor:
    """Summed token cross-entropy of a batch (PAD excluded)."""
    with torch.autocast(batch.src.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits, _ = model(batch.src, batch.src_mask, batch.tgt_in, return_attention=False)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch.tgt_out.reshape(-1),
                           ignore_index=PAD, label_smoothing=label_smoothing, reduction="sum")


class Trainer:
    def __init__(self, model: Seq2SeqModel, cfg: TrainConfig, train_data: EncodedCorpus,
                 valid_data: EncodedCorpus, valid_src: list[str], valid_ref: list[str],
                 translator: Translator, save_best: Callable[[], Path], run_dir: Path,
                 progress: bool = True, name: str = "") -> None:
        self.model = model
        self.cfg = cfg
        self.train_data = train_data
        self.valid_data = valid_data
        self.valid_src = valid_src
        self.valid_ref = valid_ref
        self.translator = translator
        self.save_best = save_best
        self.run_dir = run_dir
        self.progress = progress
        self.name = name
        self.device = next(model.parameters()).device
        self.rank, self.world_size = rank_and_world_size()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        warmup = cfg.warmup_steps
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        self.step = 0

    def _batches(self, data: EncodedCorpus, seed: int | None) -> list[list[int]]:
        return token_batches([len(s) for s in data.src], [len(t) for t in data.tgt], self.cfg.max_tokens,
                             seed=seed, rank=self.rank, world_size=self.world_size)

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        """Mean training loss per token and target tokens per second."""
        self.model.train()
        batches = self._batches(self.train_data, seed=self.cfg.seed * 1000 + epoch)
        total_loss = total_tokens = 0.0
        start = time.perf_counter()
        desc = f"{self.name} epoch {epoch}".strip()
        bar = tqdm(batches, desc=desc, disable=not self.progress or self.rank != 0, leave=False, dynamic_ncols=True)
        for i, idx in enumerate(bar):
            batch = collate([self.train_data.src[j] for j in idx], [self.train_data.tgt[j] for j in idx]).to(self.device)
            loss = sequence_loss(self.model, batch, self.cfg.label_smoothing, self.cfg.bf16)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss became {loss.item()} at step {self.step + 1}; the best model so far is "
                    f"kept in {self.run_dir}; lower train.lr or set train.clip_norm")
            self.optimizer.zero_grad(set_to_none=True)
            (loss / batch.n_tgt_tokens).backward()
            if self.cfg.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
            self.optimizer.step()
            self.schedule.step()
            self.step += 1
            total_loss += loss.item()
            total_tokens += batch.n_tgt_tokens
            if i % self.cfg.log_every == 0:
                bar.set_postfix(loss=f"{total_loss / total_tokens:.3f}",
                                tok_s=f"{total_tokens / (time.perf_counter() - start):.0f}")
            if self.cfg.max_steps and self.step >= self.cfg.max_steps:
                break
        bar.close()
        return total_loss / max(total_tokens, 1), total_tokens / (time.perf_counter() - start)

    @torch.no_grad()
    def _valid_loss(self) -> float:
        self.model.eval()
        total_loss = total_tokens = 0.0
        for idx in token_batches([len(s) for s in self.valid_data.src], [len(t) for t in self.valid_data.tgt],
                                 self.cfg.max_tokens):
            batch = collate([self.valid_data.src[j] for j in idx], [self.valid_data.tgt[j] for j in idx]).to(self.device)
            total_loss += sequence_loss(self.model, batch, 0.0, self.cfg.bf16).item()
            total_tokens += batch.n_tgt_tokens
        return total_loss / max(total_tokens, 1)

    def _valid_scores(self) -> tuple[float, float]:
        n = self.cfg.valid_max_sentences or len(self.valid_src)
        hyps = [t.text for t in self.translator.translate(self.valid_src[:n], beam=self.cfg.valid_beam)]
        scores = corpus_scores(hyps, self.valid_ref[:n])
        return scores.bleu, scores.chrf

    def fit(self) -> TrainResult:
        result = TrainResult(best_dir=None, best_bleu=-1.0)
        metrics_path = self.run_dir / "metrics.jsonl"
        for epoch in range(1, self.cfg.epochs + 1):
            start = time.perf_counter()
            train_loss, tok_s = self._train_epoch(epoch)
            valid_loss = self._valid_loss()
            bleu, chrf = self._valid_scores()
            best = bleu > result.best_bleu
            if best and self.rank == 0:
                result.best_dir = self.save_best()
                result.best_bleu = bleu
            record = EpochRecord(epoch, self.step, round(train_loss, 4), round(valid_loss, 4),
                                 round(math.exp(min(valid_loss, 50)), 2), bleu, chrf, round(tok_s, 1),
                                 round(time.perf_counter() - start, 1), best)
            result.history.append(record)
            if self.rank == 0:
                with metrics_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record.__dict__) + "\n")
                log.info("%sepoch %d  step %d  train loss %.3f  valid loss %.3f  ppl %.2f  BLEU %.2f  chrF %.2f  "
                         "%.0f tok/s  %.0fs%s", f"[{self.name}] " if self.name else "", epoch, self.step,
                         train_loss, valid_loss, record.valid_ppl, bleu, chrf, tok_s, record.seconds,
                         "  (best, saved)" if best else "")
            if self.cfg.max_steps and self.step >= self.cfg.max_steps:
                break
        return result
