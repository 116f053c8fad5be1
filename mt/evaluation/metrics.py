"""Corpus scores with sacrebleu, overall and by source length.

Scores are computed on detokenized output against raw references, with sacrebleu's
own tokenization, and come with sacrebleu's signature so numbers can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF

from mt.errors import DataError

DEFAULT_BUCKETS = ((1, 10), (11, 20), (21, 30), (31, 40), (41, 10_000))


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
    for low, high in buckets:
        idx = [i for i, s in enumerate(sources) if low <= len(s.split()) <= high]
        if not idx:
            continue
        s = corpus_scores([hypotheses[i] for i in idx], [references[i] for i in idx])
        label = f"{low}-{high}" if high < 10_000 else f"{low}+"
        out.append(BucketScore(label, len(idx), s.bleu, s.chrf))
    return out
