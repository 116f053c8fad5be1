"""Attention read as word alignment: whole files, or one translation, force-decoded by any model.

Each pair is force-decoded (the reference, or the model's own translation), so every
model and search give one attention row per target piece plus the EOS step.

Attention comes as a matrix ``[target pieces, source pieces]`` whose rows sum to one
(softmax, sparsemax, hard attention) or hold independent gates in [0, 1] (the sigmoid and max
normalisers). Subword pieces are merged to words first (``merge_to_words``: sum over a word's
source pieces, then by default the mean of its target pieces' rows, so a target-word row still
sums to one; or their max, or its first piece's row; a gated word can exceed one, which no rule
minds); then a rule picks the links: ``argmax_links`` (each
target word to its heaviest source word, Luong et al. 2015) or ``threshold_links``.
``shift_rows`` is Shift-Att (Chen et al. 2020): target word j is read from the decoder step
where j is the input, not the output. ``grow_diag_final_and`` symmetrises the links of two
models trained in opposite directions. Their measure against gold is ``mt.evaluation.aer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from mt.data.tokenizer import UNK, Tokenizer
from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translation, Translator
from mt.errors import ConfigError, MTError
from mt.evaluation.aer import Link

RULES = ("argmax", "threshold")
# How a target word's pieces' rows become the word's row (the source side always sums a word's
# pieces: the weight the step gives the word): their mean, their max, or the first piece's row.
MERGES = ("mean", "max", "first")


@dataclass(frozen=True)
class AlignOptions:
    """How attention becomes word links: ``rule`` argmax (each target word to its heaviest
    source word) or threshold (every pair whose weight reaches ``threshold``); ``shift_att``
    reads target word j from the step where it is the decoder's input (None: as the model was
    trained, ``train.alignment_shift``, so a model supervised that way is read the way it
    learned); ``layer`` / ``head``
    read one cross-attention map of a Transformer (``head`` None: the mean of the layer's);
    ``merge`` how a target word's pieces' rows become its row (``MERGES``)."""

    rule: str = "argmax"
    threshold: float = 0.5
    shift_att: bool | None = None
    layer: int | None = None
    head: int | None = None
    merge: str = "mean"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"unknown alignment rule '{self.rule}': use one of {', '.join(RULES)}")
        if self.merge not in MERGES:
            raise ConfigError(f"unknown merge of subword rows '{self.merge}': use one of {', '.join(MERGES)}")
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
    words = merge_to_words(rows, src_words, tgt_words, options.merge)
    pair.word_attention = words.numpy()
    pair.links = links_by_rule(words, options)
    return pair


def links_by_rule(words: torch.Tensor, options: AlignOptions) -> set[Link]:
    """The links ``options.rule`` reads from a word matrix ``[tgt_words, src_words]``."""
    return argmax_links(words) if options.rule == "argmax" else threshold_links(words, options.threshold)


def merge_to_words(attention: Tensor, src_words: Sequence[int], tgt_words: Sequence[int],
                   merge: str = "mean") -> Tensor:
    """[target words, source words] from [target pieces, source pieces]: sum over a source
    word's pieces; over a target word's pieces the mean of their rows (``merge="mean"``), their
    element-wise max (``"max"``: a word linked wherever one of its pieces attends), or the row
    of its first piece (``"first"``). Columns beyond ``len(src_words)`` (the source EOS) are
    dropped, so rows sum to one only up to what EOS received."""
    attention = attention[: len(tgt_words), : len(src_words)].float()
    n_src, n_tgt = max(src_words) + 1, max(tgt_words) + 1
    src_index = torch.tensor(src_words)
    tgt_index = torch.tensor(tgt_words)
    by_src = torch.zeros(attention.size(0), n_src).index_add_(1, src_index, attention)  # [tgt pieces, src words]
    if merge == "max":
        rows = tgt_index.unsqueeze(1).expand_as(by_src)
        return torch.zeros(n_tgt, n_src).scatter_reduce_(0, rows, by_src, "amax", include_self=False)
    if merge == "first":  # a word without pieces (none in the model's text) keeps a zero row, as with mean and max
        first: dict[int, int] = {}
        for piece, word in enumerate(tgt_words):
            first.setdefault(word, piece)
        words = torch.zeros(n_tgt, n_src)
        words[list(first)] = by_src[list(first.values())]
        return words
    if merge != "mean":
        raise ConfigError(f"unknown merge of subword rows '{merge}': use one of {', '.join(MERGES)}")
    summed = torch.zeros(n_tgt, n_src).index_add_(0, tgt_index, by_src)
    counts = torch.bincount(tgt_index, minlength=n_tgt).clamp(min=1).unsqueeze(1)
    return summed / counts


def shift_rows(attention: Tensor) -> Tensor:
    """Shift-Att: row j of the result is the attention of the step that reads target token j
    as its input, i.e. the step that predicts token j + 1 (the last token's is the EOS step).
    ``attention`` holds one row per predicted token, the EOS step last: [n + 1, src]."""
    if attention.size(0) < 2:
        raise MTError("Shift-Att needs the attention of the EOS step too: align with forced decoding of a reference "
                      "or a finished translation")
    return attention[1:]


def argmax_links(words: Tensor) -> set[Link]:
    """Each target word to its heaviest source word: links ``(source, target)``. A row with
    no weight on any source word (hard or sparse attention that went all to the source EOS)
    links nothing rather than word 0."""
    if words.numel() == 0:
        return set()
    best = words.max(dim=1)
    return {(int(i), j) for j, (i, w) in enumerate(zip(best.indices.tolist(), best.values.tolist())) if w > 0}


def threshold_links(words: Tensor, threshold: float) -> set[Link]:
    """Every (source, target) pair whose weight is at least ``threshold``."""
    return {(int(i), int(j)) for j, i in (words >= threshold).nonzero().tolist()}


_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def grow_diag_final_and(forward: set[Link], backward: set[Link]) -> set[Link]:
    """Symmetrises two alignments of one sentence pair, both as (source, target) links
    (Koehn et al. 2003, as in Moses): start from their intersection, grow into neighbouring
    (diagonals included) links of the union that cover an unaligned word, then add links of
    either direction whose two words are both still unaligned."""
    union = forward | backward
    links = set(forward & backward)
    src_done = {i for i, _ in links}
    tgt_done = {j for _, j in links}
    n_src = max((i for i, _ in union), default=-1) + 1
    n_tgt = max((j for _, j in union), default=-1) + 1
    added = True
    while added:
        added = False
        for i in range(n_src):
            for j in range(n_tgt):
                if (i, j) not in links:
                    continue
                for di, dj in _NEIGHBOURS:
                    cand = (i + di, j + dj)
                    if cand in union and cand not in links and (cand[0] not in src_done or cand[1] not in tgt_done):
                        links.add(cand)
                        src_done.add(cand[0])
                        tgt_done.add(cand[1])
                        added = True
    for direction in (forward, backward):
        for i, j in sorted(direction):
            if (i, j) not in links and i not in src_done and j not in tgt_done:
                links.add((i, j))
                src_done.add(i)
                tgt_done.add(j)
    return links


# How two directions' links of a pair become one set (mt align --backward-model --symmetrize):
# intersection keeps what both agree on (precision), union everything (recall), grow-diag-final-and
# starts from the intersection and grows towards the union.
SYMMETRISATIONS = {"grow-diag-final-and": grow_diag_final_and,
                   "intersection": lambda forward, backward: forward & backward,
                   "union": lambda forward, backward: forward | backward}
