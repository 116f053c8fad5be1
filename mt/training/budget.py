"""Fitting training to a wall-clock budget: measure the speed, then plan epochs and a time box.

CPUs differ by an order of magnitude (an AVX2-only EPYC trains the demo's attention model
at a few thousand target tokens a second; a recent CPU with native bf16 many times
faster), so a fixed number of epochs cannot promise a duration. The demo measures its
speed in a few updates, then trains up to the full number of epochs inside a time box of
what the budget leaves: where the epochs fit, the result does not depend on the machine;
where they do not, training stops inside an epoch when the box is spent, and says so.

The estimate only sizes the box's margin for evaluation and what the demo predicts: the
epochs are never cut to the estimate, so a machine faster than measured trains on rather
than stopping early. It is measured in steady state: oneDNN creates its kernels per shape
(bf16 ones at length), so each timed batch has been run once untimed before, and the timed
batches span the corpus's lengths rather than its median alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from mt.data.batching import Batch, EncodedCorpus, collate, token_batches
from mt.models import Seq2SeqModel
from mt.precision import FP32, ResolvedPrecision
from mt.training.trainer import sequence_loss

# Work after training, in units of training tokens at the measured speed: the final
# validation of each model and beam-4 decoding of the test set. Measured with the demo
# on an AVX2-only EPYC (docs/lab/benchmarks.md): about 27 s, fixed overhead included, at
# 5,300 tokens/s; this reserves about 37 s there.
EVAL_TOKEN_EQUIVALENT = 130_000
FIXED_OVERHEAD_S = 12.0  # starting the worker processes, loading data, writing plots and tables
MIN_TRAIN_S = 20.0
# The epochs are said to fit only with this much room: each epoch's validation, and an estimate
# measured alone while the two models then train side by side (7% above the speed reached on a
# Zen 4, 2026-11-30).
FIT_MARGIN = 0.15


@dataclass(frozen=True)
class TrainingPlan:
    epochs: int              # train.epochs
    train_seconds: float     # train.max_seconds: the time box (a guard when the epochs fit)
    expected_epochs: float   # how far training gets at the measured speed
    tokens_per_s: float
    fits: bool               # the epochs fit in the time box: the result does not depend on the speed

    def describe(self, epoch_tokens: int) -> str:
        speed = f"{self.tokens_per_s:,.0f} target tokens/s per model"
        if self.fits:
            return (f"this machine trains at about {speed}: {self.epochs} epochs of {epoch_tokens:,} tokens "
                    f"fit the budget (about {self.epochs * epoch_tokens / self.tokens_per_s:.0f} s each model)")
        if self.expected_epochs >= self.epochs:  # they fit, but with too little room to promise it
            return (f"this machine trains at about {speed}: each model trains {self.epochs} epochs of "
                    f"{epoch_tokens:,} tokens (about {self.epochs * epoch_tokens / self.tokens_per_s:.0f} s) or "
                    f"{self.train_seconds:.0f} s, whichever ends first, to end within the budget")
        return (f"this machine trains at about {speed}: each model trains for {self.train_seconds:.0f} s "
                f"(about {self.expected_epochs:.1f} epochs of {epoch_tokens:,} tokens) to end within the budget; "
                f"a faster machine trains more and scores higher (mt demo --budget SECONDS for more)")


def plan_training(budget_s: float, elapsed_s: float, tokens_per_s: float, epoch_tokens: int,
                  max_epochs: int) -> TrainingPlan:
    """Epochs and time box so that everything, evaluation included, ends within ``budget_s``
    (counted from the start of the demo; ``elapsed_s`` are already spent)."""
    eval_s = EVAL_TOKEN_EQUIVALENT / tokens_per_s
    available = max(budget_s - elapsed_s - eval_s - FIXED_OVERHEAD_S, MIN_TRAIN_S)
    epoch_s = epoch_tokens / tokens_per_s
    if max_epochs * epoch_s * (1 + FIT_MARGIN) <= available:
        # The speed estimate may be off: the time box stays, with room, as a guard.
        return TrainingPlan(max_epochs, available, float(max_epochs), tokens_per_s, fits=True)
    # Use the whole box: training stops inside an epoch when it is spent. The epochs stay at
    # max_epochs, so a machine faster than measured trains on instead of stopping early.
    return TrainingPlan(max_epochs, available, min(available / epoch_s, max_epochs), tokens_per_s, fits=False)


def spread_batches(batches: list[list[int]], tgt_lengths: list[int], count: int) -> list[list[int]]:
    """``count`` batches at evenly spaced quantiles of their longest target: the shapes an epoch
    goes through, not only its median one."""
    ordered = sorted(batches, key=lambda b: max(tgt_lengths[i] for i in b))
    count = min(count, len(ordered))
    return [ordered[int((k + 0.5) * len(ordered) / count)] for k in range(count)]


def timed_updates(model: Seq2SeqModel, warm: list[Batch], timed: list[Batch], precision: ResolvedPrecision = FP32,
                  clip_norm: float = 1.0) -> float:
    """Target tokens per second of training updates (forward, backward, clipping, Adam) on the
    ``timed`` batches, after untimed updates on the ``warm`` ones. The model's weights are
    restored afterwards. The one timing loop of the demo's estimate and the benchmarks."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    tokens, seconds = 0, 0.0
    for is_timed, batches in ((False, warm), (True, timed)):
        for batch in batches:
            start = time.perf_counter()
            loss = sequence_loss(model, batch, 0.0, precision)
            optimizer.zero_grad(set_to_none=True)
            (loss / batch.n_tgt_tokens).backward()
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            if is_timed:
                seconds += time.perf_counter() - start
                tokens += batch.n_tgt_tokens
    model.load_state_dict(state)
    return tokens / seconds if seconds > 0 else math.inf


def measure_tokens_per_s(model: Seq2SeqModel, data: EncodedCorpus, max_tokens: int, steps: int = 6,
                         precision: ResolvedPrecision = FP32, seed: int = 0) -> float:
    """Target tokens per second of training on ``steps`` real batches spread over the corpus's
    lengths, each timed on its second run (the first creates its shape's kernels)."""
    batches = token_batches(data.src.lengths, data.tgt.lengths, max_tokens, seed=seed)
    chosen = [collate([data.src[j] for j in idx], [data.tgt[j] for j in idx])
              for idx in spread_batches(batches, data.tgt.lengths, steps)]
    return timed_updates(model, chosen, chosen, precision)
