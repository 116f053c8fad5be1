"""Transformer encoder-decoder (Vaswani et al., 2017) with pre-layer-norm blocks.

Two attention paths share the same weights: ``scaled_dot_product_attention`` where the
weights are not needed (training), and an explicit softmax(QK^T / sqrt(d)) V that
returns them (translation, alignments). ``attention_maps`` gives every layer and
head, ``[batch, layers, heads, tgt_len, src_len]``; the interface's
``[batch, tgt_len, src_len]`` is its reduction by ``attention_reduction``: the mean over
the heads of the last layer (default), over all layers and heads, or one head of one layer
(``one_head``: the head Garg et al. 2019 supervise with word alignments, so that the map
that is trained is the map that translate, align and the heatmaps read).

Translation decodes incrementally: the decoder state holds each layer's self-attention
keys and values so far, and the encoder memory holds each layer's cross-attention keys
and values, computed once per sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mt.config import Positions, TransformerConfig
from mt.data.tokenizer import PAD
from mt.models.dropout import Dropout
from mt.models.dropout import dropout as drop
from mt.models.interface import Seq2SeqModel, TensorDict, pad_cat


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class Embedding(nn.Module):
    """Token embedding scaled by sqrt(d), plus sinusoidal or learned positions."""

    def __init__(self, vocab_size: int, dim: int, max_positions: int, learned: bool, dropout: float,
                 tokens: nn.Embedding | None = None) -> None:
        super().__init__()
        self.tokens = tokens if tokens is not None else nn.Embedding(vocab_size, dim, padding_idx=PAD)
        if tokens is None:
            nn.init.normal_(self.tokens.weight, std=dim ** -0.5)
            with torch.no_grad():
                self.tokens.weight[PAD].zero_()  # as fairseq: with a tied output, PAD gets logit 0
        self.learned = nn.Embedding(max_positions, dim) if learned else None
        if not learned:
            self.register_buffer("table", sinusoidal_positions(max_positions, dim), persistent=False)
        self.scale = math.sqrt(dim)
        self.dropout = Dropout(dropout)
        self.max_positions = max_positions

    def forward(self, ids: Tensor, offset: int | Tensor = 0) -> Tensor:
        """ids: [batch, length] -> [batch, length, dim]; positions start at ``offset``, or for
        one token per row ([batch, 1]) at each row's own ``offset`` ([batch], continuous batching)."""
        table = self.learned.weight if self.learned is not None else self.table
        if isinstance(offset, Tensor):
            if offset.numel() and int(offset.max()) >= self.max_positions:
                raise ValueError(f"sequence of {int(offset.max()) + 1} tokens exceeds "
                                 f"model.max_positions={self.max_positions}")
            positions = table.index_select(0, offset).unsqueeze(1)           # [batch, 1, dim]
        else:
            end = offset + ids.size(1)
            if end > self.max_positions:
                raise ValueError(f"sequence of {end} tokens exceeds model.max_positions={self.max_positions}")
            positions = table[offset:end]
        return self.dropout(self.tokens(ids) * self.scale + positions)


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def _split(self, x: Tensor) -> Tensor:
        """[batch, length, dim] -> [batch, heads, length, head_dim]"""
        return x.view(x.size(0), x.size(1), self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.key_value(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x: [batch, q_len, dim]; k, v: [batch, heads, kv_len, head_dim]; mask: True where a
        key may be attended, broadcastable to [batch, heads, q_len, kv_len]."""
        q = self._split(self.query(x))
        dropout = self.dropout if self.training else 0.0
        if causal:
            allowed = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).tril(k.size(2) - q.size(2))
            mask = allowed if mask is None else mask & allowed
        weights = None
        # The explicit path where the weights are wanted, and for training on a CPU: with
        # dropout SDPA falls back to its math kernel, which draws the mask with bernoulli_;
        # here the mask is mt.models.dropout's (docs/lab/benchmarks.md, issue 35: measured with
        # the preset's dropout; SDPA's flash kernel, taken without dropout, was not measured).
        if need_weights or (self.training and torch.is_grad_enabled() and q.device.type == "cpu"):
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)           # [batch, heads, q_len, kv_len]
            context = torch.matmul(drop(weights, dropout, self.training), v)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(x.size(0), x.size(1), -1)
        return self.out(context), weights if need_weights else None


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, ff_dim), nn.ReLU(), Dropout(dropout), nn.Linear(ff_dim, dim))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, attention_dropout: float,
                 activation_dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, attention_dropout)
        self.ff = FeedForward(dim, ff_dim, activation_dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.attn(h, *self.attn.keys_values(h), mask=mask)[0])
        return x + self.dropout(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, attention_dropout: float,
                 activation_dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, attention_dropout)
        self.cross_attn = MultiHeadAttention(dim, heads, attention_dropout)
        self.ff = FeedForward(dim, ff_dim, activation_dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, self_k: Tensor, self_v: Tensor, cross_k: Tensor, cross_v: Tensor,
                src_mask: Tensor, causal: bool, need_weights: bool,
                self_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """self_k/self_v: keys and values of the target so far, this step's included;
        ``self_mask``: which of them each row may attend (rows that joined later are padded)."""
        x = x + self.dropout(self.self_attn(self.norm1(x), self_k, self_v, mask=self_mask, causal=causal)[0])
        cross, weights = self.cross_attn(self.norm2(x), cross_k, cross_v, mask=src_mask, need_weights=need_weights)
        x = x + self.dropout(cross)
        return x + self.dropout(self.ff(self.norm3(x))), weights


class TransformerSeq2Seq(Seq2SeqModel):
    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, dim: int, heads: int, ff_dim: int,
                 enc_layers: int, dec_layers: int, dropout: float, max_positions: int, learned_positions: bool,
                 tie_output: bool, share_embeddings: bool, reduction: str = "last_layer", reduction_layer: int = -2,
                 reduction_head: int = 0, attention_dropout: float | None = None,
                 activation_dropout: float | None = None) -> None:
        """``dropout`` falls on the embeddings and each block's output; ``attention_dropout`` on the
        attention weights and ``activation_dropout`` after the feed-forward's ReLU (both ``dropout``
        where None)."""
        super().__init__()
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError("shared embeddings need one vocabulary for both sides")
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.max_positions = max_positions
        self.src_embed = Embedding(src_vocab_size, dim, max_positions, learned_positions, dropout)
        self.tgt_embed = Embedding(tgt_vocab_size, dim, max_positions, learned_positions, dropout,
                                   tokens=self.src_embed.tokens if share_embeddings else None)
        rates = (dropout, dropout if attention_dropout is None else attention_dropout,
                 dropout if activation_dropout is None else activation_dropout)
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ff_dim, *rates) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(dim, heads, ff_dim, *rates) for _ in range(dec_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.output = nn.Linear(dim, tgt_vocab_size, bias=False)
        if tie_output:
            self.output.weight = self.tgt_embed.tokens.weight
        self.reduction = reduction
        self.reduction_layer = reduction_layer % dec_layers  # one_head's layer, counted from 0
        self.reduction_head = reduction_head
        self.checkpointing = False  # set_activation_checkpointing
        self.source_dims = {"states": 1, "mask": 1, **{f"cross_{kv}{i}": 2 for i in range(dec_layers) for kv in "kv"}}

    def set_activation_checkpointing(self, on: bool) -> None:
        """Training keeps only each layer's input and recomputes the layer in the backward
        pass (with the same dropout masks): activation memory falls to a layer's worth, at
        the price of a second forward pass through the layers."""
        self.checkpointing = on

    def _run(self, block, *args):
        """``block(*args)``, through activation checkpointing when it is on and gradients flow."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    @staticmethod
    def _decoder_block(layer: DecoderLayer, x: Tensor, cross_k: Tensor, cross_v: Tensor, src_mask: Tensor,
                       wanted: bool) -> tuple[Tensor, Tensor | None]:
        k, v = layer.self_attn.keys_values(layer.norm1(x))
        return layer(x, k, v, cross_k, cross_v, src_mask, True, wanted)

    # -- helpers ---------------------------------------------------------------------
    def _weights_needed(self, layer: int) -> bool:
        if self.reduction == "one_head":
            return layer == self.reduction_layer
        return self.reduction == "all_layers" or layer == len(self.decoder) - 1

    def _reduce(self, maps: list[Tensor]) -> Tensor:
        """Per-layer [batch, heads, tgt, src] (of the layers _weights_needed) -> [batch, tgt, src]."""
        if self.reduction == "one_head":
            return maps[0][:, self.reduction_head]
        return torch.stack(maps, 1).mean(dim=(1, 2))

    def _decode(self, memory: TensorDict, tgt_in: Tensor, need: str) -> tuple[Tensor, list[Tensor]]:
        """Teacher-forced decoder: the output layer's input [batch, tgt_len, dim] and the
        attention maps ``need`` asks for: 'none', 'reduced' (layers the reduction uses) or 'all'."""
        x = self.tgt_embed(tgt_in)
        src_mask = memory["mask"][:, None, None, :]
        maps = []
        for i, layer in enumerate(self.decoder):
            wanted = need == "all" or (need == "reduced" and self._weights_needed(i))
            x, w = self._run(self._decoder_block, layer, x, memory[f"cross_k{i}"], memory[f"cross_v{i}"],
                             src_mask, wanted)
            if w is not None:
                maps.append(w)
        return self.decoder_norm(x), maps

    # -- the model interface ---------------------------------------------------------
    def encode(self, src: Tensor, src_mask: Tensor) -> TensorDict:
        x = self.src_embed(src)
        mask = src_mask[:, None, None, :]                              # [batch, 1, 1, src_len]
        for layer in self.encoder:
            x = self._run(layer, x, mask)
        states = self.encoder_norm(x)
        memory = {"states": states, "mask": src_mask}
        for i, layer in enumerate(self.decoder):                       # cross-attention keys/values, once
            memory[f"cross_k{i}"], memory[f"cross_v{i}"] = layer.cross_attn.keys_values(states)
        return memory

    def init_state(self, memory: TensorDict) -> TensorDict:
        k = memory["cross_k0"]
        empty = k.new_zeros(k.size(0), k.size(1), 0, k.size(3))      # [batch, heads, 0, head_dim]
        return {f"self_{kv}{i}": empty for i in range(len(self.decoder)) for kv in "kv"}

    def decode_step(self, memory: TensorDict, state: TensorDict, prev: Tensor) -> tuple[Tensor, TensorDict, Tensor]:
        # Rows that joined a running search (``join``) are at different steps: their caches are
        # padded at the start, ``self_mask`` [batch, steps] says which entries are theirs, and
        # each row's position is its own count of steps.
        self_mask = state.get("self_mask")
        new_state = {}
        if self_mask is None:
            x = self.tgt_embed(prev.unsqueeze(1), offset=state["self_k0"].size(2))  # [batch, 1, dim]
            attend = None
        else:
            x = self.tgt_embed(prev.unsqueeze(1), offset=self_mask.sum(1))
            self_mask = torch.cat([self_mask, self_mask.new_ones(self_mask.size(0), 1)], dim=1)
            new_state["self_mask"] = self_mask
            attend = self_mask[:, None, None, :]                          # [batch, 1, 1, steps]
        src_mask = memory["mask"][:, None, None, :]
        maps = []
        for i, layer in enumerate(self.decoder):
            k, v = layer.self_attn.keys_values(layer.norm1(x))
            k = torch.cat([state[f"self_k{i}"], k], dim=2)
            v = torch.cat([state[f"self_v{i}"], v], dim=2)
            new_state[f"self_k{i}"], new_state[f"self_v{i}"] = k, v
            x, w = layer(x, k, v, memory[f"cross_k{i}"], memory[f"cross_v{i}"], src_mask, False,
                         self._weights_needed(i), attend)
            if w is not None:
                maps.append(w)
        logits = self.output(self.decoder_norm(x))[:, 0]
        return logits, new_state, self._reduce(maps)[:, 0]

    def join(self, memories: Sequence[TensorDict], states: Sequence[TensorDict]) -> tuple[TensorDict, TensorDict]:
        """The interface's ``join``: sources padded at the end, the self-attention caches at the
        start (each row's steps end at the same column), with ``self_mask`` marking each row's
        own entries. Columns no row uses any more are dropped, and the mask with them once
        every row is at the same step, so the search runs as an ordinary batch again."""
        memory, _ = super().join(memories, [{} for _ in states])
        if len(states) == 1 and "self_mask" not in states[0]:
            return memory, dict(states[0])
        def own(s: TensorDict) -> Tensor:  # [rows, steps]: False, then each row's own steps
            k = s["self_k0"]
            return s["self_mask"] if "self_mask" in s else k.new_ones(k.size(0), k.size(2), dtype=torch.bool)

        state = {key: pad_cat([s[key] for s in states], 2, 0, left=True) for key in states[0] if key != "self_mask"}
        if any("self_mask" in s for s in states) or len({s["self_k0"].size(2) for s in states}) > 1:
            mask = pad_cat([own(s) for s in states], 1, False, left=True)  # [batch, steps]
            first = mask.size(1) - int(mask.sum(1).max())  # columns before the oldest row's first step
            if first:
                mask = mask[:, first:]
                state = {key: value[:, :, first:].contiguous() for key, value in state.items()}
            if not bool(mask.all()):
                state["self_mask"] = mask
        return memory, state

    @property
    def output_layer(self) -> nn.Linear:
        return self.output

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor,
                return_attention: bool = True, features: bool = False) -> tuple[Tensor, Tensor | None]:
        memory = self.encode(src, src_mask)
        x, maps = self._decode(memory, tgt_in, "reduced" if return_attention else "none")
        return x if features else self.output(x), self._reduce(maps) if return_attention else None

    def attention_maps(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Every layer's and head's cross-attention: [batch, layers, heads, tgt_len, src_len]."""
        _, maps = self._decode(self.encode(src, src_mask), tgt_in, "all")
        return torch.stack(maps, 1)


def build_transformer(cfg: TransformerConfig, src_vocab_size: int, tgt_vocab_size: int) -> TransformerSeq2Seq:
    return TransformerSeq2Seq(
        src_vocab_size, tgt_vocab_size, dim=cfg.hidden_dim, heads=cfg.heads, ff_dim=cfg.ff_dim,
        enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, dropout=cfg.dropout,
        max_positions=cfg.max_positions, learned_positions=cfg.positions is Positions.learned,
        tie_output=cfg.tie_output, share_embeddings=cfg.share_embeddings,
        reduction=cfg.attention_reduction.value, reduction_layer=cfg.alignment_layer,
        reduction_head=cfg.alignment_head, attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout)
