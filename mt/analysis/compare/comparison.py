"""Several models on one test set: what attention buys, with its uncertainty.

``mt compare`` and ``mt demo`` go through here. Every model translates the same sentences
with the same search settings (models gone since are stood in for by their records,
``mt.analysis.compare.saved_systems``); scores are sacrebleu's, and each model is compared with a
baseline by paired bootstrap resampling (``mt.evaluation.significance``, seeded), overall
and within each source-length bucket. ``mt.analysis.compare.report`` writes the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mt.analysis.compare.entries import ModelEntry, median_seed, name_runs, seed_groups
from mt.analysis.compare.saved_systems import SavedSystem, check_fits, example_of, test_set_fingerprint, translations_of
from mt.decoding.attention_alignment import align_pairs
from mt.decoding.search import GREEDY, SearchConfig
from mt.decoding.translator import Translation
from mt.errors import DataError, MTError
from mt.evaluation.aer import GoldLinks, alignment_error_rate
from mt.evaluation.metrics import DEFAULT_BUCKETS, Scores, attention_entropy, bucket_members, corpus_scores
from mt.evaluation.significance import Significance, check_seed, gap_interval, paired_bootstrap
from mt.export import open_translator


@dataclass
class BucketResult:
    bucket: str
    sentences: int
    bleu: dict[str, float]                     # model -> BLEU
    gap: dict[str, float] = field(default_factory=dict)       # model -> BLEU minus the baseline's
    gap_low: dict[str, float] = field(default_factory=dict)   # 95% interval of the gap (paired bootstrap)
    gap_high: dict[str, float] = field(default_factory=dict)
    p_value: dict[str, float] = field(default_factory=dict)


@dataclass
class Comparison:
    entries: list[ModelEntry]
    baseline: str
    beam: int
    sentences: int
    scores: dict[str, Scores]
    significance: dict[str, Significance]
    buckets: list[BucketResult]
    sentences_per_s: dict[str, float]
    entropy: dict[str, float]                  # mean entropy (nats) of attention rows
    aer: dict[str, float]
    translations: dict[str, list]              # model -> Translation per sentence
    sources: list[str]
    references: list[str]
    bootstrap_samples: int
    seed: int
    search: dict = field(default_factory=dict)
    saved: dict[str, str] = field(default_factory=dict)   # model -> the record it was read from (not translated now)

    def rows(self) -> list[dict]:
        """One dict per model: the scores table as data."""
        out = []
        for e in self.entries:
            s, sig = self.scores[e.name], self.significance.get(e.name)
            out.append({
                "model": e.name, "variant": e.variant, "parameters": e.parameters, "seed": e.seed,
                "epochs": e.epochs, "best_epoch": e.best_epoch, "train_seconds": e.train_seconds,
                "tokens_per_s": e.tokens_per_s, "valid_bleu": e.valid_bleu,
                "test_bleu": s.bleu, "test_chrf": s.chrf,
                "bleu_95ci": f"{sig.bleu_mean:.2f} +- {sig.bleu_ci:.2f}" if sig else None,
                "p_value_vs_baseline": sig.p_value if sig else None,
                "sentences_per_s": round(self.sentences_per_s[e.name], 2),
                "attention_entropy": round(self.entropy[e.name], 3) if e.name in self.entropy else None,
                "aer": round(self.aer[e.name], 2) if e.name in self.aer else None,
                "model_dir": e.model_dir,
            })
        return out


@dataclass
class _Outputs:
    """What each model gave on the test set, filled in model by model."""

    translations: dict[str, list[Translation]] = field(default_factory=dict)
    scores: dict[str, Scores] = field(default_factory=dict)
    speed: dict[str, float] = field(default_factory=dict)
    entropy: dict[str, float] = field(default_factory=dict)
    aer: dict[str, float] = field(default_factory=dict)


def compare_models(entries: Sequence[ModelEntry], sources: Sequence[str], references: Sequence[str], *,
                   search: SearchConfig = GREEDY, baseline: str | None = None,
                   buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS, gold: Sequence[GoldLinks] | None = None,
                   samples: int = 1000, seed: int = 12345, device: str = "auto", precision: str = "auto",
                   progress: bool = True, saved: Sequence[SavedSystem] = ()) -> Comparison:
    """Translate with every model, score, test against the baseline, and measure the attention.
    ``saved``: records of models translated before (``mt.analysis.compare.saved_systems``), set beside
    them after them. The default baseline is the first model without attention (else the first
    model); where it has siblings that differ only by seed, the one of median test BLEU among them."""
    check_seed(seed)
    sources, references = list(sources), list(references)
    if len(sources) != len(references):
        raise DataError(f"{len(sources)} source lines but {len(references)} references: they must pair line by line")
    if not sources:
        raise DataError("the test set is empty: pass files with one sentence a line")
    if gold is not None and len(gold) != len(sources):
        raise DataError(f"{len(gold)} gold alignments for {len(sources)} sentences: pass the test set's own")
    record = search.as_record()
    fingerprint = test_set_fingerprint(sources, references)
    for system in saved:
        check_fits(system, fingerprint, len(sources), record)
    to_translate = list(entries)
    entries = to_translate + [system.entry for system in saved]
    if saved:
        name_runs(entries)
    if not entries:
        raise MTError("no models to compare: pass model directories or --systems records")
    names = [e.name for e in entries]
    baseline = baseline_name(baseline, entries)
    out = _Outputs()
    _translate(to_translate, sources, references, gold, search, device, precision, progress, out)
    for system in saved:
        _read_record(system, sources, references, out)
    baseline = baseline or _median_baseline(entries, out.scores)
    texts = {n: [t.text for t in out.translations[n]] for n in names}
    significance = paired_bootstrap(texts, references, baseline, samples, seed) if len(names) > 1 else {}
    results = _by_length(texts, sources, references, baseline, buckets, samples, seed)
    return Comparison(list(entries), baseline, search.beam, len(sources), out.scores, significance, results,
                      out.speed, out.entropy, out.aer, out.translations, sources, references, samples, seed, record,
                      {s.entry.name: s.path for s in saved})


def _translate(entries: Sequence[ModelEntry], sources: list[str], references: list[str],
               gold: Sequence[GoldLinks] | None, search: SearchConfig, device: str, precision: str,
               progress: bool, out: _Outputs) -> None:
    """Each model's translations, scores, speed, attention entropy and (with gold) AER."""
    bar = tqdm(total=len(entries) * len(sources), unit="sent", disable=not progress, desc="translating")
    for e in entries:
        translator = open_translator(e.model_dir, device, precision)
        e.parameters = translator.model.num_parameters()
        start = time.perf_counter()
        translated: list[Translation] = []
        for i in range(0, len(sources), 500):
            translated += translator.translate(sources[i:i + 500], search)
            bar.update(len(sources[i:i + 500]))
        out.speed[e.name] = len(sources) / max(time.perf_counter() - start, 1e-9)
        out.translations[e.name] = translated
        out.scores[e.name] = corpus_scores([t.text for t in translated], references)
        h = attention_entropy(t.attention for t in translated)
        if h is not None:
            out.entropy[e.name] = h
            if gold is not None:
                pairs = align_pairs(translator, sources, references)
                out.aer[e.name] = alignment_error_rate(gold, [p.links for p in pairs]).aer
        bar.set_postfix_str(f"{e.name}: BLEU {out.scores[e.name].bleu:.2f}")
    bar.close()


def _read_record(system: SavedSystem, sources: list[str], references: list[str], out: _Outputs) -> None:
    name = system.entry.name
    out.translations[name] = translations_of(system, sources)
    out.scores[name] = corpus_scores(system.hypotheses, references)
    out.speed[name] = system.sentences_per_s
    if system.entropy is not None:
        out.entropy[name] = system.entropy
    if system.aer is not None:
        out.aer[name] = system.aer


def baseline_name(baseline: str | None, entries: Sequence[ModelEntry]) -> str | None:
    """The entry ``baseline`` names: by its name in the tables, or by its model or run directory
    as given on the command line (names of runs with the same preset carry their settings)."""
    if baseline is None or baseline in (names := [e.name for e in entries]):
        return baseline
    given = Path(baseline).expanduser().resolve()
    for e in entries:
        model = Path(e.model_dir).expanduser().resolve()
        if given in (model, model.parent):
            return e.name
    raise MTError(f"--baseline '{baseline}' is none of the models: give one of their directories or names "
                  f"({'; '.join(repr(n) for n in names)})")


def _median_baseline(entries: list[ModelEntry], scores: dict[str, Scores]) -> str:
    """The first model without attention (else the first), or rather its median seed."""
    first = next((e for e in entries if not e.attention), entries[0])
    siblings = next(m for m in seed_groups(entries).values() if first in m)
    return median_seed(siblings, scores).name


def _by_length(texts: dict[str, list[str]], sources: list[str], references: list[str], baseline: str,
               buckets: Sequence[tuple[int, int]], samples: int, seed: int) -> list[BucketResult]:
    """BLEU of every model in each length bucket, and each one's gap to the baseline there
    with its paired-bootstrap interval."""
    results = []
    for label, idx in bucket_members(sources, buckets):
        refs = [references[i] for i in idx]
        bucket = BucketResult(label, len(idx), {n: corpus_scores([t[i] for i in idx], refs).bleu
                                                for n, t in texts.items()})
        for n in texts:
            if n == baseline:
                continue
            bucket.gap[n] = round(bucket.bleu[n] - bucket.bleu[baseline], 2)
            lo, hi, p = gap_interval([texts[n][i] for i in idx], [texts[baseline][i] for i in idx], refs,
                                     samples, seed)
            bucket.gap_low[n], bucket.gap_high[n], bucket.p_value[n] = round(lo, 2), round(hi, 2), round(p, 4)
        results.append(bucket)
    return results


def pick_example(comparison: Comparison, low: int = 12, high: int = 25) -> int:
    """A test sentence of middling length that every attention model translated."""
    for i, s in enumerate(comparison.sources):
        if low <= len(s.split()) <= high:
            return i
    return max(range(len(comparison.sources)), key=lambda i: len(comparison.sources[i].split()))


def systems_to_save(comparison: Comparison, example: int | None = None) -> list[SavedSystem]:
    """Records of the models this comparison translated (not those it read from records)."""
    index = pick_example(comparison) if example is None else example
    fingerprint = test_set_fingerprint(comparison.sources, comparison.references)
    out = []
    for e in comparison.entries:
        if e.name in comparison.saved:
            continue
        config = Path(e.model_dir) / "config.yaml"
        translations = comparison.translations[e.name]
        out.append(SavedSystem(e, "", fingerprint, dict(comparison.search), [t.text for t in translations],
                               round(comparison.sentences_per_s[e.name], 2), comparison.entropy.get(e.name),
                               comparison.aer.get(e.name), example_of(translations, index),
                               config.read_text(encoding="utf-8") if config.is_file() else ""))
    return out


def by_variant(comparison: Comparison) -> list[dict]:
    """Models that differ only by seed, as one row: mean and standard deviation of test BLEU
    and chrF over the seeds, and which seed is the median (the one to bootstrap)."""
    rows = []
    for (preset, variant), members in seed_groups(comparison.entries).items():
        bleu = np.array([comparison.scores[e.name].bleu for e in members])
        chrf = np.array([comparison.scores[e.name].chrf for e in members])
        median = median_seed(members, comparison.scores)
        rows.append({"model": preset, "variant": variant, "seeds": len(members),
                     "parameters": members[0].parameters,
                     "bleu_mean": round(float(bleu.mean()), 2), "bleu_std": round(float(bleu.std(ddof=1)), 2)
                     if len(bleu) > 1 else 0.0,
                     "chrf_mean": round(float(chrf.mean()), 2), "chrf_std": round(float(chrf.std(ddof=1)), 2)
                     if len(chrf) > 1 else 0.0,
                     "median_seed_model": median.name,
                     "valid_bleu_mean": round(float(np.mean([e.valid_bleu for e in members if e.valid_bleu is not None]
                                                            or [np.nan])), 2)})
    return rows
