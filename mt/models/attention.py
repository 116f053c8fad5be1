"""Attention for the RNN decoders: a score, a normaliser and an optional local window.

``Attention`` scores queries ``[batch, queries, query_dim]`` (or one query per
sentence, ``[batch, query_dim]``) against the source states, turns the scores into
weights over the real source positions and returns the context vectors with the
weights. Work that does not depend on the query (the key projections of the additive
and general scores) is done once per sentence in ``precompute``.

Scores (Luong et al., 2015, and later work):
  additive / concat  v^T tanh(W_q q + W_k h)    (Bahdanau's; Luong's "concat" is the same form)
  dot                q . h
  general            q^T W h
  scaled_dot         q . h / sqrt(d)
  cosine             s * cos(q, h), with a learned scale s (cosines alone are too flat)
Normalisers: softmax, or sparsemax (Martins & Astudillo, 2016), whose weights have
exact zeros. A local window (Luong's local-p) predicts a source position per query and
restricts the weights to within ``window`` positions of it, favouring the centre with a
Gaussian of standard deviation window / 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCORES = ("additive", "concat", "dot", "general", "scaled_dot", "cosine")
NEEDS_EQUAL_DIMS = ("dot", "scaled_dot", "cosine")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dimension with exact zeros where ``mask`` is False.

    scores: [batch, ..., src_len]; mask: [batch, src_len] (or the shape of scores).
    """
    if mask.dim() == 2 and scores.dim() > 2:
        mask = mask.view(mask.size(0), *([1] * (scores.dim() - 2)), mask.size(-1))
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def sparsemax(scores: Tensor, mask: Tensor) -> Tensor:
    """Euclidean projection of the scores onto the simplex, over the last dimension:
    weights sum to one and are exactly zero below a threshold and where ``mask`` is
    False. Sort-based, exact; autograd through it gives the sparsemax Jacobian."""
    if mask.dim() == 2 and scores.dim() > 2:
        mask = mask.view(mask.size(0), *([1] * (scores.dim() - 2)), mask.size(-1))
    z = (scores if scores.dtype == torch.float64 else scores.float()).masked_fill(~mask, -1e9)
    z = z - z.max(dim=-1, keepdim=True).values.detach()
    z_sorted = z.sort(dim=-1, descending=True).values
    cumsum = z_sorted.cumsum(dim=-1)
    k = torch.arange(1, z.size(-1) + 1, device=z.device, dtype=z.dtype)
    support = (1 + k * z_sorted) > cumsum
    k_z = support.sum(dim=-1, keepdim=True)                        # size of the support, >= 1
    tau = (cumsum.gather(-1, k_z - 1) - 1) / k_z.to(z.dtype)
    return torch.clamp(z - tau, min=0.0).masked_fill(~mask, 0.0).to(scores.dtype)


NORMALIZERS = {"softmax": masked_softmax, "sparsemax": sparsemax}


class Attention(nn.Module):
    def __init__(self, query_dim: int, value_dim: int, score: str = "additive", normalizer: str = "softmax",
                 attn_dim: int = 256, window: int = 0) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"unknown attention score {score!r}; choose one of {SCORES}")
        if score in NEEDS_EQUAL_DIMS and query_dim != value_dim:
            raise ValueError(f"the {score} score needs query and source states of one size ({query_dim} != {value_dim})")
        self.score = score
        self.normalize = NORMALIZERS[normalizer]
        self.window = window
        if score in ("additive", "concat"):
            self.key_proj = nn.Linear(value_dim, attn_dim, bias=False)
            self.query_proj = nn.Linear(query_dim, attn_dim, bias=True)
            self.energy = nn.Linear(attn_dim, 1, bias=False)
        elif score == "general":
            self.key_proj = nn.Linear(value_dim, query_dim, bias=False)
        elif score == "cosine":
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        if window > 0:  # local-p: p_t = (length - 1) * sigmoid(v_p^T tanh(W_p h_t))
            self.position = nn.Sequential(nn.Linear(query_dim, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1))

    def precompute(self, values: Tensor) -> Tensor | None:
        """Query-independent keys from the source states [batch, src_len, value_dim]."""
        if self.score in ("additive", "concat", "general"):
            return self.key_proj(values)
        if self.score == "cosine":
            return F.normalize(values, dim=-1)
        return None

    def _scores(self, query: Tensor, values: Tensor, keys: Tensor | None) -> Tensor:
        """query: [batch, queries, query_dim] -> scores [batch, queries, src_len]."""
        if keys is None:
            keys = self.precompute(values)
        if self.score in ("additive", "concat"):
            hidden = torch.tanh(keys.unsqueeze(1) + self.query_proj(query).unsqueeze(2))  # [b, q, s, attn_dim]
            return self.energy(hidden).squeeze(-1)
        if self.score == "general":
            return torch.bmm(query, keys.transpose(1, 2))
        if self.score == "dot":
            return torch.bmm(query, values.transpose(1, 2))
        if self.score == "scaled_dot":
            return torch.bmm(query, values.transpose(1, 2)) / math.sqrt(query.size(-1))
        return self.log_scale.exp() * torch.bmm(F.normalize(query, dim=-1), keys.transpose(1, 2))  # cosine

    def _local_window(self, query: Tensor, scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Gaussian-weighted scores and the window mask around the predicted positions."""
        lengths = mask.sum(dim=-1, keepdim=True).to(scores.dtype)                  # [batch, 1]
        centre = (lengths - 1) * torch.sigmoid(self.position(query).squeeze(-1))   # [batch, queries]
        positions = torch.arange(scores.size(-1), device=scores.device, dtype=scores.dtype)
        distance = positions.view(1, 1, -1) - centre.unsqueeze(-1)                  # [batch, queries, src_len]
        sigma = self.window / 2.0
        scores = scores - distance.pow(2) / (2 * sigma * sigma)
        return scores, mask.unsqueeze(1) & (distance.abs() <= self.window)

    def forward(self, query: Tensor, values: Tensor, keys: Tensor | None, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query: [batch, query_dim] or [batch, queries, query_dim]; values: [batch, src_len, value_dim];
        mask: [batch, src_len]. Returns context [..., value_dim] and weights [..., src_len]."""
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query
        scores = self._scores(q, values, keys)
        full_mask = mask.unsqueeze(1).expand_as(scores)
        if self.window > 0:
            scores, full_mask = self._local_window(q, scores, mask)
        weights = self.normalize(scores, full_mask)                                 # [batch, queries, src_len]
        context = torch.bmm(weights.to(values.dtype), values)                       # [batch, queries, value_dim]
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)
