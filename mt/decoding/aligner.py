"""Word alignments of whole files from a model's attention.

Each pair is force-decoded (the reference, or the model's own translation), so every
model and search give one attention row per target piece plus the EOS step. Pieces are
merged to the whitespace words of the text (``mt.evaluation.alignment.merge_to_words``)
and a rule picks the links. Shift-Att reads target word j from the step where it is the
decoder's input (Chen et al. 2020).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mt.data.tokenizer import UNK, Tokenizer
from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translation, Translator
from mt.errors import ConfigError, MTError
from mt.evaluation.alignment import Link, argmax_links, merge_to_words, shift_rows, threshold_links

RULES = ("argmax", "threshold")


@dataclass(frozen=True)
class AlignOptions:
    """How attention becomes word links: ``rule`` argmax (each target word to its heaviest
    source word) or threshold (every pair whose weight reaches ``threshold``); ``shift_att``
    reads target word j from the step where it is the decoder's input (None: as the model was
    trained, ``train.alignment_shift``, so a model supervised that way is read the way it
    learned); ``layer`` / ``head``
    read one cross-attention map of a Transformer (``head`` None: the mean of the layer's)."""

    rule: str = "argmax"
    threshold: float = 0.5
    shift_att: bool | None = None
    layer: int | None = None
    head: int | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"unknown alignment rule '{self.rule}': use one of {', '.join(RULES)}")
        if self.head is not None and self.layer is None:
            raise ConfigError("--head needs --layer (the layer whose head to read)")


ARGMAX = AlignOptions()


@dataclass
class AlignedPair:
    source: str
    target: str
    src_pieces: list[str] = field(default_factory=list)
    tgt_pieces: list[str] = field(default_factory=list)   # without </s>
    attention: np.ndarray | None = None       # [len(tgt_pieces) + 1, len(src_pieces)]: pieces, then the EOS step
    src_words: list[str] = field(default_factory=list)
    tgt_words: list[str] = field(default_factory=list)
    word_attention: np.ndarray | None = None  # [len(tgt_words), len(src_words)], the rows the rule read
    links: set[Link] = field(default_factory=set)  # (source word, target word), 0-based
    unknown_src: int = 0  # words with a piece outside the model's vocabulary (<unk>)
    unknown_tgt: int = 0
    src_word_index: list[int] = field(default_factory=list)  # the word of each source piece
    tgt_word_index: list[int] = field(default_factory=list)  # the word of each target piece
    tgt_ids: list[int] = field(default_factory=list)         # the target pieces' ids
    shift_att: bool = False  # word_attention and links read each word from the step that reads it (Shift-Att)

    def as_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "src_tokens": self.src_pieces,
                "tgt_tokens": self.tgt_pieces,
                "attention": None if self.attention is None else self.attention.round(5).tolist(),
                "src_words": self.src_words, "tgt_words": self.tgt_words,
                "word_attention": None if self.word_attention is None else self.word_attention.round(5).tolist(),
                "links": sorted(self.links)}


def align_pairs(translator: Translator, sources: Sequence[str], targets: Sequence[str] | None = None,
                search: SearchConfig | None = None, options: AlignOptions | None = None, *, chunk: int = 512,
                progress: bool = False, **settings: Any) -> list[AlignedPair]:
    """One ``AlignedPair`` per source line, in order. Without ``targets`` the model's own
    translation (as ``search`` finds it) is aligned. ``settings``: fields of SearchConfig or
    AlignOptions by name, for calls from Python (``align_pairs(t, src, ref, rule="threshold")``)."""
    own = {f.name for f in fields(AlignOptions)}
    options = AlignOptions(**{**(options or ARGMAX).__dict__, **{k: v for k, v in settings.items() if k in own}})
    options = as_trained(translator, options)
    search = SearchConfig.of(search, **{k: v for k, v in settings.items() if k not in own})
    if targets is not None and len(targets) != len(sources):
        raise MTError(f"{len(sources)} source lines but {len(targets)} target lines: they must pair line by line")
    src_tok, tgt_tok = translator.src_tokenizer, translator.tgt_tokenizer
    pairs: list[AlignedPair] = []
    bar = tqdm(total=len(sources), unit="sent", disable=not progress, desc="aligning")
    for start in range(0, len(sources), chunk):
        src_lines = list(sources[start:start + chunk])
        src_ids = src_tok.encode(src_lines)
        if targets is None:
            translations = translator.translate(src_lines, search)
            tgt_lines = [t.text for t in translations]
            tgt_ids = [t.tgt_ids for t in translations]
        else:
            tgt_lines = list(targets[start:start + chunk])
            tgt_ids = tgt_tok.encode(tgt_lines)
        forced = translator.force_decode_ids(src_ids, tgt_ids, search.max_tokens, options.layer, options.head,
                                             search.max_input_len)
        for source, target, s_ids, t_ids, (_, attention) in zip(src_lines, tgt_lines, src_ids, tgt_ids, forced):
            pairs.append(_pair(src_tok, tgt_tok, source, target, s_ids, t_ids, attention, options))
        bar.update(len(src_lines))
    bar.close()
    return pairs


def translation_pair(translator: Translator, translation: Translation, options: AlignOptions = ARGMAX) -> AlignedPair:
    """A translation with the attention its search kept, as an ``AlignedPair`` (pieces, words,
    matrices, links): what ``mt serve`` answers, in ``mt align --json``'s shape."""
    src_ids = translator.src_tokenizer.encode([translation.source])[0][: len(translation.src_pieces)]
    if len(translation.tgt_pieces) > len(translation.tgt_ids):  # finished: the EOS step Shift-Att needs is there
        options = as_trained(translator, options)
    return _pair(translator.src_tokenizer, translator.tgt_tokenizer, translation.source, translation.text, src_ids,
                 translation.tgt_ids, translation.attention, options)


def as_trained(translator: Translator, options: AlignOptions) -> AlignOptions:
    """``options`` with an unset ``shift_att`` resolved to how the model's attention was trained."""
    if options.shift_att is not None:
        return options
    return replace(options, shift_att=translator.alignment_shift)


def _pair(src_tok: Tokenizer, tgt_tok: Tokenizer, source: str, target: str, src_ids: list[int],
          tgt_ids: list[int], attention: np.ndarray | None, options: AlignOptions) -> AlignedPair:
    pair = AlignedPair(source, target, src_tok.id_to_piece(src_ids), tgt_tok.id_to_piece(tgt_ids), attention,
                       Tokenizer.normalize(source).split(), Tokenizer.normalize(target).split())
    src_words = src_tok.word_index(source, src_ids)
    tgt_words = tgt_tok.word_index(target, tgt_ids)
    pair.src_word_index, pair.tgt_word_index, pair.tgt_ids = src_words, tgt_words, list(tgt_ids)
    pair.shift_att = bool(options.shift_att)
    pair.unknown_src = len({w for w, i in zip(src_words, src_ids) if i == UNK})
    pair.unknown_tgt = len({w for w, i in zip(tgt_words, tgt_ids) if i == UNK})
    if attention is None or not src_ids or not tgt_ids:
        return pair
    rows = torch.from_numpy(attention)
    rows = shift_rows(rows) if options.shift_att else rows[: len(tgt_ids)]
    words = merge_to_words(rows, src_words, tgt_words)
    pair.word_attention = words.numpy()
    pair.links = links_by_rule(words, options)
    return pair


def links_by_rule(words: torch.Tensor, options: AlignOptions) -> set[Link]:
    """The links ``options.rule`` reads from a word matrix ``[tgt_words, src_words]``."""
    return argmax_links(words) if options.rule == "argmax" else threshold_links(words, options.threshold)
