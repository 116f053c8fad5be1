"""Model construction from a ``ModelConfig``: the only place that knows the variants."""

from __future__ import annotations

from mt.config import Arch, AttentionConfig, AttentionType, ModelConfig, Positions
from mt.models.attention import Attention
from mt.models.interface import Seq2SeqModel, TensorDict, select_rows
from mt.models.rnn import Placement, RNNDecoder, RNNEncoder, RNNSeq2Seq
from mt.models.transformer import TransformerSeq2Seq

__all__ = ["Seq2SeqModel", "TensorDict", "build_model", "select_rows"]


def build_attention(cfg: AttentionConfig, query_dim: int, value_dim: int) -> Attention | None:
    if cfg.type is AttentionType.none:
        return None
    window = cfg.window if cfg.type is AttentionType.luong_local else 0
    return Attention(query_dim, value_dim, cfg.score.value, cfg.normalizer.value, cfg.dim, window, cfg.top_k, cfg.hard)


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2SeqModel:
    if cfg.arch is Arch.rnn:
        encoder = RNNEncoder(src_vocab_size, cfg.emb_dim, cfg.enc_hidden_dim or cfg.hidden_dim, cfg.enc_layers,
                             cfg.bidirectional, cfg.cell.value, cfg.dropout)
        attention = build_attention(cfg.attention, cfg.hidden_dim, encoder.out_dim)
        placement = Placement.of(cfg.attention.type)
        decoder = RNNDecoder(tgt_vocab_size, cfg.emb_dim, cfg.hidden_dim, cfg.dec_layers, cfg.cell.value,
                             cfg.dropout, encoder.out_dim, attention, placement, cfg.attention.input_feeding)
        return RNNSeq2Seq(encoder, decoder, src_vocab_size, tgt_vocab_size)
    if cfg.arch is Arch.transformer:
        return TransformerSeq2Seq(
            src_vocab_size, tgt_vocab_size, dim=cfg.hidden_dim, heads=cfg.heads, ff_dim=cfg.ff_dim,
            enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, dropout=cfg.dropout,
            max_positions=cfg.max_positions, learned_positions=cfg.positions is Positions.learned,
            tie_output=cfg.tie_output, share_embeddings=cfg.share_embeddings,
            reduction=cfg.attention_reduction.value, reduction_layer=cfg.alignment_layer,
            reduction_head=cfg.alignment_head)
    raise AssertionError(f"unhandled architecture {cfg.arch}")
