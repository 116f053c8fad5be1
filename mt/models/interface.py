"""The one interface every translation model offers.

Decoding, evaluation, alignment export and plotting talk to a model only through
``encode``, ``init_state``, ``decode_step`` and ``forward``, and never ask which model
they hold. Encoder memories and decoder states are dicts of tensors whose first
dimension is the batch, so beam search can reorder any model's state with
``select_rows`` without knowing what is inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

TensorDict = dict[str, Tensor]


def select_rows(tree: TensorDict, index: Tensor) -> TensorDict:
    """Rows ``index`` of every tensor (dimension 0 is the batch)."""
    return {key: value.index_select(0, index) for key, value in tree.items()}


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
