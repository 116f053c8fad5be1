"""Token-count batches from length-sorted buckets, and padding.

Sorting by length before cutting batches keeps padding small; counting tokens (not
sentences) keeps the work per update even between short and long sentences. Batches
are shuffled between epochs with a seed, and ``rank`` / ``world_size`` shard them for
multi-process training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mt.data.tokenizer import BOS, EOS, PAD


class TokenRows(Sequence):
    """Rows of subword ids stored flat: ``ids`` one after another, row i from ``offsets[i]`` to
    ``offsets[i + 1]``. In memory for a small corpus, memory-mapped from the encoded-corpus cache
    for a large one (mt.data.encoded), where every process reads the same pages. A row is a
    NumPy view, not a Python list: 2 or 4 bytes a token instead of about 36."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        self.ids = ids
        self.offsets = offsets
        self.lengths = np.diff(offsets).astype(np.int32)  # [rows], what batching reads

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> TokenRows:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # an int gives one row; a slice or index array gives a list of rows
        if isinstance(i, (int, np.integer)):
            if i < 0:
                i += len(self)
            return self.ids[self.offsets[i]:self.offsets[i + 1]]
        return [self[j] for j in range(len(self))[i]] if isinstance(i, slice) else [self[j] for j in i]

    def tolist(self) -> list[list[int]]:
        return [self[i].tolist() for i in range(len(self))]

    def __eq__(self, other: object) -> bool:  # row by row, against TokenRows or lists of ids
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(np.array_equal(self[i], np.asarray(other[i])) for i in range(len(self)))

    __hash__ = None  # type: ignore[assignment]


@dataclass
class EncodedCorpus:
    """Subword ids of a parallel corpus, without BOS/EOS: the pairs kept for training."""

    src: TokenRows
    tgt: TokenRows
    skipped_empty: int = 0
    skipped_long: int = 0
    skipped_ratio: int = 0
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # input index of each kept pair
    links: list | None = None  # train.alignment_loss: each pair's (target piece, source piece) links

    def __len__(self) -> int:
        return len(self.src)


def keep_mask(src_lens: np.ndarray, tgt_lens: np.ndarray, max_len: int | None,
              max_ratio: float) -> tuple[np.ndarray, int, int, int]:
    """Which pairs to keep: both sides non-empty, at most ``max_len`` subwords (the target with
    its EOS), and (``max_ratio`` > 0) lengths within that ratio of each other (counted with one
    added, so very short pairs are not dropped for a ratio of 1 to 3). Returns the mask and the
    counts skipped as empty, long and out of ratio."""
    empty = (src_lens == 0) | (tgt_lens == 0)
    long = ~empty & ((src_lens > max_len) | (tgt_lens + 1 > max_len)) if max_len is not None \
        else np.zeros_like(empty)
    ratio = ~empty & ~long & (np.maximum(src_lens, tgt_lens) + 1 > max_ratio * (np.minimum(src_lens, tgt_lens) + 1)) \
        if max_ratio else np.zeros_like(empty)
    return ~(empty | long | ratio), int(empty.sum()), int(long.sum()), int(ratio.sum())


def encode_pairs(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], max_len: int | None = None,
                 max_ratio: float = 0.0) -> EncodedCorpus:
    """The pairs ``keep_mask`` keeps, held in memory (validation sets, tests, small corpora)."""
    src_lens = np.fromiter((len(s) for s in src_ids), dtype=np.int64, count=len(src_ids))
    tgt_lens = np.fromiter((len(t) for t in tgt_ids), dtype=np.int64, count=len(tgt_ids))
    keep, empty, long, ratio = keep_mask(src_lens, tgt_lens, max_len, max_ratio)
    kept = np.flatnonzero(keep)
    return EncodedCorpus(TokenRows.from_lists([src_ids[i] for i in kept]),
                         TokenRows.from_lists([tgt_ids[i] for i in kept]), empty, long, ratio, kept)


@dataclass
class Batch:
    src: Tensor       # [batch, src_len] subword ids, PAD-padded
    src_mask: Tensor  # [batch, src_len] True on real tokens
    tgt_in: Tensor    # [batch, tgt_len] BOS y1 .. yn
    tgt_out: Tensor   # [batch, tgt_len] y1 .. yn EOS
    n_tgt_tokens: int
    align: Tensor | None = None  # [batch, tgt_len, src_len] gold attention rows (train.alignment_loss)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.src_mask.to(device), self.tgt_in.to(device),
                     self.tgt_out.to(device), self.n_tgt_tokens,
                     None if self.align is None else self.align.to(device))


def pad(seqs: Sequence[Sequence[int]], prefix: Sequence[int] = (), suffix: Sequence[int] = ()) -> Tensor:
    """[batch, max_len] tensor of the sequences, each wrapped in prefix/suffix, PAD-padded."""
    lengths = [len(s) for s in seqs]
    before, after = len(prefix), len(suffix)
    out = np.full((len(seqs), max(lengths) + before + after), PAD, dtype=np.int64)
    if before:
        out[:, :before] = prefix
    for row, (seq, n) in enumerate(zip(seqs, lengths)):
        out[row, before:before + n] = seq
        if after:
            out[row, before + n:before + n + after] = suffix
    return torch.from_numpy(out)


def gold_attention(links: Sequence[np.ndarray], tgt_len: int, src_len: int, shift: bool = False) -> Tensor:
    """[batch, tgt_len, src_len] target distributions: each supervised row sums to one, the
    others are zero. Row t is the step that predicts target piece t; with ``shift`` piece t's
    links go to row t + 1, the step that reads piece t as its input (and so knows which word
    it aligns: Shift-Att, Chen et al. 2020), and row 0 (BOS in) is not supervised."""
    gold = torch.zeros(len(links), tgt_len, src_len)
    for row, pairs in enumerate(links):
        if len(pairs):
            index = torch.from_numpy(pairs.astype(np.int64))
            gold[row, index[:, 0] + int(shift), index[:, 1]] = 1.0
    return gold / gold.sum(-1, keepdim=True).clamp(min=1.0)


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None,
            links: Sequence | None = None, shift_links: bool = False) -> Batch:
    """A padded batch; without ``tgt`` only the source side is filled; ``links`` (piece
    links of each pair) add the gold attention for alignment supervision (``shift_links``:
    see gold_attention)."""
    src_t = pad(src)
    if tgt is None:
        empty = torch.zeros((len(src), 0), dtype=torch.long)
        return Batch(src_t, src_t != PAD, empty, empty, 0)
    tgt_in = pad(tgt, prefix=(BOS,))
    tgt_out = pad(tgt, suffix=(EOS,))
    align = None if links is None else gold_attention(links, tgt_out.size(1), src_t.size(1), shift_links)
    return Batch(src_t, src_t != PAD, tgt_in, tgt_out, int((tgt_out != PAD).sum()), align)


class Batches(Sequence):
    """Batches of corpus indices: each a NumPy view into one index array, so a corpus of
    millions of pairs costs 8 bytes a pair rather than a Python list each."""

    def __init__(self, order: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.order, self.starts, self.ends = order, starts, ends

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k):  # a batch, or a list of batches for a slice
        if isinstance(k, slice):
            return [self[j] for j in range(len(self))[k]]
        return self.order[self.starts[k]:self.ends[k]]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(np.array_equal(a, b) for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]


def _greedy_starts(sizes: np.ndarray, max_tokens: int) -> list[int]:
    """Where each batch starts in ``sizes`` (the longer side of each pair, in batching order):
    rows are added while (rows x longest) stays within ``max_tokens``, a row alone always fits.
    Walks runs of equal sizes, not rows, so millions of pairs (a few thousand runs) take
    milliseconds; the result is the row-by-row greedy cut exactly (tests/test_batching.py)."""
    if len(sizes) == 0:
        return []
    edges = np.flatnonzero(np.diff(sizes)) + 1
    run_starts = np.concatenate(([0], edges))
    run_sizes = sizes[run_starts].tolist()
    run_lengths = np.diff(np.append(run_starts, len(sizes))).tolist()
    starts: list[int] = []
    position = count = longest = 0  # position: rows consumed; count, longest: the open batch
    for size, left in zip(run_sizes, run_lengths):
        while left:
            if count == 0:
                starts.append(position)
                count, longest = 1, size
                position, left = position + 1, left - 1
                continue
            longest_then = max(longest, size)
            room = max_tokens // longest_then - count
            if room <= 0:
                count = longest = 0
                continue
            take = min(room, left)
            count, longest = count + take, longest_then
            position, left = position + take, left - take
    return starts


def token_batches(
    src_lens: Sequence[int] | np.ndarray,
    tgt_lens: Sequence[int] | np.ndarray,
    max_tokens: int,
    seed: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Batches:
    """Index lists of batches whose padded size (rows x longest side) is at most
    ``max_tokens``. With ``seed``: ties broken and batch order shuffled by it; without,
    batches come in length order (for decoding). Each rank gets an equal share."""
    src_arr = np.asarray(src_lens, dtype=np.int64)
    tgt_arr = np.asarray(tgt_lens, dtype=np.int64) + 1  # BOS/EOS
    rng = np.random.default_rng(seed) if seed is not None else None
    tiebreak = rng.random(len(src_arr)) if rng is not None else np.arange(len(src_arr))
    order = np.lexsort((tiebreak, tgt_arr, src_arr))
    sizes = np.maximum(src_arr, tgt_arr)[order]
    begin = np.asarray(_greedy_starts(sizes, max_tokens), dtype=np.int64)
    end = np.append(begin[1:], len(sizes)).astype(np.int64)
    if rng is not None:
        perm = rng.permutation(len(begin))
        begin, end = begin[perm], end[perm]
    if world_size > 1:
        usable = len(begin) - len(begin) % world_size
        begin, end = begin[rank:usable:world_size], end[rank:usable:world_size]
    return Batches(order, begin, end)
