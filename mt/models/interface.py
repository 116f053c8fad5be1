"""The one interface every translation model offers.

Decoding, evaluation, alignment export and plotting talk to a model only through
``encode``, ``init_state``, ``decode_step`` and ``forward``, and never ask which model
they hold. Encoder memories and decoder states are dicts of tensors whose first
dimension is the batch, so beam search can reorder any model's state with
``select_rows`` without knowing what is inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

TensorDict = dict[str, Tensor]


def select_rows(tree: TensorDict, index: Tensor) -> TensorDict:
    """Rows ``index`` of every tensor (dimension 0 is the batch)."""
    return {key: value.index_select(0, index) for key, value in tree.items()}


def pad_cat(tensors: Sequence[Tensor], dim: int, value: float | bool = 0, left: bool = False) -> Tensor:
    """Tensors stacked along the batch (dimension 0), each padded with ``value`` along ``dim``
    (at its end, or its start with ``left``) to the longest."""
    size = max(t.size(dim) for t in tensors)
    padded = []
    for t in tensors:
        if t.size(dim) < size:
            shape = list(t.shape)
            shape[dim] = size - t.size(dim)
            fill = t.new_full(shape, value)
            t = torch.cat([fill, t] if left else [t, fill], dim=dim)
        padded.append(t)
    return torch.cat(padded, dim=0)


class Seq2SeqModel(nn.Module, ABC):
    """Base of all encoder-decoder models.

    Attention weights are part of every answer: ``[batch, tgt_len, src_len]`` from
    ``forward`` and ``[batch, src_len]`` from ``decode_step``, each row summing to one
    over real source tokens and zero on padding; ``None`` for a model without
    attention.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    max_positions: int | None = None  # longest source or target it can read (None: no limit)
    # memory entry -> its source-length dimension (the others have none), for ``join``
    source_dims: ClassVar[dict[str, int]] = {"states": 1, "keys": 1, "mask": 1}

    @abstractmethod
    def encode(self, src: Tensor, src_mask: Tensor) -> TensorDict:
        """Memory of a source batch. src, src_mask: [batch, src_len]; must hold ``mask``."""

    @abstractmethod
    def init_state(self, memory: TensorDict) -> TensorDict:
        """Decoder state before the first target token."""

    @abstractmethod
    def decode_step(self, memory: TensorDict, state: TensorDict, prev: Tensor) -> tuple[Tensor, TensorDict, Tensor | None]:
        """One target position. prev: [batch] previous token ids.

        Returns logits [batch, vocab], the next state, attention [batch, src_len] or None.
        """

    def join(self, memories: Sequence[TensorDict], states: Sequence[TensorDict]) -> tuple[TensorDict, TensorDict]:
        """Several running searches as one, their rows in order (continuous batching: sentences
        join a search under way, each at its own step; one search alone is trimmed after rows
        left it). Memories are padded to the longest source along ``source_dims`` (the mask
        with False, so padding gets no weight) and cut to the longest left; this
        default suits a state with no time dimension (an RNN's); a model whose state grows with
        the steps (a Transformer's caches) overrides it."""
        if len(memories) == 1:
            memory, state = dict(memories[0]), dict(states[0])
        else:
            memory = {key: pad_cat([m[key] for m in memories], self.source_dims[key], False if key == "mask" else 0)
                      if key in self.source_dims else torch.cat([m[key] for m in memories]) for key in memories[0]}
            state = {key: torch.cat([s[key] for s in states]) for key in states[0]}
        used = int(memory["mask"].sum(1).max())  # masks are True then padding: the longest source left
        if used < memory["mask"].size(1):  # columns no row reads are dropped
            memory = {key: value.narrow(self.source_dims[key], 0, used).contiguous() if key in self.source_dims else value
                      for key, value in memory.items()}
        return memory, state

    @property
    def output_layer(self) -> nn.Linear | None:
        """The last layer (features -> logits), if the model can stop before it:
        ``forward(..., features=True)`` then returns its input, so training can run that
        layer fused with the loss a slice at a time (``mt.training.fused_loss``)."""
        return None

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor,
                return_attention: bool = True, features: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits [batch, tgt_len, vocab] and attention [batch, tgt_len, src_len].

        ``return_attention=False`` lets a model skip work that only the weights need
        (training). ``features=True`` (where ``output_layer`` is not None) gives the output
        layer's input [batch, tgt_len, dim] in place of the logits. The default runs
        ``decode_step`` over the target; models override it with a faster path that must
        give the same numbers (the tests check this).
        """
        if features:
            raise ValueError(f"forward(features=True) needs a model with an output_layer; "
                             f"{type(self).__name__} has none (ask for the logits instead)")
        memory = self.encode(src, src_mask)
        state = self.init_state(memory)
        logits, attn = [], []
        for t in range(tgt_in.size(1)):
            step_logits, state, step_attn = self.decode_step(memory, state, tgt_in[:, t])
            logits.append(step_logits)
            attn.append(step_attn)
        stacked = torch.stack(attn, dim=1) if return_attention and attn and attn[0] is not None else None
        return torch.stack(logits, dim=1), stacked

    def attention_maps(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor | None:
        """Every attention map the model has, teacher-forced: [batch, layers, heads, tgt_len, src_len].

        One layer and one head for an RNN; a Transformer overrides it with all of its own.
        """
        _, attn = self.forward(src, src_mask, tgt_in)
        return attn[:, None, None] if attn is not None else None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
