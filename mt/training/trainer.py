"""The training loop: read it top to bottom.

Each epoch: token-count batches in an order fixed by the seed and the epoch, teacher-
forced cross-entropy, gradient clipping, an optimizer step and the learning-rate
schedule; then validation loss and BLEU/chrF of greedy output. The best model is
written as a model directory; ``checkpoints/last`` is written every
``checkpoint_every`` updates and after each validation, with everything a resumed run
needs to continue exactly where this one stopped (weights, optimizer, schedule, torch
RNG, position in the epoch). Validation can also run every ``valid_every`` updates; the
best model is judged by ``train.metric``. Metrics go to ``metrics.jsonl`` as they are measured.
Under torchrun (mt/training/distributed.py) each update's batches are dealt to the ranks,
gradients are all-reduced by DistributedDataParallel and normalised by the update's
global token count, so an update on N ranks equals one process's update with
``accumulate`` x N batches; rank 0 alone validates and writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from mt.config import Optimizer, Schedule, TrainConfig
from mt.data.batching import Batch, EncodedCorpus, collate, token_batches
from mt.data.tokenizer import PAD
from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translator
from mt.errors import MTError, WriteError, write_failure
from mt.evaluation.metrics import corpus_scores
from mt.files import remove_own
from mt.model_dir import WEIGHTS, legacy_kind
from mt.models import Seq2SeqModel
from mt.precision import FP32, ResolvedPrecision
from mt.training import distributed
from mt.training.alignment_loss import alignment_loss
from mt.training.averaging import mean_state
from mt.training.checkpoint import Progress, RunFiles, after_failed_checkpoint
from mt.training.fused_loss import linear_cross_entropy
from mt.training.schedule import learning_rate_factor, plateau_scale

log = logging.getLogger("mt.train")


def first_of_every(count: int, every: int) -> bool:
    """True for counts 1, every + 1, 2 * every + 1, ... (so ``every=1`` is every count)."""
    return (count - 1) % every == 0


class TrainingDiverged(MTError):
    pass


@dataclass
class ValidationRecord:
    epoch: int
    step: int
    train_loss: float
    valid_loss: float
    valid_ppl: float
    valid_bleu: float
    valid_chrf: float
    lr: float
    tokens_per_s: float
    seconds: float               # since this epoch (or this resumed session's part of it) began
    best: bool
    precision: str = "fp32"
    elapsed: float = 0.0         # wall seconds since the run began, summed over resumed sessions
    wall: float = 0.0            # seconds since this command started: data preparation and tokenizers included
    averaged: int = 0            # train.average_last: this row scores the mean of that many models


@dataclass
class TrainResult:
    best_dir: Path | None
    best_score: float  # of train.metric; for loss, its negative
    history: list[dict]
    stopped_early: bool = False


def sequence_loss(model: Seq2SeqModel, batch: Batch, label_smoothing: float,
                  precision: ResolvedPrecision = FP32, alignment_weight: float = 0.0) -> torch.Tensor:
    """Summed token cross-entropy of a batch (PAD excluded), in fp32 whatever the precision;
    with ``alignment_weight`` and gold rows in the batch, plus that weight times the
    attention's cross-entropy against them (train.alignment_loss)."""
    supervised = alignment_weight > 0 and batch.align is not None
    output = getattr(model, "module", model).output_layer  # through a DistributedDataParallel wrapper
    with precision.autocast():
        out, attention = model(batch.src, batch.src_mask, batch.tgt_in, return_attention=supervised,
                               features=output is not None)
        if output is not None:  # the output layer and the loss a slice at a time: no full logits
            loss = linear_cross_entropy(out, output.weight, output.bias, batch.tgt_out, PAD, label_smoothing)
    if output is None:
        loss = F.cross_entropy(out.float().reshape(-1, out.size(-1)), batch.tgt_out.reshape(-1),
                               ignore_index=PAD, label_smoothing=label_smoothing, reduction="sum")
    if supervised and attention is not None:
        loss = loss + alignment_weight * alignment_loss(attention, batch.align)
    return loss


def restore_rng(state: dict, rank: int = 0, device: torch.device | None = None) -> None:
    """This rank's CPU generator and its GPU's generator, as this rank saved them. A single
    process restores every GPU's generator, where this machine has as many GPUs (also what
    checkpoints written before per-rank GPU states hold)."""
    ranks = state.get("rank_rng") or [state["torch_rng"]]
    torch.set_rng_state(ranks[rank].cpu())
    own = state.get("rank_cuda_rng") or []
    if (len(ranks) > 1 and own and own[rank].numel() and device is not None and device.type == "cuda"
            and torch.cuda.is_available()):
        torch.cuda.set_rng_state(own[rank].cpu(), device)
        return
    cuda = state.get("cuda_rng") or []
    if cuda and torch.cuda.is_available() and len(ranks) == 1:
        if len(cuda) != torch.cuda.device_count():
            log.warning("the checkpoint has %d CUDA generator states but this machine %d GPUs: dropout will differ "
                        "from an uninterrupted run", len(cuda), torch.cuda.device_count())
        else:
            torch.cuda.set_rng_state_all([t.cpu() for t in cuda])


def open_tensorboard(path: Path):
    """A TensorBoard writer when tensorboard is installed; metrics.jsonl is written anyway."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


def build_optimizer(model: Seq2SeqModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if cfg.optimizer is Optimizer.adamw else torch.optim.Adam
    return kind(model.parameters(), lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), weight_decay=cfg.weight_decay)


@dataclass
class TrainingData:
    """What a run trains and validates on: the encoded splits, and the validation text that
    greedy (or ``train.valid_beam``) output is scored against."""

    train: EncodedCorpus
    valid: EncodedCorpus
    valid_src: list[str]
    valid_ref: list[str]


class Trainer:
    def __init__(self, model: Seq2SeqModel, cfg: TrainConfig, data: TrainingData, translator: Translator,
                 files: RunFiles, progress: str = "auto", name: str = "",
                 resume_from: tuple[dict, Progress] | None = None, precision: ResolvedPrecision = FP32,
                 started: float | None = None) -> None:
        """``files`` writes the best model, snapshots and checkpoints into the run directory;
        ``started`` (perf_counter) is when the command began, for the log of its first update.
        progress: ``bar`` (tqdm), ``lines`` (a plain line every train.log_seconds, for logs
        and files), ``off``, or ``auto``: a bar on a terminal, lines otherwise."""
        self.model = model
        self.cfg = cfg
        self.train_data = data.train
        self.valid_data = data.valid
        self.valid_src = data.valid_src
        self.valid_ref = data.valid_ref
        self.translator = translator
        self.valid_search = SearchConfig(beam=cfg.valid_beam)
        self.files = files
        self.run_dir = files.run_dir
        self.command_started = started
        self.wall_started = started  # the zero of metrics' wall clock (fit() sets it where none was given)
        if progress == "auto":
            progress = "bar" if sys.stderr.isatty() else "lines"
        self.progress_mode = progress
        self.precision = precision
        self.scaler = torch.amp.GradScaler(precision.device_type) if precision.needs_grad_scaler else None
        # When fit() started, less the training seconds of a resumed run's earlier sessions:
        # train.max_seconds and schedule=linear count the whole run from here.
        self.run_started = 0.0
        self.time_fraction = 0.0   # of train.max_seconds used, the same on every rank (schedule=linear)
        self.epoch_batches = 0     # batches in the epoch in progress
        self.out_of_time = False  # train.max_seconds reached
        self.name = name
        self.device = next(model.parameters()).device
        self.world = distributed.world()
        self.rank, self.world_size = self.world.rank, self.world.size
        # What training runs forward through: under torchrun, DDP all-reduces the gradients.
        self.train_model: torch.nn.Module = model
        if self.world_size > 1:
            cuda = self.device.type == "cuda"
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if cuda else None)
        self.optimizer = build_optimizer(model, cfg)
        self.progress = Progress()
        self.validated_at = -1   # the step of the last validation
        self.stop = False        # early stopping decided
        self.tensorboard = open_tensorboard(self.run_dir / "tensorboard") if self.rank == 0 else None
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, cfg, self.progress.lr_scale, self._run_fraction()))
        if resume_from is not None:
            state, self.progress = resume_from
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            saved_world = int(state.get("world_size", 1))
            if saved_world != self.world_size:
                raise MTError(f"this run was trained by {saved_world} process(es) and is resumed by "
                              f"{self.world_size}: resume it with torchrun --nproc_per_node={saved_world} "
                              f"(or train.ddp={saved_world}), so that batches and random states line up")
            restore_rng(state, self.rank, self.device)

    def _prefix(self) -> str:
        return f"[{self.name}] " if self.name else ""

    def _checkpoint(self) -> None:
        """Every rank's random state goes in (all ranks call this); rank 0 writes."""
        rng, cuda_rng = distributed.gather_rng_states(self.device)
        self.progress.elapsed = self._elapsed()
        if self.rank == 0:
            self.files.save_checkpoint(self.optimizer, self.schedule, self.progress,
                                       {"world_size": self.world_size, "rank_rng": rng, "rank_cuda_rng": cuda_rng})

    def _wall(self) -> float:
        """Seconds since the command started (since fit() began where the caller gave no start)."""
        return round(time.perf_counter() - self.wall_started, 1)

    def _kept_snapshots(self) -> int:
        """How many validations' models checkpoints/ keeps: train.keep_checkpoints, or more for
        train.average_last."""
        return max(self.cfg.keep_checkpoints, self.cfg.average_last)

    def _elapsed(self) -> float:
        """Wall seconds of the whole run: what earlier sessions checkpointed plus this one's."""
        return time.perf_counter() - self.run_started

    def _run_fraction(self) -> float:
        """How much of the run is done: the largest share of train.epochs, max_steps and max_seconds."""
        p = self.progress
        shares = [self.time_fraction, (p.epoch - 1 + p.batch / max(self.epoch_batches, 1)) / self.cfg.epochs]
        if self.cfg.max_steps:
            shares.append(p.step / self.cfg.max_steps)
        return min(max(shares), 1.0)

    def _time_is_up(self) -> bool:
        """Checked after each update, so that a run always makes one update and one validation.
        train.max_seconds counts the whole run: a resumed run has the part its earlier sessions
        trained already behind it."""
        return bool(self.cfg.max_seconds) and self._elapsed() >= self.cfg.max_seconds

    def _done(self) -> bool:
        return self.out_of_time or (bool(self.cfg.max_steps) and self.progress.step >= self.cfg.max_steps)

    def _progress_line(self, batches: int, loss: float, tok_s: float) -> None:
        p = self.progress
        budget = f" of {self.cfg.max_seconds:.0f}s budget" if self.cfg.max_seconds else ""
        log.info("%sepoch %d  batch %d/%d  step %d  loss %.3f  %.0f tok/s  %.0fs%s", self._prefix(), p.epoch,
                 p.batch, batches, p.step, loss, tok_s, self._elapsed(), budget)

    def _backward(self, loss: torch.Tensor) -> None:
        """Adds this loss's gradients (through the gradient scaler for fp16)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _step(self) -> None:
        """Clipping, the optimizer step and the schedule, on the gradients gathered since the last."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.schedule.step()

    def _gradients(self, update: list[list[int]]) -> tuple[float, int]:
        """This rank's share of one update's batches, forward and backward, the gradients
        summed and normalised by the whole update's target tokens (all ranks'). Returns this
        rank's summed loss and the update's target tokens."""
        tgt = self.train_data.tgt
        supervised = bool(self.cfg.alignment_loss) and self.train_data.links is not None
        sizes = [int(self.train_data.tgt.lengths[idx].sum()) + len(idx) for idx in update]  # target tokens + EOS
        n_tokens = sum(sizes)  # of the whole update: the loss is normalised by it on every rank
        mine = distributed.deal(sizes, self.world_size)[self.rank]
        # A rank left without a batch (the end of an epoch) still joins the all-reduce, with weight 0.
        weight = float(self.world_size) if mine else 0.0  # DDP averages over ranks: undo it
        self.optimizer.zero_grad(set_to_none=True)
        loss_value = 0.0
        for k, pos in enumerate(mine or [0]):
            idx = update[pos]
            links = [self.train_data.links[j] for j in idx] if supervised else None
            batch = collate([self.train_data.src[j] for j in idx], [tgt[j] for j in idx], links,
                            self.cfg.alignment_shift).to(self.device)
            last = k == max(len(mine), 1) - 1
            sync = contextlib.nullcontext() if last or self.world_size == 1 else self.train_model.no_sync()
            with sync:
                loss = sequence_loss(self.train_model, batch, self.cfg.label_smoothing, self.precision,
                                     self.cfg.alignment_loss)
                self._backward(loss * weight / n_tokens)
            loss_value += loss.item() if mine else 0.0  # the one host sync of each batch
        return loss_value, n_tokens

    def _train_epoch(self) -> tuple[float, float, bool]:
        """Trains from the current position to the end of the epoch (or max_steps).
        Returns the mean training loss per token, target tokens per second, and whether
        the epoch was finished."""
        self.model.train()
        p = self.progress
        batches = token_batches(self.train_data.src.lengths, self.train_data.tgt.lengths,
                                self.cfg.max_tokens, seed=self.cfg.seed * 1000 + p.epoch)
        self.epoch_batches = len(batches)
        total_loss = total_tokens = 0.0
        start = time.perf_counter()
        bar = tqdm(total=len(batches), initial=p.batch, desc=f"{self.name} epoch {p.epoch}".strip(),
                   disable=self.progress_mode != "bar" or self.rank != 0, leave=False, dynamic_ncols=True)
        lines = self.progress_mode == "lines" and self.rank == 0
        last_line, tokens_at_line = start, 0.0
        group_size = self.cfg.accumulate * self.world_size  # batches per update, all ranks together
        for first in range(p.batch, len(batches), group_size):
            if self._done() or self.stop:
                break
            update = batches[first:first + group_size]
            loss_value, n_tokens = self._gradients(update)
            # The clock of train.max_seconds (the whole run's), averaged so every rank's learning rate agrees.
            loss_value, late, seconds = distributed.all_reduce_sum(
                [loss_value, float(self._time_is_up()), self._elapsed()])
            if self.cfg.max_seconds:
                self.time_fraction = seconds / self.world_size / self.cfg.max_seconds
            if not math.isfinite(loss_value):
                raise TrainingDiverged(
                    f"the training loss became {loss_value} at step {p.step + 1}; the last good checkpoint is "
                    f"kept in {self.run_dir / 'checkpoints'}; lower train.lr or set train.clip_norm")
            p.step += 1
            p.batch += len(update)
            if self.command_started is not None and self.rank == 0:  # where the start-up went: the last stage
                log.info("stage first update: %.1f s (%.1f s since the start)", time.perf_counter() - self.first_at,
                         time.perf_counter() - self.command_started)
                self.command_started = None
            self._step()  # after counting the update: schedule=linear reads the run's progress
            self.out_of_time = late > 0  # the same on every rank
            total_loss += loss_value
            total_tokens += n_tokens
            bar.update(len(update))
            now = time.perf_counter()
            if first_of_every(p.step, self.cfg.log_every):
                bar.set_postfix(loss=f"{total_loss / total_tokens:.3f}", tok_s=f"{total_tokens / (now - start):.0f}")
            if lines and now - last_line >= self.cfg.log_seconds:  # the speed since the last line
                self._progress_line(len(batches), total_loss / total_tokens,
                                    (total_tokens - tokens_at_line) / (now - last_line))
                last_line, tokens_at_line = now, total_tokens
            if self.cfg.valid_every and p.step % self.cfg.valid_every == 0:
                self._validate(total_loss / total_tokens, total_tokens / (time.perf_counter() - start),
                               time.perf_counter() - start)
                self.model.train()
                self._checkpoint()
            elif self.cfg.checkpoint_every and p.step % self.cfg.checkpoint_every == 0:
                self._checkpoint()
        bar.close()
        finished = p.batch >= len(batches)
        return total_loss / max(total_tokens, 1), total_tokens / max(time.perf_counter() - start, 1e-9), finished

    @torch.no_grad()
    def _valid_loss(self) -> float:
        self.model.eval()
        total_loss = total_tokens = 0.0
        for idx in token_batches(self.valid_data.src.lengths, self.valid_data.tgt.lengths,
                                 self.cfg.max_tokens):
            batch = collate([self.valid_data.src[j] for j in idx], [self.valid_data.tgt[j] for j in idx]).to(self.device)
            total_loss += sequence_loss(self.model, batch, 0.0, self.precision).item()
            total_tokens += batch.n_tgt_tokens
        return total_loss / max(total_tokens, 1)

    def _valid_scores(self) -> tuple[float, float]:
        n = self.cfg.valid_max_sentences or len(self.valid_src)
        hyps = [t.text for t in self.translator.translate(self.valid_src[:n], self.valid_search)]
        scores = corpus_scores(hyps, self.valid_ref[:n])
        return scores.bleu, scores.chrf

    def _validate(self, train_loss: float, tok_s: float, seconds: float) -> ValidationRecord:
        """Rank 0 measures; every rank takes its numbers, so all agree on the best and on stopping."""
        p = self.progress
        valid_loss, bleu, chrf = math.nan, math.nan, math.nan
        if self.rank == 0:
            valid_loss = self._valid_loss()
            bleu, chrf = self._valid_scores()
        valid_loss, bleu, chrf = distributed.broadcast([valid_loss, bleu, chrf])
        self.validated_at = p.step
        score = {"bleu": bleu, "chrf": chrf, "loss": -valid_loss}[self.cfg.metric.value]  # higher is better
        best = score > p.best_score
        if best:
            p.best_score, p.bad_validations = score, 0
            if self.rank == 0:
                self.files.save_model(self.run_dir / "model")
        else:
            p.bad_validations += 1
            if self.cfg.schedule is Schedule.plateau:
                p.lr_scale = plateau_scale(p.lr_scale, p.bad_validations, self.cfg)
        record = ValidationRecord(p.epoch, p.step, round(train_loss, 4), round(valid_loss, 4),
                                  round(math.exp(min(valid_loss, 50)), 2), bleu, chrf,
                                  self.optimizer.param_groups[0]["lr"], round(tok_s, 1), round(seconds, 1), best,
                                  self.precision.name, round(self._elapsed(), 1), self._wall())
        p.history.append(asdict(record))
        if self.rank == 0:
            self._append_metrics(asdict(record))
            if self.tensorboard is not None:
                for key in ("train_loss", "valid_loss", "valid_ppl", "valid_bleu", "valid_chrf", "lr", "tokens_per_s"):
                    self.tensorboard.add_scalar(key, getattr(record, key), p.step)
                self.tensorboard.flush()
            log.info("%sepoch %d  step %d  train loss %.3f  valid loss %.3f  ppl %.2f  BLEU %.2f  chrF %.2f  "
                     "lr %.2g  %.0f tok/s  %.0fs%s", self._prefix(), p.epoch, p.step, train_loss, valid_loss,
                     record.valid_ppl, bleu, chrf, record.lr, tok_s, seconds, "  (best, saved)" if best else "")
            if self._kept_snapshots():
                self._snapshot()
        if self.cfg.patience and p.bad_validations >= self.cfg.patience:
            log.info("%sstopping early: no better validation %s in %d validations", self._prefix(),
                     self.cfg.metric.value, self.cfg.patience)
            self.stop = True
        return record

    def _validate_average(self) -> None:
        """train.average_last: the mean of the models of the last N validations is validated as one
        more candidate, and becomes the run's model where it scores better than the best single one
        (averaging the last checkpoints usually gains: Vaswani et al., 2017). Its row in
        metrics.jsonl says how many models it averaged. The model in memory stays the last one."""
        p = self.progress
        folders = self._own_snapshots()[-self.cfg.average_last:]
        if len(folders) < 2:
            log.info("%strain.average_last=%d: only %d validation(s), nothing to average", self._prefix(),
                     self.cfg.average_last, len(folders))
            return
        start = time.perf_counter()
        last = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        averaged = mean_state([load_file(str(f / WEIGHTS)) for f in folders])
        self.model.load_state_dict(averaged, strict=False)  # tied tensors are stored once
        valid_loss = self._valid_loss()
        bleu, chrf = self._valid_scores()
        score = {"bleu": bleu, "chrf": chrf, "loss": -valid_loss}[self.cfg.metric.value]
        best = score > p.best_score
        if best:
            p.best_score = score
            self.files.save_model(self.run_dir / "model")
        self.model.load_state_dict(last)
        train_loss = p.history[-1]["train_loss"] if p.history else 0.0  # the last one's: no NaN in the JSON
        record = ValidationRecord(p.epoch, p.step, train_loss, round(valid_loss, 4),
                                  round(math.exp(min(valid_loss, 50)), 2), bleu, chrf,
                                  self.optimizer.param_groups[0]["lr"], 0.0, round(time.perf_counter() - start, 1),
                                  best, self.precision.name, round(self._elapsed(), 1), self._wall(), len(folders))
        self._append_metrics(asdict(record))
        log.info("%sthe mean of the last %d validations' models: valid loss %.3f  BLEU %.2f  chrF %.2f%s",
                 self._prefix(), len(folders), valid_loss, bleu, chrf,
                 "  (better than each: it is the run's model)" if best else "  (not better: the best single model stays)")

    def _append_metrics(self, row: dict) -> None:
        """One line of metrics.jsonl; a failed write (a full disk) is one line saying what is kept."""
        path = self.run_dir / "metrics.jsonl"
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
        except OSError as err:
            why = write_failure(err)
            if why is None:
                raise
            raise WriteError(f"could not write the metrics to {path} ({why}); "
                             f"{after_failed_checkpoint(self.run_dir / 'checkpoints' / 'last')}") from err

    def _snapshot(self) -> None:
        """The model at this validation, for checkpoint averaging; only the newest N stay."""
        folder = self.run_dir / "checkpoints"
        self.files.save_model(folder / f"step_{self.progress.step:08d}")
        for old in self._own_snapshots()[: -self._kept_snapshots()]:
            remove_own(old, "model", legacy_kind)

    def _own_snapshots(self) -> list[Path]:
        """This run's per-validation models in checkpoints/, oldest first: a folder a run replaced
        (the demo's) may still hold another run's, which are neither averaged nor removed."""
        folder = self.run_dir / "checkpoints"
        steps = sorted({r["step"] for r in self.progress.history})
        return [folder / f"step_{s:08d}" for s in steps if (folder / f"step_{s:08d}").is_dir()]

    def fit(self) -> TrainResult:
        p = self.progress
        self.run_started = time.perf_counter() - p.elapsed
        if self.wall_started is None:
            self.wall_started = time.perf_counter()
        self.first_at = time.perf_counter()
        first_step = p.step
        while p.epoch <= self.cfg.epochs and not self._done() and not self.stop:
            start = time.perf_counter()
            train_loss, tok_s, finished = self._train_epoch()
            if self.out_of_time and self.rank == 0:
                log.info("%sstopping: train.max_seconds=%g reached at step %d", self._prefix(),
                         self.cfg.max_seconds, p.step)
            if self.validated_at != p.step:
                self._validate(train_loss, tok_s, time.perf_counter() - start)
            if finished:  # else max_steps stopped it inside the epoch, where a resume continues
                p.epoch, p.batch = p.epoch + 1, 0
            self._checkpoint()
            if self.out_of_time:
                break
        if self.cfg.average_last and p.step > first_step:  # a resume with nothing left to train has its average
            if self.rank == 0:
                self._validate_average()
            self._checkpoint()  # a resumed run then measures itself against the average's score too
        best_dir = self.run_dir / "model"
        return TrainResult(best_dir if best_dir.is_dir() else None, p.best_score, p.history, self.stop)
