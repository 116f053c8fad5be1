"""The learning rate at each update: warm-up, then constant, Noam's inverse square root, a
plateau schedule lowered when validation stops improving, or a linear decay to the end of
the run (of its epochs, steps or seconds, whichever ends it first), over all of it or its
last part (train.decay_from)."""

from __future__ import annotations

import math

from mt.config import Schedule, TrainConfig


def learning_rate_factor(step: int, cfg: TrainConfig, plateau_scale: float, run_fraction: float = 0.0) -> float:
    """Multiplier of train.lr after ``step`` updates; ``run_fraction`` (0 to 1) is how much of
    the run is done, for schedule=linear."""
    warmup = cfg.warmup_steps
    step = step + 1
    if cfg.schedule is Schedule.noam:
        return min(step / warmup, math.sqrt(warmup / step))
    factor = min(1.0, step / warmup) if warmup else 1.0
    if cfg.schedule is Schedule.linear:  # a time or step budget is best spent decaying to its end (Li et al., 2020)
        # From train.decay_from of the run on; before it the rate holds (warmup-stable-decay: Hu et al., 2024;
        # Hägele et al., 2024).
        end = cfg.min_lr / cfg.lr
        decayed = (run_fraction - cfg.decay_from) / (1.0 - cfg.decay_from)
        return factor * (1.0 - (1.0 - end) * min(max(decayed, 0.0), 1.0))
    return factor * (plateau_scale if cfg.schedule is Schedule.plateau else 1.0)


def plateau_scale(scale: float, bad_validations: int, cfg: TrainConfig) -> float:
    """The plateau schedule's next multiplier of train.lr: lowered by ``plateau_factor`` once
    every ``plateau_patience`` validations in a row without a better metric, never below
    ``min_lr``."""
    if bad_validations % cfg.plateau_patience:
        return scale
    return max(scale * cfg.plateau_factor, cfg.min_lr / cfg.lr)
