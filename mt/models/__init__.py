"""Model construction from a ``ModelConfig``: each architecture, its config and its builder, in
``ARCHITECTURES``; nothing else here knows the variants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mt.config import Arch, ArchConfig, ModelConfig, RNNConfig, TransformerConfig
from mt.models.interface import Seq2SeqModel, TensorDict, select_rows
from mt.models.rnn import build_rnn
from mt.models.transformer import build_transformer

__all__ = ["ARCHITECTURES", "Seq2SeqModel", "TensorDict", "build_model", "select_rows"]

# A new architecture: its Arch name, its config (mt.config, with ARCH_CONFIGS, which the start-up
# checks read: tests check that it and this table agree) and its builder, one entry here.
ARCHITECTURES: dict[Arch, tuple[type[ArchConfig], Callable[[Any, int, int], Seq2SeqModel]]] = {
    Arch.rnn: (RNNConfig, build_rnn),
    Arch.transformer: (TransformerConfig, build_transformer),
}


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2SeqModel:
    config, build = ARCHITECTURES[cfg.arch]
    return build(config.of(cfg), src_vocab_size, tgt_vocab_size)
