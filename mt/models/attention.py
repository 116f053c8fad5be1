"""Attention for the RNN decoders: a score, a normaliser and an optional local window.

``Attention`` scores queries ``[batch, queries, query_dim]`` (or one query per
sentence, ``[batch, query_dim]``) against the source states, turns the scores into
weights over the real source positions and returns the context vectors with the
weights. Work that does not depend on the query (the key projections of the additive
and general scores) is done once per sentence in ``precompute``.

Scores (Luong et al., 2015, and later work) are subclasses of ``Attention``, each with its
formula in its docstring, all named in ``SCORES``. A new score is one class and one entry
there, and its name in the schema (``mt.config.Score``, and ``EQUAL_SIZE_SCORES`` when it
compares components); the tests check that the schema and the table agree.
Normalisers:
  softmax            weights sum to one
  sparsemax          Martins & Astudillo (2016): sum to one, with exact zeros
  sigmoid            sigmoid(score), each weight an independent gate in (0, 1): they do not
                     sum to one, so the context is a gated sum whose size follows how many
                     positions are open (the sigmoid attention of Kim et al.'s 2017
                     Structured Attention Networks)
  max                softplus(score) / max over the source of softplus(score): the strongest
                     position gets exactly 1, the others their share of it in (0, 1]; softplus
                     makes the scores positive (a plain division by the maximum is undefined
                     when scores are negative) and keeps a gradient everywhere
Masks: a local window (Luong's local-p) predicts a source position per query and restricts
the weights to within ``window`` positions of it, favouring the centre with a Gaussian of
standard deviation window / 2; ``top_k`` keeps the k highest scores of each query (after the
window) and gives every other position exactly zero weight.
Hard attention (Xu et al., 2015) picks one source position per step: in training a
straight-through Gumbel-softmax sample (forward one-hot, backward the gradient of the
softmax of the perturbed scores at temperature 1), at inference the argmax. Straight-through
Gumbel rather than Xu et al.'s REINFORCE: one sample per step, no baseline to learn, no
variance reduction to tune, and the same code path as soft attention.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _at_least_fp32(x: Tensor) -> Tensor:
    """bf16 / fp16 scores normalised in fp32; fp64 (gradient checks) kept."""
    return x if x.dtype == torch.float64 else x.float()


def _broadcastable(mask: Tensor, scores: Tensor) -> Tensor:
    """A [batch, src_len] mask viewed to broadcast over scores [batch, ..., src_len]."""
    if mask.dim() == 2 and scores.dim() > 2:
        return mask.view(mask.size(0), *([1] * (scores.dim() - 2)), mask.size(-1))
    return mask


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dimension with exact zeros where ``mask`` is False.

    scores: [batch, ..., src_len]; mask: [batch, src_len] (or the shape of scores).
    """
    mask = _broadcastable(mask, scores)
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def sparsemax(scores: Tensor, mask: Tensor) -> Tensor:
    """Euclidean projection of the scores onto the simplex, over the last dimension:
    weights sum to one and are exactly zero below a threshold and where ``mask`` is
    False. Sort-based, exact; autograd through it gives the sparsemax Jacobian."""
    mask = _broadcastable(mask, scores)
    z = _at_least_fp32(scores).masked_fill(~mask, -1e9)
    z = z - z.max(dim=-1, keepdim=True).values.detach()
    z_sorted = z.sort(dim=-1, descending=True).values
    cumsum = z_sorted.cumsum(dim=-1)
    k = torch.arange(1, z.size(-1) + 1, device=z.device, dtype=z.dtype)
    support = (1 + k * z_sorted) > cumsum
    k_z = support.sum(dim=-1, keepdim=True)                        # size of the support, >= 1
    tau = (cumsum.gather(-1, k_z - 1) - 1) / k_z.to(z.dtype)
    return torch.clamp(z - tau, min=0.0).masked_fill(~mask, 0.0).to(scores.dtype)


def masked_sigmoid(scores: Tensor, mask: Tensor) -> Tensor:
    """Independent gates sigmoid(score) in (0, 1), exactly zero where ``mask`` is False."""
    mask = _broadcastable(mask, scores)
    return torch.sigmoid(scores).masked_fill(~mask, 0.0)


def max_normalize(scores: Tensor, mask: Tensor) -> Tensor:
    """softplus(score) divided by its maximum over the unmasked positions: the strongest
    position weighs exactly 1; masked positions exactly 0."""
    mask = _broadcastable(mask, scores)
    positive = F.softplus(_at_least_fp32(scores)).masked_fill(~mask, 0.0)
    top = positive.max(dim=-1, keepdim=True).values.clamp_min(torch.finfo(positive.dtype).tiny)
    return (positive / top).to(scores.dtype)


NORMALIZERS = {"softmax": masked_softmax, "sparsemax": sparsemax, "sigmoid": masked_sigmoid, "max": max_normalize}


def top_k_mask(scores: Tensor, mask: Tensor, k: int) -> Tensor:
    """``mask`` [batch, queries, src_len] narrowed to the ``k`` highest scores of each query
    (all of a query's positions when it has k or fewer)."""
    if k >= scores.size(-1):
        return mask
    ranked = scores.detach().masked_fill(~mask, float("-inf"))
    kept = torch.zeros_like(mask).scatter_(-1, ranked.topk(k, dim=-1).indices, True)
    return mask & kept


def hard_weights(scores: Tensor, mask: Tensor, sample: bool) -> Tensor:
    """One-hot weights [batch, queries, src_len]: a straight-through Gumbel-softmax sample
    when ``sample`` (training), else the argmax of the scores."""
    logits = _at_least_fp32(scores).masked_fill(~mask, float("-inf"))
    if sample:
        uniform = torch.rand_like(logits).clamp_(torch.finfo(logits.dtype).tiny, 1.0)
        logits = logits - torch.log(-torch.log(uniform))   # + Gumbel(0, 1) noise
    index = logits.argmax(dim=-1, keepdim=True)
    hard = torch.zeros_like(logits).scatter_(-1, index, 1.0)
    if not sample:
        return hard.to(scores.dtype)
    soft = torch.softmax(logits, dim=-1)
    return (hard - soft.detach() + soft).to(scores.dtype)   # forward: hard; backward: soft


class Attention(nn.Module, ABC):
    """Scores between each query and each source state, then what every score shares: the
    local window, top-k, the normaliser (or hard attention) and the context vectors.

    A score is a subclass (below), named in ``SCORES``: its parameters (``init_score``), the
    query-independent work on the source states, done once per sentence (``precompute``),
    and the scores themselves (``score``). ``equal_sizes``: it compares queries and source
    states component by component, so both need one size. ``make_attention`` builds one by
    its name.
    """

    equal_sizes: ClassVar[bool] = False

    def __init__(self, query_dim: int, value_dim: int, normalizer: str = "softmax", attn_dim: int = 256,
                 window: int = 0, top_k: int = 0, hard: bool = False) -> None:
        super().__init__()
        if hard and normalizer != "softmax":
            raise ValueError(f"hard attention samples from the softmax of the scores, not from {normalizer}")
        self.normalize = NORMALIZERS[normalizer]
        self.window = window
        self.top_k = top_k
        self.hard = hard
        self.init_score(query_dim, value_dim, attn_dim)  # before the window's layers: the order the seed draws them
        if window > 0:  # local-p: p_t = (length - 1) * sigmoid(v_p^T tanh(W_p h_t))
            self.position = nn.Sequential(nn.Linear(query_dim, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1))

    def init_score(self, query_dim: int, value_dim: int, attn_dim: int) -> None:
        """The score's own parameters (none by default)."""

    def precompute(self, values: Tensor) -> Tensor | None:
        """Query-independent keys from the source states [batch, src_len, value_dim] (None: the score needs none)."""
        return None

    @abstractmethod
    def score(self, query: Tensor, values: Tensor, keys: Tensor | None) -> Tensor:
        """query: [batch, queries, query_dim], values: [batch, src_len, value_dim], keys: ``precompute(values)``
        -> scores [batch, queries, src_len]."""

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
        keys: ``precompute(values)``, or None to compute them here; mask: [batch, src_len].
        Returns context [..., value_dim] and weights [..., src_len]."""
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query
        scores = self.score(q, values, self.precompute(values) if keys is None else keys)
        full_mask = mask.unsqueeze(1).expand_as(scores)
        if self.window > 0:
            scores, full_mask = self._local_window(q, scores, mask)
        if self.top_k > 0:
            full_mask = top_k_mask(scores, full_mask, self.top_k)
        if self.hard:
            weights = hard_weights(scores, full_mask, sample=self.training)
        else:
            weights = self.normalize(scores, full_mask)                             # [batch, queries, src_len]
        context = torch.bmm(weights.to(values.dtype), values)                       # [batch, queries, value_dim]
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)


class Additive(Attention):
    """v^T tanh(W_q q + W_k h): Bahdanau's; Luong's "concat" is the same form."""

    def init_score(self, query_dim: int, value_dim: int, attn_dim: int) -> None:
        self.key_proj = nn.Linear(value_dim, attn_dim, bias=False)
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=True)
        self.energy = nn.Linear(attn_dim, 1, bias=False)

    def precompute(self, values: Tensor) -> Tensor:
        return self.key_proj(values)

    def score(self, query: Tensor, values: Tensor, keys: Tensor) -> Tensor:
        hidden = torch.tanh(keys.unsqueeze(1) + self.query_proj(query).unsqueeze(2))  # [b, q, s, attn_dim]
        return self.energy(hidden).squeeze(-1)


class General(Attention):
    """q^T W h."""

    def init_score(self, query_dim: int, value_dim: int, attn_dim: int) -> None:
        self.key_proj = nn.Linear(value_dim, query_dim, bias=False)

    def precompute(self, values: Tensor) -> Tensor:
        return self.key_proj(values)

    def score(self, query: Tensor, values: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


class Dot(Attention):
    """q . h."""

    equal_sizes = True

    def score(self, query: Tensor, values: Tensor, keys: Tensor | None) -> Tensor:
        return torch.bmm(query, values.transpose(1, 2))


class ScaledDot(Attention):
    """q . h / sqrt(d)."""

    equal_sizes = True

    def score(self, query: Tensor, values: Tensor, keys: Tensor | None) -> Tensor:
        return torch.bmm(query, values.transpose(1, 2)) / math.sqrt(query.size(-1))


class Cosine(Attention):
    """s * cos(q, h), with a learned scale s, starting at 10 (cosines alone are too flat)."""

    equal_sizes = True

    def init_score(self, query_dim: int, value_dim: int, attn_dim: int) -> None:
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def precompute(self, values: Tensor) -> Tensor:
        return F.normalize(values, dim=-1)

    def score(self, query: Tensor, values: Tensor, keys: Tensor) -> Tensor:
        return self.log_scale.exp() * torch.bmm(F.normalize(query, dim=-1), keys.transpose(1, 2))


class Pearson(Cosine):
    """s * cos(q - mean(q), h - mean(h)): Pearson's correlation of the two vectors' components,
    with a learned scale as the cosine has."""

    def precompute(self, values: Tensor) -> Tensor:
        return super().precompute(values - values.mean(dim=-1, keepdim=True))

    def score(self, query: Tensor, values: Tensor, keys: Tensor) -> Tensor:
        return super().score(query - query.mean(dim=-1, keepdim=True), values, keys)


class Euclidean(Attention):
    """-||q - h||^2 / (2 sqrt(d)): scaled_dot less half the key's squared norm over sqrt(d) (and
    the query's, which no normaliser but sigmoid / max notices)."""

    equal_sizes = True

    def precompute(self, values: Tensor) -> Tensor:
        return values.pow(2).sum(dim=-1)                                              # [batch, src_len]

    def score(self, query: Tensor, values: Tensor, keys: Tensor) -> Tensor:
        # -(|q|^2 - 2 q.h + |h|^2) / (2 sqrt(d)), keys = |h|^2
        distance = query.pow(2).sum(-1, keepdim=True) - 2 * torch.bmm(query, values.transpose(1, 2)) \
            + keys.unsqueeze(1)
        return -distance / (2 * math.sqrt(query.size(-1)))


# Every score by its name (model.attention.score; mt.config.Score lists the same names, since the
# schema may not import the models: tests/test_attention.py checks that the two agree).
SCORES: dict[str, type[Attention]] = {
    "additive": Additive,
    "concat": Additive,
    "dot": Dot,
    "general": General,
    "scaled_dot": ScaledDot,
    "cosine": Cosine,
    "euclidean": Euclidean,
    "pearson": Pearson,
}


def make_attention(query_dim: int, value_dim: int, score: str = "additive", normalizer: str = "softmax",
                   attn_dim: int = 256, window: int = 0, top_k: int = 0, hard: bool = False,
                   scores: Mapping[str, type[Attention]] = SCORES) -> Attention:
    """The attention of the score named ``score`` in ``scores``; the other settings as ``Attention``'s."""
    if score not in scores:
        raise ValueError(f"unknown attention score {score!r}; choose one of {tuple(scores)}")
    kind = scores[score]
    if kind.equal_sizes and query_dim != value_dim:
        raise ValueError(f"the {score} score needs query and source states of one size ({query_dim} != {value_dim})")
    return kind(query_dim, value_dim, normalizer, attn_dim, window, top_k, hard)
