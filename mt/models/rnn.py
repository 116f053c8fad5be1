"""RNN encoder-decoder, with or without attention.

Without attention the decoder sees the source only through one fixed vector, the
encoder's final states, fed at every step (Cho et al., 2014). With attention it gets a
fresh context vector per step, a weighted mean of all encoder states (Bahdanau et al.,
2015), which is what lets it keep up on long sentences.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mt.config import AttentionConfig, AttentionType, RNNConfig
from mt.data.tokenizer import PAD
from mt.models.attention import Attention, make_attention
from mt.models.dropout import Dropout
from mt.models.interface import Seq2SeqModel, TensorDict
from mt.precision import fp32_region

_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNEncoder(nn.Module):
    """Embedding and a (bi)directional GRU/LSTM over packed sequences."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, layers: int,
                 bidirectional: bool, cell: str, dropout: float) -> None:  # hidden_dim: per direction
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.dropout = Dropout(dropout)
        self.rnn = _CELLS[cell](emb_dim, hidden_dim, layers, batch_first=True,
                                bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.layers = layers
        self.directions = 2 if bidirectional else 1
        self.out_dim = hidden_dim * self.directions

    def forward(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """States [batch, src_len, out_dim] and final summary [batch, out_dim]."""
        batch, src_len = src.shape
        lengths = src_mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.dropout(self.embed(src)), lengths, batch_first=True, enforce_sorted=False)
        with fp32_region(src):
            out, final = self.rnn(packed)
        if isinstance(final, tuple):  # LSTM: (h, c)
            final = final[0]
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src_len)
        # final: [layers * directions, batch, hidden] -> top layer, directions concatenated
        top = final.view(self.layers, self.directions, batch, -1)[-1]
        summary = top.transpose(0, 1).reshape(batch, -1)
        return states, summary


class Placement(Enum):
    """Where the decoder reads its context: not at all, before its RNN step (Bahdanau) or after it (Luong)."""
    none = "none"
    bahdanau = "bahdanau"
    luong = "luong"

    @classmethod
    def of(cls, attention: AttentionType) -> Placement:
        """The placement of an attention type; a type this table does not name is an error, not Luong."""
        table = {AttentionType.none: cls.none, AttentionType.bahdanau: cls.bahdanau,
                 AttentionType.luong: cls.luong, AttentionType.luong_local: cls.luong}
        if attention not in table:
            raise ValueError(f"no decoder placement for attention type {attention!r}: add it to Placement.of")
        return table[attention]


class RNNDecoder(nn.Module):
    """A GRU/LSTM decoder in one of three shapes:

    - ``none``: the context is the fixed encoder summary, fed with every input;
    - ``bahdanau``: the context is attention queried by the previous state, fed to the
      RNN; the prediction reads the new state, the context and the input embedding;
    - ``luong``: attention is queried by the new state; the prediction reads the
      attentional hidden state tanh(W_c [c; h]), which with input feeding is also fed
      into the next step.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, layers: int, cell: str,
                 dropout: float, memory_dim: int, attention: Attention | None,
                 placement: Placement = Placement.bahdanau,
                 input_feeding: bool = True) -> None:
        super().__init__()
        if not isinstance(placement, Placement):
            raise TypeError(f"placement must be a Placement, got {placement!r}")
        self.placement = Placement.none if attention is None else placement
        self.input_feeding = input_feeding and self.placement is Placement.luong
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.dropout = Dropout(dropout)
        extra = {Placement.none: memory_dim, Placement.bahdanau: memory_dim,
                 Placement.luong: hidden_dim if self.input_feeding else 0}
        self.rnn = _CELLS[cell](emb_dim + extra[self.placement], hidden_dim, layers, batch_first=True,
                                dropout=dropout if layers > 1 else 0.0)
        self.bridge = nn.Linear(memory_dim, layers * hidden_dim)
        if self.placement is Placement.luong:
            self.combine = nn.Linear(memory_dim + hidden_dim, hidden_dim, bias=False)  # W_c
        else:
            self.readout = nn.Linear(hidden_dim + memory_dim + emb_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, vocab_size)
        self.attention = attention
        self.layers = layers
        self.hidden_dim = hidden_dim
        self.is_lstm = cell == "lstm"

    def init_state(self, summary: Tensor) -> TensorDict:
        hidden = torch.tanh(self.bridge(summary)).view(summary.size(0), self.layers, self.hidden_dim)
        state = {"hidden": hidden}  # [batch, layers, hidden]
        if self.is_lstm:
            state["cell"] = torch.zeros_like(hidden)
        if self.input_feeding:
            state["feed"] = torch.zeros_like(hidden[:, 0])  # [batch, hidden]
        return state

    def _rnn(self, inputs: Tensor, state: TensorDict) -> tuple[Tensor, TensorDict]:
        """inputs: [batch, steps, in_dim] -> outputs [batch, steps, hidden], next state (without feed)."""
        h0 = state["hidden"].transpose(0, 1).contiguous()  # [layers, batch, hidden]
        if self.is_lstm:
            with fp32_region(inputs):  # no emulated bf16 LSTM in oneDNN: see mt.precision
                c0 = state["cell"].transpose(0, 1).contiguous()
                if not torch.is_autocast_enabled(inputs.device.type):
                    inputs, h0, c0 = inputs.float(), h0.float(), c0.float()
                out, (h, c) = self.rnn(inputs, (h0, c0))
            return out, {"hidden": h.transpose(0, 1), "cell": c.transpose(0, 1)}
        out, h = self.rnn(inputs, h0)
        return out, {"hidden": h.transpose(0, 1)}

    def _readout(self, hidden: Tensor, context: Tensor, emb: Tensor) -> Tensor:
        return torch.tanh(self.readout(torch.cat([hidden, context, emb], dim=-1)))

    def _attend(self, query: Tensor, memory: TensorDict) -> tuple[Tensor, Tensor]:
        assert self.attention is not None
        return self.attention(query, memory["states"], memory.get("keys"), memory["mask"])

    def _luong_step(self, emb: Tensor, state: TensorDict, memory: TensorDict) -> tuple[Tensor, TensorDict, Tensor]:
        """One Luong step from the input embedding [batch, emb]: attentional hidden state
        [batch, hidden], next state (with the feed), weights [batch, src_len]."""
        inputs = torch.cat([emb, state["feed"]], dim=-1) if self.input_feeding else emb
        out, new_state = self._rnn(inputs.unsqueeze(1), state)
        context, weights = self._attend(out[:, 0], memory)
        features = torch.tanh(self.combine(torch.cat([context, out[:, 0]], dim=-1)))
        if self.input_feeding:
            new_state["feed"] = features
        return features, new_state, weights

    def _context_step(self, emb: Tensor, state: TensorDict,
                      memory: TensorDict) -> tuple[Tensor, Tensor, TensorDict, Tensor | None]:
        """One step with the context fed to the RNN (fixed, or Bahdanau attention on the
        previous state): RNN output [batch, hidden], context, next state, weights."""
        if self.placement is Placement.bahdanau:
            context, weights = self._attend(state["hidden"][:, -1], memory)   # previous top-layer state
        else:
            context, weights = memory["summary"], None
        out, new_state = self._rnn(torch.cat([emb, context], dim=-1).unsqueeze(1), state)
        return out[:, 0], context, new_state, weights

    def step(self, memory: TensorDict, state: TensorDict, prev: Tensor) -> tuple[Tensor, TensorDict, Tensor | None]:
        emb = self.dropout(self.embed(prev))                                     # [batch, emb]
        if self.placement is Placement.luong:
            features, state, weights = self._luong_step(emb, state, memory)
            return self.output(self.dropout(features)), state, weights
        out, context, state, weights = self._context_step(emb, state, memory)
        return self.output(self.dropout(self._readout(out, context, emb))), state, weights

    def forward(self, memory: TensorDict, state: TensorDict, tgt_in: Tensor,
                features: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits [batch, tgt_len, vocab] (with ``features``, the output
        layer's input) and attention [batch, tgt_len, src_len]."""
        x, weights = self._features(memory, state, tgt_in)
        return x if features else self.output(x), weights

    def _features(self, memory: TensorDict, state: TensorDict, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """The output layer's input [batch, tgt_len, dim], dropout applied, and the attention.

        Where no step depends on an earlier one's attention, the whole target runs in one
        RNN call; otherwise the steps loop, and ``forward`` still runs the output layer once
        over all of them (one large matrix product)."""
        emb = self.dropout(self.embed(tgt_in))                                   # [batch, tgt_len, emb]
        steps = tgt_in.size(1)
        if self.placement is Placement.none:
            context = memory["summary"].unsqueeze(1).expand(-1, steps, -1)
            out, _ = self._rnn(torch.cat([emb, context], dim=-1), state)
            return self.dropout(self._readout(out, context, emb)), None
        if self.placement is Placement.luong and not self.input_feeding:
            out, _ = self._rnn(emb, state)
            context, weights = self._attend(out, memory)
            features = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))
            return self.dropout(features), weights
        if self.placement is Placement.luong:
            features, weights = [], []
            for t in range(steps):
                feat, state, step_weights = self._luong_step(emb[:, t], state, memory)
                features.append(feat)
                weights.append(step_weights)
            return self.dropout(torch.stack(features, 1)), torch.stack(weights, 1)
        outputs, contexts, weights = [], [], []
        for t in range(steps):
            out, context, state, step_weights = self._context_step(emb[:, t], state, memory)
            outputs.append(out)
            contexts.append(context)
            weights.append(step_weights)
        features = self._readout(torch.stack(outputs, 1), torch.stack(contexts, 1), emb)
        return self.dropout(features), torch.stack(weights, 1)


class RNNSeq2Seq(Seq2SeqModel):
    def __init__(self, encoder: RNNEncoder, decoder: RNNDecoder, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.src_vocab_size = src_vocab_size
        self.tgt_vocab_size = tgt_vocab_size

    def encode(self, src: Tensor, src_mask: Tensor) -> TensorDict:
        states, summary = self.encoder(src, src_mask)
        memory = {"states": states, "summary": summary, "mask": src_mask}
        if self.decoder.attention is not None:
            keys = self.decoder.attention.precompute(states)
            if keys is not None:
                memory["keys"] = keys
        return memory

    def init_state(self, memory: TensorDict) -> TensorDict:
        return self.decoder.init_state(memory["summary"])

    def decode_step(self, memory: TensorDict, state: TensorDict, prev: Tensor) -> tuple[Tensor, TensorDict, Tensor | None]:
        return self.decoder.step(memory, state, prev)

    @property
    def output_layer(self) -> nn.Linear:
        return self.decoder.output

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor,
                return_attention: bool = True, features: bool = False) -> tuple[Tensor, Tensor | None]:
        memory = self.encode(src, src_mask)
        out, attention = self.decoder(memory, self.init_state(memory), tgt_in, features)  # attention comes free
        return out, attention if return_attention else None


def build_attention(cfg: AttentionConfig, query_dim: int, value_dim: int) -> Attention | None:
    """The decoder's attention (None for ``type: none``); its score from ``mt.models.attention.SCORES``."""
    if cfg.type is AttentionType.none:
        return None
    window = cfg.window if cfg.type is AttentionType.luong_local else 0
    return make_attention(query_dim, value_dim, cfg.score.value, cfg.normalizer.value, cfg.dim, window, cfg.top_k,
                          cfg.hard)


def build_rnn(cfg: RNNConfig, src_vocab_size: int, tgt_vocab_size: int) -> RNNSeq2Seq:
    encoder = RNNEncoder(src_vocab_size, cfg.emb_dim, cfg.enc_hidden_dim or cfg.hidden_dim, cfg.enc_layers,
                         cfg.bidirectional, cfg.cell.value, cfg.dropout)
    attention = build_attention(cfg.attention, cfg.hidden_dim, encoder.out_dim)
    decoder = RNNDecoder(tgt_vocab_size, cfg.emb_dim, cfg.hidden_dim, cfg.dec_layers, cfg.cell.value, cfg.dropout,
                         encoder.out_dim, attention, Placement.of(cfg.attention.type), cfg.attention.input_feeding)
    return RNNSeq2Seq(encoder, decoder, src_vocab_size, tgt_vocab_size)
