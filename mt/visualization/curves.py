"""Line plots of scores: BLEU by source length for several models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mt.visualization.heatmap import save_figure


def plot_bleu_by_length(buckets: Sequence[str], bleu: Mapping[str, Sequence[float]], path: str | Path,
                        spread: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None) -> Path:
    """One line per model, or per variant with its seeds' range shaded (``spread``: lowest and
    highest seed per bucket). The legend sits beside the axes, so ten or more lines stay legible."""
    spread = spread or {}
    fig, ax = plt.subplots(figsize=(6 + (3.5 if len(bleu) > 4 else 0), 4))
    colours = plt.get_cmap("tab10" if len(bleu) <= 10 else "tab20").colors
    x = range(len(buckets))
    for i, (name, values) in enumerate(bleu.items()):
        colour = colours[i % len(colours)]
        style = "-" if i < len(colours) else "--"
        ax.plot(x, values, marker="o", linestyle=style, color=colour, label=name)
        if name in spread:
            ax.fill_between(x, *spread[name], color=colour, alpha=0.15, linewidth=0)
    ax.set_xticks(x, buckets)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    top = max([v for values in bleu.values() for v in values] + [v for _, high in spread.values() for v in high] + [1])
    ax.set_ylim(0, min(100.0, top * 1.1 + 2))
    ax.grid(alpha=0.3)
    if len(bleu) > 4:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        ax.legend()
    fig.tight_layout()
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
