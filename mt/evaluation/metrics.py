"""Corpus scores with sacrebleu, overall and by source length, and the entropy of attention.

Scores are computed on detokenized output against raw references, with sacrebleu's
own tokenization, and come with sacrebleu's signature so numbers can be compared.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

from mt.errors import DataError, MTError

OPEN_END = 10_000  # the upper bound of the last length bucket: "41+"
DEFAULT_EDGES = (10, 20, 30, 40)


def length_buckets(edges: Sequence[int] = DEFAULT_EDGES) -> list[tuple[int, int]]:
    """Source-length buckets in words from their upper bounds: (10, 20) -> 1-10, 11-20, 21+."""
    edges = list(edges)
    if not edges or edges != sorted(set(edges)) or edges[0] < 1 or edges[-1] >= OPEN_END:
        raise MTError(f"length buckets {edges}: give increasing upper bounds in words, e.g. 10,20,30,40")
    lows = [1] + [e + 1 for e in edges]
    return [*zip(lows, edges), (lows[-1], OPEN_END)]


DEFAULT_BUCKETS = tuple(length_buckets())


def bucket_label(low: int, high: int) -> str:
    return f"{low}-{high}" if high < OPEN_END else f"{low}+"


def bucket_members(sources: Sequence[str], buckets: Sequence[tuple[int, int]]) -> list[tuple[str, list[int]]]:
    """(label, indices of the sentences in it) for each bucket that holds any sentence."""
    lengths = [len(s.split()) for s in sources]
    out = []
    for low, high in buckets:
        idx = [i for i, n in enumerate(lengths) if low <= n <= high]
        if idx:
            out.append((bucket_label(low, high), idx))
    return out


@dataclass
class Scores:
    bleu: float
    chrf: float
    sentences: int
    bleu_signature: str
    chrf_signature: str

    def as_dict(self) -> dict:
        return asdict(self)


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must pair line by line")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return Scores(round(b.score, 2), round(c.score, 2), len(hypotheses), str(bleu.get_signature()),
                  str(chrf.get_signature()))


@dataclass
class BucketScore:
    bucket: str   # "11-20": source length in words
    sentences: int
    bleu: float
    chrf: float


def scores_by_length(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str],
                     buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS) -> list[BucketScore]:
    """BLEU and chrF of sentences grouped by source length in whitespace words; empty
    buckets are left out."""
    out = []
    for label, idx in bucket_members(sources, buckets):
        s = corpus_scores([hypotheses[i] for i in idx], [references[i] for i in idx])
        out.append(BucketScore(label, len(idx), s.bleu, s.chrf))
    return out


@functools.lru_cache(maxsize=1)
def _bleu() -> BLEU:
    """sacrebleu's BLEU, with the two private methods mt reads sentence statistics through
    (the only private sacrebleu API mt uses; the dependency is pinned to the range checked)."""
    metric = BLEU()
    for name in ("_extract_corpus_statistics", "_compute_score_from_stats"):
        if not hasattr(metric, name):
            raise MTError(f"sacrebleu {sacrebleu.__version__} lacks BLEU.{name}, which mt's bootstrap reads: "
                          "install the range mt was checked with, pip install 'sacrebleu>=2.4,<2.7'")
    return metric


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Each sentence's BLEU statistics (n-gram matches and totals, lengths): [sentences, 4n+2].
    A subset's corpus BLEU is ``bleu_from_statistics`` of its rows' sum, no re-tokenizing."""
    return np.array(_bleu()._extract_corpus_statistics(list(hypotheses), [list(references)]), dtype=np.float64)


def bleu_from_statistics(summed: Iterable[float]) -> float:
    """Corpus BLEU of statistics summed over sentences (see ``bleu_statistics``)."""
    return _bleu()._compute_score_from_stats(list(summed)).score


def attention_entropy(matrices: Iterable[np.ndarray | None]) -> float | None:
    """Mean entropy (nats) of the rows of the attention matrices, None when there are none:
    low for sharp alignments, high for attention spread over the source. Rows that do not
    sum to one (sigmoid gates, max normalisation) are read as the distribution of their
    weights renormalised to sum to one: how spread the attention is, whatever its total;
    an all-zero row has no distribution and is left out."""
    total, rows = 0.0, 0
    for m in matrices:
        if m is None or not m.size:
            continue
        w = np.asarray(m, dtype=np.float64)
        sums = w.sum(axis=1, keepdims=True)
        some = sums[:, 0] > 0
        w = w[some] / sums[some]
        p = np.clip(w, 1e-12, 1.0)
        total += float(-(p * np.log(p)).sum(axis=1).sum())
        rows += p.shape[0]
    return total / rows if rows else None
