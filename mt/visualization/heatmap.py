"""Attention heatmaps: target tokens down, source tokens across."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backend_bases import FigureCanvasBase

from mt.errors import MTError
from mt.files import output_path


def image_format(path: str | Path) -> str:
    """The image type ``path``'s suffix names (png without one); one line for a type
    matplotlib cannot write."""
    kind = Path(path).suffix[1:].lower() or str(matplotlib.rcParams["savefig.format"])
    if kind not in FigureCanvasBase.get_supported_filetypes():
        raise MTError(f"{path}: matplotlib writes no .{kind} images; name it .png, .pdf or .svg")
    return kind


def save_figure(fig: plt.Figure, path: str | Path, top: float = 1.0) -> Path:
    """Writes and closes ``fig`` (the format follows the suffix); creates the folder. ``top``
    (a fraction of the height) keeps the axes below a suptitle, which tight_layout ignores.
    The image is drawn under a temporary name and renamed over ``path`` once complete
    (``output_path``): an interrupted or failed write leaves the previous image, never half one."""
    path = Path(path)
    try:
        kind = image_format(path)  # given, as the temporary name has no suffix to read it from
        fig.tight_layout(rect=(0.0, 0.0, 1.0, top))
        with output_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=kind)
    finally:
        plt.close(fig)
    return path


def _labels(tokens: Sequence[str]) -> list[str]:
    """SentencePiece pieces as tick labels: a piece that starts a word (``▁Two``) without its
    marker, one that continues a word after a middle dot (``T``, ``·wo``), so "Two" cut in two
    does not read as the words "T" and "wo". Words (no ``▁`` anywhere) are shown as they are."""
    if not any("▁" in t for t in tokens):
        return list(tokens)
    return [t[1:] or "▁" if t.startswith("▁") else t if t.startswith("<") or t == "</s>" else "·" + t
            for t in tokens]


def plot_attention_grid(maps: np.ndarray, src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                        path: str | Path, title: str = "") -> Path:
    """One heatmap per layer (rows) and head (columns): maps [layers, heads, tgt, src]."""
    maps = np.asarray(maps, dtype=float)
    layers, heads = maps.shape[:2]
    if maps.shape[2:] != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"maps {maps.shape} do not match {len(tgt_tokens)} x {len(src_tokens)} tokens")
    cell = max(2.2, 0.16 * max(len(src_tokens), len(tgt_tokens)) + 1.0)
    fig, axes = plt.subplots(layers, heads, figsize=(cell * heads + 0.5, cell * layers + 0.8), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(maps[layer, head], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=7)
            ax.set_xticks(range(len(src_tokens)), _labels(src_tokens) if layer == layers - 1 else [],
                          rotation=90, fontsize=5)
            ax.set_yticks(range(len(tgt_tokens)), _labels(tgt_tokens) if head == 0 else [], fontsize=5)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)


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
    ax.set_xticks(range(len(src_tokens)), _labels(src_tokens), rotation=90, fontsize=8)
    ax.set_yticks(range(len(tgt_tokens)), _labels(tgt_tokens), fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    return save_figure(fig, path)


def plot_attention_row(panels: Sequence[tuple[str, np.ndarray, Sequence[str], Sequence[str]]],
                       path: str | Path, title: str = "", columns: int = 4) -> Path:
    """The same sentence's attention from several models side by side: panels of
    (name, weights [tgt, src], src_tokens, tgt_tokens), each with its own output tokens.
    More than ``columns`` panels wrap onto further rows, so a study of a dozen models stays
    readable instead of one strip a dozen panels wide."""
    longest = max(max(len(p[2]), len(p[3])) for p in panels)
    cell = max(3.0, 0.22 * longest + 1.5)
    cols = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 0.5, (cell + 0.8) * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, weights, src_tokens, tgt_tokens) in zip(axes.flat, panels):
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (len(tgt_tokens), len(src_tokens)):
            raise ValueError(f"{name}: weights {weights.shape} do not match {len(tgt_tokens)} x {len(src_tokens)}")
        ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src_tokens)), _labels(src_tokens), rotation=90, fontsize=7)
        ax.set_yticks(range(len(tgt_tokens)), _labels(tgt_tokens), fontsize=7)
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, top=1.0 - 0.35 / fig.get_figheight() if title else 1.0)
