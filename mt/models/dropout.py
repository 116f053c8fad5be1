"""Dropout whose masks are cheap to draw on a CPU.

``nn.Dropout`` draws its mask with ``bernoulli_``: one call of the CPU generator (a single
sequential Mersenne Twister) per element, which made dropout a quarter of the Transformer's
bf16 training step (docs/lab/benchmarks.md, issue 35). Here one 64-bit draw gives four 15-bit
numbers (``random_`` on int64, viewed as int16, the sign bit masked off), and an element is
kept when its number is at least ``round(p * 32768)``: four times fewer draws, and the kept
fraction is 1 - p to within 1/65536. The mask is kept as bool (1 byte an element, where
``nn.Dropout`` keeps one of the activation's dtype) and the kept elements are scaled by
1 / (1 - p'), p' being the rate the threshold really gives, so the expectation is exact.

The masks come from torch's CPU generator, as before: a seed gives the same run, and a
checkpoint's saved generator state resumes it exactly. The stream differs from
``nn.Dropout``'s, so a run started before this module existed does not continue with the
same masks. On a GPU (whose generator is parallel) this is ``F.dropout``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 15  # 15 random bits per element


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None) -> tuple[Tensor, float]:
    """A bool mask of ``shape`` that keeps each element with probability ~1 - p, and the
    scale 1 / (1 - p') that makes the expectation exact for the rate p' it really has."""
    threshold = round(p * _LEVELS)
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()  # [0, 2^63): 63 random bits
    bits = words.view(torch.int16)[:n]                                                # 4 per word
    mask = (bits & (_LEVELS - 1)) >= threshold
    return mask.view(shape), _LEVELS / (_LEVELS - threshold)


class _KeepScale(torch.autograd.Function):
    """x * mask * scale, saving only the bool mask for the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return (x * mask).mul_(scale)   # one temporary, scaled in place

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return (grad * mask).mul_(ctx.scale), None, None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    mask, scale = keep_mask(x.shape, p, x.device)
    return _KeepScale.apply(x, mask, scale)


class Dropout(nn.Module):
    """``nn.Dropout`` with the cheap CPU masks above; no parameters, so checkpoints are unchanged."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
