"""Several models on one test set: what attention buys, with its uncertainty.

``mt compare``, ``mt demo`` and ``scripts/compare_runs.py`` all go through here. Every
model translates the same sentences with the same search settings; scores are sacrebleu's,
and each model is compared with a baseline by sacrebleu's paired bootstrap resampling
(seeded), overall and within each source-length bucket.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mt.errors import ConfigError, DataError, MTError
from mt.evaluation.metrics import DEFAULT_BUCKETS, Scores, corpus_scores
from mt.evaluation.saved_systems import (
    SavedSystem,
    check_fits,
    example_of,
    test_set_fingerprint,
    translations_of,
)

MODEL_FILES = ("config.yaml", "model.safetensors")


@dataclass
class ModelEntry:
    """A model directory and what its run recorded about it."""

    name: str                 # unique among the compared models
    model_dir: str
    variant: str              # e.g. "gru, bahdanau additive" or "transformer 3+3, d 256"
    attention: bool
    parameters: int           # filled in when the model is loaded to translate
    src_lang: str
    tgt_lang: str
    seed: int
    train_seconds: float | None = None
    tokens_per_s: float | None = None
    valid_bleu: float | None = None   # validation BLEU of the model kept (the run's best validation)
    epochs: int | None = None         # the last epoch trained (where early stopping ended the run)
    best_epoch: int | None = None     # the epoch of the model kept
    preset: str = ""          # the model preset's name, before _unique_names tells runs of it apart
    settings: str = ""        # JSON of every setting that decides what the run learns, but the seed


def _is_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in MODEL_FILES)


def find_model_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Model directories from what a user passes: a model directory, a run directory (its
    ``model/``), or any folder above them (a Hydra multirun directory), searched in order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MTError(f"{path} does not exist: pass model directories (runs/NAME/model), run directories "
                          "or a multirun directory")
        if _is_model_dir(path):
            found.append(path)
        elif _is_model_dir(path / "model"):
            found.append(path / "model")
        else:
            below = sorted({p.parent for p in path.rglob("model.safetensors") if _is_model_dir(p.parent)
                            and p.parent.name == "model"})
            if not below:
                raise MTError(f"{path} holds no model directory (config.yaml and model.safetensors): "
                              "train one with mt train, or pass its runs/NAME/model folder")
            found.extend(below)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _variant(cfg) -> str:
    m = cfg.model
    if m.arch.value == "transformer":
        return f"transformer {m.enc_layers}+{m.dec_layers}, d {m.hidden_dim}, {m.heads} heads"
    att = m.attention
    if att.type.value == "none":
        kind = "no attention"
    else:
        kind = f"{att.type.value} {att.score.value}" + ("" if att.normalizer.value == "softmax" else
                                                         f" {att.normalizer.value}")
    return f"{m.cell.value} {m.hidden_dim}, {kind}"


def _run_record(run_dir: Path) -> dict:
    """Training time, speed, epochs and best validation BLEU from the run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    rows = [r for r in rows if "valid_bleu" in r]
    if not rows:
        return {}
    speeds = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    # The model kept: the last validation the trainer marked best (its metric may be chrF or loss);
    # runs written before the mark, the highest BLEU (the first of equals, as a tie is no improvement).
    marked = [r for r in rows if r.get("best")]
    best = marked[-1] if marked else max(rows, key=lambda r: r["valid_bleu"])
    return {"train_seconds": _train_seconds(rows),
            "tokens_per_s": float(np.median(speeds)) if speeds else None,
            "valid_bleu": best["valid_bleu"],
            "epochs": rows[-1].get("epoch"), "best_epoch": best.get("epoch")}


def _train_seconds(rows: list[dict]) -> float | None:
    """The run's wall time: ``elapsed`` of its last row (summed over resumed sessions); for runs
    written before ``elapsed`` existed, the longest ``seconds`` of each epoch, summed."""
    if rows[-1].get("elapsed"):
        return float(rows[-1]["elapsed"])
    per_epoch: dict[int, float] = {}
    for r in rows:
        per_epoch[r.get("epoch", 0)] = max(per_epoch.get(r.get("epoch", 0), 0.0), r.get("seconds", 0.0))
    return sum(per_epoch.values()) or None


def settings_key(cfg) -> str:
    """What ModelEntry.settings holds for a config: runs with equal keys are seeds of one model."""
    from mt.config import settings_but_seed

    return json.dumps(settings_but_seed(cfg), sort_keys=True)


def describe_models(model_dirs: Sequence[Path]) -> list[ModelEntry]:
    """Entries named by their preset and, where two share one, by what tells them apart."""
    from mt.config import ExperimentConfig, load_yaml

    entries = []
    for d in model_dirs:
        cfg = load_yaml(d / "config.yaml", ExperimentConfig)
        entries.append(ModelEntry(
            name=cfg.model.name, preset=cfg.model.name, model_dir=str(d), variant=_variant(cfg),
            attention=cfg.model.arch.value == "transformer" or cfg.model.attention.type.value != "none",
            parameters=0, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang,
            seed=cfg.train.seed, settings=settings_key(cfg), **_run_record(d.parent)))
    name_runs(entries)
    return entries


SETTING_MARK = " | "  # between a variant's description and the settings that tell it from a sibling


def _distinguish_variants(entries: list[ModelEntry]) -> None:
    """Runs of one preset and one described variant whose settings differ in more than the
    seed (alignment loss, input feeding, learning rate, ...) get those settings added to their
    variant, so they are neither named nor averaged as seeds of one model."""
    for e in entries:
        e.variant = e.variant.split(SETTING_MARK)[0]
    families: dict[tuple[str, str], list[ModelEntry]] = {}
    for e in entries:
        families.setdefault((e.preset or e.name, e.variant), []).append(e)
    for members in families.values():
        distinct = {e.settings for e in members}
        if len(distinct) < 2:
            continue
        parsed = {key: json.loads(key) if key else {} for key in distinct}
        keys = sorted({k for d in parsed.values() for k in d}
                      - {k for k in set.intersection(*(set(d) for d in parsed.values()))
                         if len({json.dumps(d[k]) for d in parsed.values()}) == 1})
        for e in members:
            own = parsed[e.settings]
            said = ", ".join(f"{k}={own[k]}" if k in own else f"{k} unknown" for k in keys)
            e.variant = f"{e.variant}{SETTING_MARK}{said}"


def name_runs(entries: list[ModelEntry]) -> None:
    """Variants told apart by their settings, then names unique among the entries."""
    _distinguish_variants(entries)
    _unique_names(entries)


def _unique_names(entries: list[ModelEntry]) -> None:
    """Two runs of one preset never share a name (nor an output file): add what differs."""
    for e in entries:
        e.name = e.preset or e.name
    for name in {e.name for e in entries}:
        same = [e for e in entries if e.name == name]
        if len(same) < 2:
            continue
        if len({e.variant for e in same}) == len(same):
            for e in same:
                e.name = f"{name} ({e.variant})"
        elif len({e.seed for e in same}) == len(same):
            for e in same:
                e.name = f"{name} seed {e.seed}"
        elif len({(e.variant, e.seed) for e in same}) == len(same):  # several settings, several seeds each
            for e in same:
                e.name = f"{name} ({e.variant}) seed {e.seed}"
        else:
            for e in same:
                e.name = f"{name} [{Path(e.model_dir).parent.name}]"
    seen: dict[str, int] = {}
    for e in entries:  # still equal (same run folder names): number them
        seen[e.name] = seen.get(e.name, 0) + 1
        if seen[e.name] > 1:
            e.name = f"{e.name} #{seen[e.name]}"


def check_languages(entries: Sequence[ModelEntry], src_path: str | None = None, ref_path: str | None = None) -> None:
    """One language pair for all models, and the test files' suffixes (test.en, test.de.gz)
    must not say otherwise."""
    pairs = {(e.src_lang, e.tgt_lang) for e in entries}
    if len(pairs) > 1:
        listed = ", ".join(f"{e.name}: {e.src_lang}-{e.tgt_lang}" for e in entries)
        raise MTError(f"the models translate different language pairs ({listed}): compare models of one pair")
    src_lang, tgt_lang = pairs.pop()
    for path, lang, side in ((src_path, src_lang, "source"), (ref_path, tgt_lang, "reference")):
        if path is None:
            continue
        suffixes = [s.lstrip(".") for s in Path(path).suffixes if s != ".gz"]
        code = suffixes[-1] if suffixes else ""
        if len(code) == 2 and code.isalpha() and code != lang:
            raise MTError(f"{path} looks like '{code}' text but the models' {side} language is '{lang}' "
                          f"({src_lang}-{tgt_lang}): pass the {lang} file")


@dataclass
class Significance:
    """A model against the baseline: sacrebleu's paired bootstrap (p-value: how often a
    resample shows no gain) and the 95% interval of the model's BLEU (mean +- ci)."""

    p_value: float | None
    bleu_mean: float
    bleu_ci: float
    chrf_p_value: float | None = None


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


@contextmanager
def _sacrebleu_seed(seed: int):
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
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

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


def _gap_interval(hyps: list[str], base: list[str], references: list[str], samples: int,
                  seed: int) -> tuple[float, float, float]:
    """95% interval of BLEU(hyps) - BLEU(base) over paired resamples of the sentences, and the
    share of resamples where the gap is not positive (a one-sided p-value). Uses sacrebleu's
    sentence statistics so one resample costs a sum, not a re-tokenization."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    stats = np.array(metric._extract_corpus_statistics(hyps, [references]), dtype=np.float64)
    base_stats = np.array(metric._extract_corpus_statistics(base, [references]), dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hyps), size=(samples, len(hyps)))
    gaps = np.array([metric._compute_score_from_stats(list(stats[i].sum(0))).score
                     - metric._compute_score_from_stats(list(base_stats[i].sum(0))).score for i in idx])
    low, high = np.percentile(gaps, [2.5, 97.5])
    return float(low), float(high), float((gaps <= 0).mean())


def attention_entropy(translations: Sequence) -> float | None:
    """Mean entropy (nats) of the attention rows of the model's own translations: low when
    each output word looks at few source words, log(source length) when it looks at all."""
    total, rows = 0.0, 0
    for t in translations:
        if t.attention is None or t.attention.size == 0:
            continue
        p = np.clip(np.asarray(t.attention, dtype=np.float64), 1e-12, 1.0)
        total += float(-(p * np.log(p)).sum(axis=1).sum())
        rows += p.shape[0]
    return total / rows if rows else None


def compare_models(entries: Sequence[ModelEntry], sources: Sequence[str], references: Sequence[str], *,
                   beam: int = 1, baseline: str | None = None, buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS,
                   gold: Sequence | None = None, samples: int = 1000, seed: int = 12345,
                   search: dict | None = None, device: str = "auto", precision: str = "auto",
                   progress: bool = True, saved: Sequence[SavedSystem] = ()) -> Comparison:
    """Translate with every model, score, test against the baseline, and measure the attention.
    ``saved``: records of models translated before (``mt.evaluation.saved_systems``), set beside
    them after them. The default baseline is the first model without attention (else the first
    model); where it has siblings that differ only by seed, the one of median test BLEU among them."""
    from tqdm import tqdm

    from mt.decoding.aligner import align_pairs
    from mt.decoding.translator import Translator
    from mt.evaluation.alignment import alignment_error_rate

    check_seed(seed)
    sources, references = list(sources), list(references)
    if len(sources) != len(references):
        raise DataError(f"{len(sources)} source lines but {len(references)} references: they must pair line by line")
    if not sources:
        raise DataError("the test set is empty: pass files with one sentence a line")
    if gold is not None and len(gold) != len(sources):
        raise DataError(f"{len(gold)} gold alignments for {len(sources)} sentences: pass the test set's own")
    search = dict(search or {})
    search.setdefault("beam", beam)
    fingerprint = test_set_fingerprint(sources, references)
    for system in saved:
        check_fits(system, fingerprint, len(sources), search)
    to_translate = list(entries)
    entries = to_translate + [system.entry for system in saved]
    if saved:
        name_runs(entries)
    if not entries:
        raise MTError("no models to compare: pass model directories or --systems records")
    names = [e.name for e in entries]
    if baseline is not None and baseline not in names:
        raise MTError(f"--baseline '{baseline}' is none of the models: {', '.join(names)}")
    translations, scores, speed, entropy, aer = {}, {}, {}, {}, {}
    bar = tqdm(total=len(to_translate) * len(sources), unit="sent", disable=not progress, desc="translating")
    for e in to_translate:
        translator = Translator.from_dir(e.model_dir, device, precision)
        e.parameters = translator.model.num_parameters()
        start = time.perf_counter()
        out = []
        for i in range(0, len(sources), 500):
            out += translator.translate(sources[i:i + 500], **search)
            bar.update(len(sources[i:i + 500]))
        speed[e.name] = len(sources) / max(time.perf_counter() - start, 1e-9)
        translations[e.name] = out
        scores[e.name] = corpus_scores([t.text for t in out], references)
        h = attention_entropy(out)
        if h is not None:
            entropy[e.name] = h
            if gold is not None:
                pairs = align_pairs(translator, sources, references)
                aer[e.name] = alignment_error_rate(gold, [p.links for p in pairs]).aer
        bar.set_postfix_str(f"{e.name}: BLEU {scores[e.name].bleu:.2f}")
    bar.close()
    for system in saved:
        name = system.entry.name
        translations[name] = translations_of(system, sources)
        scores[name] = corpus_scores(system.hypotheses, references)
        speed[name] = system.sentences_per_s
        if system.entropy is not None:
            entropy[name] = system.entropy
        if system.aer is not None:
            aer[name] = system.aer
    if baseline is None:  # the first model without attention, or rather its median seed
        first = next((e for e in entries if not e.attention), entries[0])
        siblings = next(m for m in seed_groups(entries).values() if first in m)
        baseline = median_seed(siblings, scores).name
    texts = {n: [t.text for t in translations[n]] for n in names}
    significance = paired_bootstrap(texts, references, baseline, samples, seed) if len(names) > 1 else {}
    results = []
    for low, high in buckets:
        idx = [i for i, s in enumerate(sources) if low <= len(s.split()) <= high]
        if not idx:
            continue
        refs = [references[i] for i in idx]
        bucket = BucketResult(f"{low}-{high}" if high < 10_000 else f"{low}+", len(idx),
                              {n: corpus_scores([texts[n][i] for i in idx], refs).bleu for n in names})
        for n in names:
            if n == baseline:
                continue
            bucket.gap[n] = round(bucket.bleu[n] - bucket.bleu[baseline], 2)
            lo, hi, p = _gap_interval([texts[n][i] for i in idx], [texts[baseline][i] for i in idx], refs,
                                      samples, seed)
            bucket.gap_low[n], bucket.gap_high[n], bucket.p_value[n] = round(lo, 2), round(hi, 2), round(p, 4)
        results.append(bucket)
    return Comparison(list(entries), baseline, int(search["beam"]), len(sources), scores, significance, results,
                      speed, entropy, aer, translations, sources, references, samples, seed, search,
                      {s.entry.name: s.path for s in saved})


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


def seed_groups(entries: Sequence[ModelEntry]) -> dict[tuple[str, str], list[ModelEntry]]:
    """Models whose resolved settings differ only by seed, keyed by (preset, variant). Entries
    without their settings (built by hand) are grouped by preset and variant alone."""
    groups: dict[tuple[str, str, str], list[ModelEntry]] = {}
    for e in entries:
        preset = e.preset or e.name.split(" seed ")[0].split(" [")[0].split(" #")[0]
        groups.setdefault((preset, e.variant, e.settings), []).append(e)
    keyed: dict[tuple[str, str], list[ModelEntry]] = {}
    for (preset, variant, _), members in groups.items():
        key = (preset, variant)
        while key in keyed:  # same description, other settings: name_runs was not called; never merge them
            key = (preset, f"{key[1]}{SETTING_MARK}other settings")
        keyed[key] = members
    return keyed


def median_seed(members: Sequence[ModelEntry], scores: dict[str, Scores]) -> ModelEntry:
    """The member of median test BLEU (the lower middle one for an even count)."""
    bleu = np.array([scores[e.name].bleu for e in members])
    return members[int(np.argsort(bleu, kind="stable")[(len(bleu) - 1) // 2])]


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


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


SCORE_COLUMNS = ["model", "variant", "parameters", "seed", "epochs", "best_epoch", "train_seconds", "tokens_per_s",
                 "valid_bleu", "test_bleu", "test_chrf", "bleu_95ci", "p_value_vs_baseline", "sentences_per_s",
                 "attention_entropy", "aer"]


def format_scores(comparison: Comparison) -> str:
    from mt.evaluation.report import format_table

    rows = comparison.rows()
    return format_table(SCORE_COLUMNS, [[_fmt(r[c], 4 if c == "p_value_vs_baseline" else 2) for c in SCORE_COLUMNS]
                                        for r in rows])


def format_by_length(comparison: Comparison) -> str:
    from mt.evaluation.report import format_table

    names = [e.name for e in comparison.entries]
    others = [n for n in names if n != comparison.baseline]
    header = ["source words", "sentences", *names, *(f"{n} - {comparison.baseline}" for n in others)]
    rows = [[b.bucket, b.sentences, *(f"{b.bleu[n]:.2f}" for n in names),
             *(f"{b.gap[n]:+.2f} [{b.gap_low[n]:+.2f}, {b.gap_high[n]:+.2f}]" for n in others)]
            for b in comparison.buckets]
    return format_table(header, rows)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pick_example(comparison: Comparison, low: int = 12, high: int = 25) -> int:
    """A test sentence of middling length that every attention model translated."""
    for i, s in enumerate(comparison.sources):
        if low <= len(s.split()) <= high:
            return i
    return max(range(len(comparison.sources)), key=lambda i: len(comparison.sources[i].split()))


def _length_series(comparison: Comparison) -> tuple[dict[str, list[float]], dict[str, tuple[list, list]]]:
    """BLEU by length to plot: one line per model; where models differ only by seed, one line
    per variant (the mean over its seeds) with the range of its seeds, so three seeds of ten
    variants make ten readable lines, not thirty."""
    groups = list(seed_groups(comparison.entries).values())
    if all(len(members) == 1 for members in groups):
        return {e.name: [b.bleu[e.name] for b in comparison.buckets] for e in comparison.entries}, {}
    series: dict[str, list[float]] = {}
    spread: dict[str, tuple[list, list]] = {}
    bases = [members[0].name.rsplit(" seed ", 1)[0] for members in groups]
    for base, members in zip(bases, groups):
        label = base if bases.count(base) == 1 else f"{base} ({members[0].variant})"  # never one line over another
        label += f" ({len(members)} seed{'s' if len(members) > 1 else ''})"  # a single run is not a mean
        per_seed = np.array([[b.bleu[e.name] for b in comparison.buckets] for e in members])  # [seeds, buckets]
        if len(members) > 1:
            spread[label] = (per_seed.min(axis=0).tolist(), per_seed.max(axis=0).tolist())
        series[label] = per_seed.mean(axis=0).round(2).tolist()
    return series, spread


def write_comparison(comparison: Comparison, out: str | Path, example: int | None = None) -> dict[str, Path]:
    """Every table as CSV, Markdown and JSON, the length plot as PNG and SVG, and one figure
    with the same sentence's attention from every model side by side."""
    from mt.evaluation.report import write_csv
    from mt.visualization.curves import plot_bleu_by_length
    from mt.visualization.heatmap import plot_attention_row

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    rows = comparison.rows()
    files["scores.csv"] = write_csv(out / "scores.csv", SCORE_COLUMNS + ["model_dir"],
                                    [[r[c] for c in SCORE_COLUMNS + ["model_dir"]] for r in rows])
    sig = next(iter(comparison.scores.values())).bleu_signature
    md = (f"Test set: {comparison.sentences} sentences, beam {comparison.beam}; baseline "
          f"**{comparison.baseline}**; paired bootstrap: {comparison.bootstrap_samples} resamples, seed "
          f"{comparison.seed}; {sig}\n\n")
    md += _markdown(SCORE_COLUMNS, [[_fmt(r[c], 4 if c == "p_value_vs_baseline" else 2) for c in SCORE_COLUMNS]
                                    for r in rows])
    files["scores.md"] = out / "scores.md"
    files["scores.md"].write_text(md, encoding="utf-8")
    names = [e.name for e in comparison.entries]
    others = [n for n in names if n != comparison.baseline]
    header = ["bucket", "sentences", *names]
    for n in others:
        header += [f"gap {n}", f"gap_low {n}", f"gap_high {n}", f"p {n}"]
    files["bleu_by_length.csv"] = write_csv(out / "bleu_by_length.csv", header, [
        [b.bucket, b.sentences, *(b.bleu[n] for n in names),
         *(v for n in others for v in (b.gap[n], b.gap_low[n], b.gap_high[n], b.p_value[n]))]
        for b in comparison.buckets])
    labels = [f"{b.bucket}\n({b.sentences})" for b in comparison.buckets]
    series, spread = _length_series(comparison)
    for ext in ("png", "svg"):
        files[f"bleu_by_length.{ext}"] = plot_bleu_by_length(labels, series, out / f"bleu_by_length.{ext}", spread)
    attn = [(e.name, comparison.translations[e.name]) for e in comparison.entries if e.name in comparison.entropy]
    if attn:
        i = pick_example(comparison) if example is None else example
        panels = [(name, t[i].attention, t[i].src_pieces, t[i].tgt_pieces) for name, t in attn
                  if t[i].attention is not None]
        if panels:
            for ext in ("png", "svg"):
                files[f"attention_side_by_side.{ext}"] = plot_attention_row(
                    panels, out / f"attention_side_by_side.{ext}", title=f"source: {comparison.sources[i]}")
    variants = by_variant(comparison)
    if any(v["seeds"] > 1 for v in variants):
        columns = list(variants[0])
        files["scores_by_variant.csv"] = write_csv(out / "scores_by_variant.csv", columns,
                                                   [[v[c] for c in columns] for v in variants])
        with files["scores.md"].open("a", encoding="utf-8") as handle:
            handle.write("\nBy variant (mean and standard deviation over seeds):\n\n")
            handle.write(_markdown(columns, [[v[c] for c in columns] for v in variants]))
    with (out / "translations.txt").open("w", encoding="utf-8") as handle:
        for i, s in enumerate(comparison.sources):
            handle.write(f"source     {s}\nreference  {comparison.references[i]}\n")
            for n in names:
                handle.write(f"{n}  {comparison.translations[n][i].text}\n")
            handle.write("\n")
    files["translations.txt"] = out / "translations.txt"
    files["results.json"] = out / "results.json"
    files["results.json"].write_text(json.dumps({
        "sentences": comparison.sentences, "beam": comparison.beam, "baseline": comparison.baseline,
        "bootstrap_samples": comparison.bootstrap_samples, "seed": comparison.seed,
        "models": [asdict(e) for e in comparison.entries], "scores": rows,
        "signatures": {n: {"bleu": s.bleu_signature, "chrf": s.chrf_signature} for n, s in comparison.scores.items()},
        "by_length": [asdict(b) for b in comparison.buckets], "by_variant": variants, "search": comparison.search,
        "from_records": comparison.saved,
    }, indent=2), encoding="utf-8")
    return files
