"""Line plots of scores: BLEU by source length for several models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mt.visualization.heatmap import save_figure


def plot_bleu_by_length(buckets: Sequence[str], bleu: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in bleu.items():
        ax.plot(range(len(buckets)), values, marker="o", label=name)
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | Path,
                         label_smoothing: float = 0.0) -> Path:
    """Training and validation loss, and validation BLEU, by epoch (records of metrics.jsonl).
    The training loss is the one optimised, label smoothing included; the validation loss is
    plain cross-entropy: the legend says so, so a gap from smoothing is not read as overfitting."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    train_label = f"train (label-smoothed {label_smoothing:g})" if label_smoothing else "train"
    left.plot(epochs, [r["train_loss"] for r in history], marker="o", label=train_label)
    left.plot(epochs, [r["valid_loss"] for r in history], marker="o",
              label="validation (no smoothing)" if label_smoothing else "validation")
    left.set_xlabel("epoch")
    left.set_ylabel("loss per token")
    left.legend()
    right.plot(epochs, [r["valid_bleu"] for r in history], marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel("validation BLEU")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
