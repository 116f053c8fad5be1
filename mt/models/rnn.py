"""RNN encoder-decoder, with or without attention.

Without attention the decoder sees the source only through one fixed vector, the
encoder's final states, fed at every step (Cho et al., 2014). With attention it gets a
fresh context vector per step, a weighted mean of all encoder states (Bahdanau et al.,
2015), which is what lets it keep up on long sentences.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mt.data.tokenizer import PAD
from mt.models.attention import Attention
from mt.models.interface import Seq2SeqModel, TensorDict

_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNEncoder(nn.Module):
    """Embedding and a (bi)directional GRU/LSTM over packed sequences."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, layers: int,
                 bidirectional: bool, cell: str, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
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
        out, final = self.rnn(packed)
        if isinstance(final, tuple):  # LSTM: (h, c)
            final = final[0]
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src_len)
        # final: [layers * directions, batch, hidden] -> top layer, directions concatenated
        top = final.view(self.layers, self.directions, batch, -1)[-1]
        summary = top.transpose(0, 1).reshape(batch, -1)
        return states, summary


class RNNDecoder(nn.Module):
    """A GRU/LSTM decoder whose input at each step is the previous target embedding and
    a context vector: fixed (no attention) or computed from the previous decoder state
    (Bahdanau). The prediction reads the new state, the context and the embedding."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, layers: int, cell: str,
                 dropout: float, memory_dim: int, attention: Attention | None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        self.rnn = _CELLS[cell](emb_dim + memory_dim, hidden_dim, layers, batch_first=True,
                                dropout=dropout if layers > 1 else 0.0)
        self.bridge = nn.Linear(memory_dim, layers * hidden_dim)
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
        return state

    def _rnn(self, inputs: Tensor, state: TensorDict) -> tuple[Tensor, TensorDict]:
        """inputs: [batch, steps, in_dim] -> outputs [batch, steps, hidden], next state."""
        h0 = state["hidden"].transpose(0, 1).contiguous()  # [layers, batch, hidden]
        if self.is_lstm:
            out, (h, c) = self.rnn(inputs, (h0, state["cell"].transpose(0, 1).contiguous()))
            return out, {"hidden": h.transpose(0, 1), "cell": c.transpose(0, 1)}
        out, h = self.rnn(inputs, h0)
        return out, {"hidden": h.transpose(0, 1)}

    def _logits(self, hidden: Tensor, context: Tensor, emb: Tensor) -> Tensor:
        features = torch.tanh(self.readout(torch.cat([hidden, context, emb], dim=-1)))
        return self.output(self.dropout(features))

    def _context(self, memory: TensorDict, state: TensorDict) -> tuple[Tensor, Tensor | None]:
        if self.attention is None:
            return memory["summary"], None
        query = state["hidden"][:, -1]  # top layer of the previous state
        return self.attention(query, memory["states"], memory.get("keys"), memory["mask"])

    def step(self, memory: TensorDict, state: TensorDict, prev: Tensor) -> tuple[Tensor, TensorDict, Tensor | None]:
        emb = self.dropout(self.embed(prev))                      # [batch, emb]
        context, weights = self._context(memory, state)            # [batch, memory_dim]
        out, state = self._rnn(torch.cat([emb, context], dim=-1).unsqueeze(1), state)
        return self._logits(out[:, 0], context, emb), state, weights

    def forward(self, memory: TensorDict, state: TensorDict, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits [batch, tgt_len, vocab] and attention [batch, tgt_len, src_len]."""
        emb = self.dropout(self.embed(tgt_in))                     # [batch, tgt_len, emb]
        if self.attention is None:
            # The context does not change, so the whole target runs in one RNN call.
            context = memory["summary"].unsqueeze(1).expand(-1, tgt_in.size(1), -1)
            out, _ = self._rnn(torch.cat([emb, context], dim=-1), state)
            return self._logits(out, context, emb), None
        outputs, contexts, weights = [], [], []
        for t in range(tgt_in.size(1)):
            context, step_weights = self._context(memory, state)
            out, state = self._rnn(torch.cat([emb[:, t], context], dim=-1).unsqueeze(1), state)
            outputs.append(out[:, 0])
            contexts.append(context)
            weights.append(step_weights)
        # The output layer runs once over all steps: one large matrix product.
        logits = self._logits(torch.stack(outputs, 1), torch.stack(contexts, 1), emb)
        return logits, torch.stack(weights, 1)


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

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        memory = self.encode(src, src_mask)
        return self.decoder(memory, self.init_state(memory), tgt_in)
