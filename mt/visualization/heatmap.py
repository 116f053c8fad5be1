"""Attention heatmaps: target tokens down, source tokens across."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_attention(weights: np.ndarray, src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                   path: str | Path, title: str = "") -> Path:
    """Writes a heatmap of ``weights`` [len(tgt_tokens), len(src_tokens)] to ``path`` (PNG, PDF, SVG)."""
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"weights {weights.shape} do not match {len(tgt_tokens)} x {len(src_tokens)} tokens")
    height = max(3.0, 0.28 * len(tgt_tokens) + 1.5)
    width = max(4.0, 0.28 * len(src_tokens) + 2.5)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_tokens)), [t.replace("▁", "") or "▁" for t in src_tokens], rotation=90, fontsize=8)
    ax.set_yticks(range(len(tgt_tokens)), [t.replace("▁", "") or "▁" for t in tgt_tokens], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
