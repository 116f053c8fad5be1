"""Is one system better than another on this test set? Paired bootstrap resampling.

sacrebleu's paired bootstrap (Koehn 2004, with MultEval's p-value) for each system against a
baseline, and a paired interval of the BLEU gap inside any subset of the sentences (a
length bucket), from sentence statistics so a resample costs a sum. Seeded: the same seed
gives the same figures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from mt.errors import ConfigError
from mt.evaluation.metrics import bleu_from_statistics, bleu_statistics


@dataclass
class Significance:
    """A model against the baseline: sacrebleu's paired bootstrap (p-value: how often a
    resample shows no gain) and the 95% interval of the model's BLEU (mean +- ci)."""

    p_value: float | None
    bleu_mean: float
    bleu_ci: float
    chrf_p_value: float | None = None


@contextmanager
def _sacrebleu_seed(seed: int) -> Iterator[None]:
    """sacrebleu's resampling reads its seed from SACREBLEU_SEED."""
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = old


def check_seed(seed: int) -> None:
    """sacrebleu's paired test reads a seed of 0 as "no seed" (fresh entropy at every call), so
    the same command would give other p-values each time: only seeds from 1 are taken."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 1:
        raise ConfigError(f"the resampling seed must be a whole number from 1 (sacrebleu reads 0 as 'no seed', "
                          f"so p-values would change from run to run), got {seed!r}: e.g. --seed 12345")


def paired_bootstrap(systems: dict[str, list[str]], references: list[str], baseline: str,
                     samples: int = 1000, seed: int = 12345) -> dict[str, Significance]:
    """sacrebleu's paired bootstrap of every system against ``baseline`` (BLEU and chrF)."""
    check_seed(seed)
    named = [(baseline, systems[baseline])] + [(n, h) for n, h in systems.items() if n != baseline]
    quiet = logging.getLogger("sacrebleu")  # it narrates each step at INFO
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with _sacrebleu_seed(seed):
            test = PairedTest(named, {"BLEU": BLEU(), "chrF": CHRF()}, [references], test_type="bs",
                              n_samples=samples)
            _, results = test()
    finally:
        quiet.setLevel(level)
    out = {}
    for i, name in enumerate(results["System"]):
        bleu, chrf = results["BLEU"][i], next(v for k, v in results.items() if k.startswith("chrF"))[i]
        out[name] = Significance(bleu.p_value, round(bleu.mean, 2), round(bleu.ci, 2), chrf.p_value)
    return out


def gap_interval(hyps: list[str], base: list[str], references: list[str], samples: int,
                  seed: int) -> tuple[float, float, float]:
    """95% interval of BLEU(hyps) - BLEU(base) over paired resamples of the sentences, and the
    share of resamples where the gap is not positive (a one-sided p-value). Uses sacrebleu's
    sentence statistics so one resample costs a sum, not a re-tokenization."""
    check_seed(seed)
    stats, base_stats = bleu_statistics(hyps, references), bleu_statistics(base, references)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hyps), size=(samples, len(hyps)))
    gaps = np.array([bleu_from_statistics(stats[i].sum(0)) - bleu_from_statistics(base_stats[i].sum(0)) for i in idx])
    low, high = np.percentile(gaps, [2.5, 97.5])
    return float(low), float(high), float((gaps <= 0).mean())
