"""Alignment-supervised attention (Garg et al., 2019, "Jointly Learning to Align and
Translate with Transformer Models"): beside the translation loss, the attention rows are
pulled towards word alignments of the training pairs made by a statistical aligner
(eflomal, fast_align, GIZA++). Attention read as alignment is then much closer to what
people mark, at little cost in BLEU.

The given links are between whitespace words; the model attends between subword pieces.
Each target piece of word j is linked to every source piece of the source words linked to
j, and its gold distribution spreads evenly over them. Target pieces whose word has no
link, and the EOS step, are not supervised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from mt.data.tokenizer import Tokenizer
from mt.errors import DataError
from mt.evaluation.aer import parse_pharaoh

PieceLinks = np.ndarray  # [n_links, 2] int32: (target piece, source piece), 0-based


def piece_links(word_links: set[tuple[int, int]], src_word_of_piece: Sequence[int],
                tgt_word_of_piece: Sequence[int]) -> PieceLinks:
    """(target piece, source piece) pairs from (source word, target word) links."""
    src_pieces: dict[int, list[int]] = {}
    for piece, word in enumerate(src_word_of_piece):
        src_pieces.setdefault(word, []).append(piece)
    tgt_pieces: dict[int, list[int]] = {}
    for piece, word in enumerate(tgt_word_of_piece):
        tgt_pieces.setdefault(word, []).append(piece)
    pairs = [(t, s) for i, j in word_links for t in tgt_pieces.get(j, ()) for s in src_pieces.get(i, ())]
    return np.array(sorted(set(pairs)), dtype=np.int32).reshape(-1, 2)


def training_links(sources: Sequence[str], targets: Sequence[str], alignments: Sequence[str],
                   src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                   src_tok: Tokenizer, tgt_tok: Tokenizer, origin: str = "the alignments",
                   line_numbers: Sequence[int] | None = None) -> list[PieceLinks]:
    """Piece links of every training pair. A link naming a word the sentence does not have
    means the file belongs to other text: a one-line error, not silent misalignment."""
    out = []
    numbers = line_numbers or range(1, len(alignments) + 1)
    for n, src, tgt, line, s_ids, t_ids in zip(numbers, sources, targets, alignments, src_ids, tgt_ids):
        links = parse_pharaoh(line, where=f"{origin}, line {n}: ").sure
        src_words, tgt_words = src_tok.word_index(src, s_ids), tgt_tok.word_index(tgt, t_ids)
        n_src, n_tgt = (max(src_words) + 1 if src_words else 0), (max(tgt_words) + 1 if tgt_words else 0)
        bad = next(((i, j) for i, j in links if i >= n_src or j >= n_tgt), None)
        if bad is not None:
            raise DataError(f"{origin}, line {n}: link {bad[0]}-{bad[1]} but the pair has {n_src} source and "
                            f"{n_tgt} target words: the file must align the training pairs, in their order, "
                            "0-based source-target")
        out.append(piece_links(links, src_words, tgt_words))
    return out


def alignment_loss(attention: Tensor, gold: Tensor) -> Tensor:
    """Summed cross-entropy of the attention rows against the gold rows (zero rows add
    nothing). attention, gold: [batch, tgt_len, src_len]."""
    log_attention = attention.float().clamp(min=1e-9).log()
    return -(gold * log_attention).sum()
