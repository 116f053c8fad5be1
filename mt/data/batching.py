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


@dataclass
class EncodedCorpus:
    """Subword ids of a parallel corpus, without BOS/EOS."""

    src: list[list[int]]
    tgt: list[list[int]]
    skipped_empty: int = 0
    skipped_long: int = 0
    skipped_ratio: int = 0
    kept: list[int] = field(default_factory=list)  # the index in the input of each kept pair
    links: list | None = None  # train.alignment_loss: each pair's (target piece, source piece) links

    def __len__(self) -> int:
        return len(self.src)


def encode_pairs(src_ids: list[list[int]], tgt_ids: list[list[int]], max_len: int | None = None,
                 max_ratio: float = 0.0) -> EncodedCorpus:
    """Keeps pairs that have both sides non-empty, at most ``max_len`` subwords, and
    (``max_ratio`` > 0) lengths within that ratio of each other (counted with one added,
    so very short pairs are not dropped for a ratio of 1 to 3)."""
    keep_src, keep_tgt, kept = [], [], []
    empty = long = ratio = 0
    for n, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        if not s or not t:
            empty += 1
        elif max_len is not None and (len(s) > max_len or len(t) + 1 > max_len):
            long += 1
        elif max_ratio and max(len(s), len(t)) + 1 > max_ratio * (min(len(s), len(t)) + 1):
            ratio += 1
        else:
            keep_src.append(s)
            keep_tgt.append(t)
            kept.append(n)
    return EncodedCorpus(keep_src, keep_tgt, empty, long, ratio, kept)


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
    length = max(len(s) for s in seqs) + len(prefix) + len(suffix)
    out = torch.full((len(seqs), length), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        full = [*prefix, *seq, *suffix]
        out[row, : len(full)] = torch.tensor(full, dtype=torch.long)
    return out


def gold_attention(links: Sequence[np.ndarray], tgt_len: int, src_len: int) -> Tensor:
    """[batch, tgt_len, src_len] target distributions: each supervised row sums to one, the
    others are zero."""
    gold = torch.zeros(len(links), tgt_len, src_len)
    for row, pairs in enumerate(links):
        if len(pairs):
            index = torch.from_numpy(pairs.astype(np.int64))
            gold[row, index[:, 0], index[:, 1]] = 1.0
    return gold / gold.sum(-1, keepdim=True).clamp(min=1.0)


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None,
            links: Sequence | None = None) -> Batch:
    """A padded batch; without ``tgt`` only the source side is filled; ``links`` (piece
    links of each pair) add the gold attention for alignment supervision."""
    src_t = pad(src)
    if tgt is None:
        empty = torch.zeros((len(src), 0), dtype=torch.long)
        return Batch(src_t, src_t != PAD, empty, empty, 0)
    tgt_in = pad(tgt, prefix=(BOS,))
    tgt_out = pad(tgt, suffix=(EOS,))
    align = None if links is None else gold_attention(links, tgt_out.size(1), src_t.size(1))
    return Batch(src_t, src_t != PAD, tgt_in, tgt_out, int((tgt_out != PAD).sum()), align)


def token_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    max_tokens: int,
    seed: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> list[list[int]]:
    """Index lists of batches whose padded size (rows x longest side) is at most
    ``max_tokens``. With ``seed``: ties broken and batch order shuffled by it; without,
    batches come in length order (for decoding). Each rank gets an equal share."""
    src_arr = np.asarray(src_lens)
    tgt_arr = np.asarray(tgt_lens) + 1  # BOS/EOS
    rng = np.random.default_rng(seed) if seed is not None else None
    tiebreak = rng.random(len(src_arr)) if rng is not None else np.arange(len(src_arr))
    order = np.lexsort((tiebreak, tgt_arr, src_arr))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for idx in order.tolist():
        size = max(int(src_arr[idx]), int(tgt_arr[idx]))
        if current and max(longest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(idx)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if rng is not None:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    if world_size > 1:
        usable = len(batches) - len(batches) % world_size
        batches = batches[rank:usable:world_size]
    return batches
