"""The output layer and the cross-entropy as one operation, a slice of rows at a time.

Run apart, the output layer and the loss keep the whole ``[tokens, vocab]`` logits, their
log-softmax and both gradients alive at once: at 4,096-token batches and an 8,000-piece
vocabulary that is about 0.5 GiB, a fifth of a Transformer step's peak memory. Here each
slice of rows is projected, scored and differentiated in the forward pass (the gradient of
softmax cross-entropy needs nothing the forward has not computed), so only one slice's
logits exist at a time and the backward pass only scales the stored gradients. The
arithmetic is the same three matrix products as the unfused layer; rows whose target is
padding are skipped. The idea is that of Liger Kernel's fused linear cross-entropy.
"""

from __future__ import annotations

import torch
from torch import Tensor

SLICE_ELEMENTS = 1 << 21  # logits per slice: 8 MiB in fp32 (262 rows of an 8k vocabulary), so that the
# element-wise passes over a slice (max, subtract, exp, sum, scale) run in cache and the allocator reuses the
# block (glibc maps blocks of 32 MiB and more from the kernel afresh each time: page faults on every slice)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the unfused output layer would have computed in (autocast's, if active)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _slice_rows(vocab: int) -> int:
    return max(1, SLICE_ELEMENTS // max(vocab, 1))


def _slice_loss(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    """Summed smoothed cross-entropy of fp32 logits [rows, vocab], which are overwritten by
    their softmax (the gradient's main term) in one exp pass: ``torch.logsumexp`` would
    allocate a second [rows, vocab] tensor and a later softmax would exponentiate again."""
    picked = logits.gather(1, target[:, None])[:, 0]                        # [rows]
    mean = logits.mean(dim=-1) if label_smoothing else None
    top = logits.amax(dim=-1, keepdim=True)                                 # [rows, 1]
    exp = logits.sub_(top).exp_()
    total = exp.sum(dim=-1, keepdim=True)                                   # [rows, 1]
    lse = (total.log() + top)[:, 0]
    exp.div_(total)
    nll = lse - picked
    if label_smoothing:  # as F.cross_entropy: (1 - e) * nll + e * mean over the vocabulary of -log p
        nll = (1 - label_smoothing) * nll + label_smoothing * (lse - mean)
    return nll.sum()


def _slices(x: Tensor, target: Tensor, weight: Tensor, bias: Tensor | None):
    """(first row, rows of x, their targets, their fp32 logits [rows, vocab]) slice by slice;
    x, weight and bias already in the compute dtype."""
    step = _slice_rows(weight.size(0))
    for start in range(0, x.size(0), step):
        xs = x[start:start + step]
        logits = torch.addmm(bias, xs, weight.t()) if bias is not None else xs @ weight.t()
        yield start, xs, target[start:start + step], logits.float()


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,
                label_smoothing: float, dtype: torch.dtype) -> Tensor:
        # x: [rows, dim], weight: [vocab, dim], target: [rows], every row a real token
        vocab = weight.size(0)
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        grad_x = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
        grad_b = torch.zeros(vocab, dtype=torch.float32, device=x.device) if bias is not None else None
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        for start, xs, ts, logits in _slices(x.to(dtype), target, w, b):
            total += _slice_loss(logits, ts, label_smoothing)  # logits now hold their softmax
            # d loss / d logits = softmax - (1 - e) * one_hot - e / vocab, built in the logits' memory
            grad = logits
            grad.scatter_add_(1, ts[:, None], grad.new_full((ts.size(0), 1), label_smoothing - 1))
            if label_smoothing:
                grad.sub_(label_smoothing / vocab)
            if grad_b is not None:
                grad_b += grad.sum(0)
            grad = grad.to(dtype)
            grad_x[start:start + xs.size(0)] = grad @ w
            if grad.dtype == grad_w.dtype:  # accumulate inside the product: no [vocab, dim] temporary
                grad_w.addmm_(grad.t(), xs)
            else:
                grad_w += (grad.t() @ xs).float()
        ctx.save_for_backward(grad_x, grad_w, grad_b)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_x, grad_w, grad_b = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        return ((grad_x * grad_output).to(x_dtype), (grad_w * grad_output).to(w_dtype),
                (grad_b * grad_output).to(b_dtype) if grad_b is not None else None, None, None, None)


def linear_cross_entropy(features: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,
                         ignore_index: int, label_smoothing: float = 0.0) -> Tensor:
    """``F.cross_entropy(F.linear(features, weight, bias), target, reduction="sum",
    ignore_index=..., label_smoothing=...)`` without the full logits in memory.

    features: [..., dim]; target: [...]. The linear layer runs in autocast's dtype when
    autocast is on (as ``F.linear`` would), the softmax and the loss in fp32.
    """
    dtype = _compute_dtype(features)
    keep = (target != ignore_index).reshape(-1)
    x = features.reshape(-1, features.size(-1))[keep]                       # [real tokens, dim]
    t = target.reshape(-1)[keep]
    with torch.autocast(features.device.type, enabled=False):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return _LinearCrossEntropy.apply(x, weight, bias, t, float(label_smoothing), dtype)
        b = bias.to(dtype) if bias is not None else None
        return sum((_slice_loss(logits, ts, label_smoothing)
                    for _, _, ts, logits in _slices(x.to(dtype), t, weight.to(dtype), b)),
                   torch.zeros((), dtype=torch.float32, device=x.device))
