"""Attention mechanisms for the RNN decoder.

Each mechanism scores one query per sentence against the source states, normalises
the scores over the real (unpadded) source positions and returns the context vector
with the weights. Work that does not depend on the query (the key projection of the
additive score) is done once per sentence in ``precompute``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dimension with exact zeros where ``mask`` is False.

    scores: [batch, ..., src_len]; mask: [batch, src_len], True on real tokens.
    """
    mask = mask.view(mask.size(0), *([1] * (scores.dim() - 2)), mask.size(-1))
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class Attention(nn.Module, ABC):
    """Base class: ``precompute`` once per sentence, then ``forward`` per query."""

    def precompute(self, values: Tensor) -> Tensor | None:
        """Query-independent keys from the source states [batch, src_len, value_dim]."""
        return None

    @abstractmethod
    def forward(self, query: Tensor, values: Tensor, keys: Tensor | None, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query: [batch, query_dim]; values: [batch, src_len, value_dim].

        Returns context [batch, value_dim] and weights [batch, src_len].
        """


class BahdanauAttention(Attention):
    """Additive attention (Bahdanau et al., 2015): v^T tanh(W_q q + W_k h_j)."""

    def __init__(self, query_dim: int, value_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(value_dim, attn_dim, bias=False)
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=True)
        self.energy = nn.Linear(attn_dim, 1, bias=False)

    def precompute(self, values: Tensor) -> Tensor:
        return self.key_proj(values)  # [batch, src_len, attn_dim]

    def forward(self, query: Tensor, values: Tensor, keys: Tensor | None, mask: Tensor) -> tuple[Tensor, Tensor]:
        if keys is None:
            keys = self.precompute(values)
        hidden = torch.tanh(keys + self.query_proj(query).unsqueeze(1))  # [batch, src_len, attn_dim]
        scores = self.energy(hidden).squeeze(-1)                           # [batch, src_len]
        weights = masked_softmax(scores, mask)
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)       # [batch, value_dim]
        return context, weights
