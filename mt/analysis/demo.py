"""``mt demo`` as a library: attention versus no attention on the embedded demo corpus.

Trains ``rnn_noattn`` and ``rnn_bahdanau`` with the same data and budget (in parallel,
one thread each, when there are two cores or more), scores both on the test split,
overall and by source length, translates a few sentences and draws the attention of
the attention model. Every table it prints is also written as CSV/JSON.

The demo fits its work to the machine: it measures how fast this CPU trains, then
trains each model for five epochs where they fit in the budget, or for as many seconds
as the budget leaves, and says which (``mt.training.budget``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from mt.analysis.compare.comparison import compare_models
from mt.analysis.compare.entries import describe_models
from mt.analysis.compare.report import seal_report, write_comparison
from mt.analysis.outputs import COMPARE_REPORT, REPORT_FILES, check_report_dir
from mt.config import ExperimentConfig
from mt.data.corpus import load_corpus
from mt.decoding.search import DEFAULT_BEAM, SearchConfig
from mt.errors import ConfigError
from mt.evaluation.aer import read_pharaoh
from mt.evaluation.report import format_table
from mt.files import write_text_file
from mt.models import build_model
from mt.precision import resolve_precision
from mt.presets import compose
from mt.training.budget import TrainingPlan, measure_tokens_per_s, plan_training
from mt.training.pipeline import PreparedData, prepare_data, run_training
from mt.visualization.heatmap import plot_attention

MODELS = ("rnn_noattn", "rnn_bahdanau")
# Half the widths of the presets: four times fewer operations per token, so the attention
# model learns its alignments within minutes even on an AVX2-only laptop CPU.
DEMO_MODEL = ["model.emb_dim=64", "model.hidden_dim=128", "model.enc_hidden_dim=64", "model.attention.dim=64"]
DEMO_TRAIN = ["train.threads=1", "train.max_tokens=1500", "train.lr=0.003", "train.valid_max_sentences=200",
              "train.log_seconds=20"]
DEFAULT_BUDGET_S = 220.0  # the demo itself; scripts/demo.sh adds about a minute of installation
MAX_EPOCHS = 5


@dataclass(frozen=True)
class DemoSettings:
    out: Path = Path("runs/demo")      # models, tables and plots
    beam: int = DEFAULT_BEAM            # for the test translations
    budget_s: float = DEFAULT_BUDGET_S  # the whole demo; training is fitted to it
    epochs: int = 0                     # train exactly this many epochs instead (0: fit the budget)
    sequential: bool = False            # one model after the other
    overrides: tuple[str, ...] = ()     # Hydra overrides for both models

    def __post_init__(self) -> None:
        if self.budget_s <= 0 or self.epochs < 0 or self.beam < 1:
            raise ConfigError("--budget must be positive, --epochs 0 or positive and --beam at least 1")


def _train_one(args: tuple[str, list[str], str]) -> str:
    """Worker: trains one model; returns its model directory."""
    model, overrides, run_dir = args
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    result = run_training(compose(overrides), run_dir, progress="lines", name=model, replace=True)  # a rerun retrains
    return str(result.best_dir)


def plan_demo(config: ExperimentConfig, data: PreparedData, budget_s: float,
              elapsed_s: float) -> tuple[TrainingPlan, int]:
    """Measures this machine's training speed on the slower model and plans the epochs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker will
    try:
        torch.manual_seed(0)
        model = build_model(config.model, len(data.src_tokenizer), len(data.tgt_tokenizer))
        speed = measure_tokens_per_s(model, data.train, config.train.max_tokens,
                                     precision=resolve_precision(config.train.precision.value, "cpu"))
    finally:
        torch.set_num_threads(threads)
    epoch_tokens = sum(len(t) + 1 for t in data.train.tgt)
    return plan_training(budget_s, elapsed_s, speed, epoch_tokens, MAX_EPOCHS), epoch_tokens


def run_demo(settings: DemoSettings) -> dict[str, str]:
    """Trains both models as fitted to the budget, compares them on the test split and prints
    the report; returns each model's directory."""
    start = time.perf_counter()
    out = settings.out
    _check_demo_out(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {m: [*DEMO_MODEL, *DEMO_TRAIN, f"model={m}"] for m in MODELS}
    config = compose([*overrides[MODELS[-1]], *settings.overrides])  # fails here, before any work, on a bad override
    corpus = load_corpus(config.data)  # generates the demo corpus on first use
    print(f"demo corpus: {config.data.dir} ({len(corpus['train'])} / {len(corpus['validation'])} / "
          f"{len(corpus['test'])} pairs, {config.data.src_lang}-{config.data.tgt_lang}, gold alignments in *.align)",
          flush=True)
    data = prepare_data(config)  # trains the tokenizers once, so the two workers find them cached
    plan = None
    if settings.epochs:
        sizing = [f"train.epochs={settings.epochs}"]
        print(f"training {settings.epochs} epochs each, whatever the time (--epochs)")
    else:
        plan, epoch_tokens = plan_demo(config, data, settings.budget_s, time.perf_counter() - start)
        sizing = [f"train.epochs={plan.epochs}", f"train.max_seconds={plan.train_seconds:.0f}"]
        print(f"fitting the demo to {settings.budget_s:.0f} s: {plan.describe(epoch_tokens)}", flush=True)
    jobs = [(m, [*overrides[m], *sizing, *settings.overrides], str(out / m)) for m in MODELS]
    print(f"training {' and '.join(MODELS)}; the same as:")
    for _, job_overrides, _ in jobs:
        print(f"  mt train {' '.join(job_overrides)}", flush=True)
    model_dirs = dict(zip(MODELS, _train_all(jobs, settings.sequential)))
    if plan is not None:
        _report_speed(plan, out, settings.budget_s)
    print("evaluating on the test set ...", flush=True)
    print(evaluate_models(model_dirs, corpus["test"], out, settings.beam, gold=Path(config.data.dir) / "test.align"))
    dirs = list(model_dirs.values())
    print(f"\ndone in {time.perf_counter() - start:.0f}s. Files:\n"
          f"  models:        {', '.join(dirs)}\n"
          f"  scores:        {out / 'scores.csv'}, {out / 'bleu_by_length.csv'}, {out / 'results.json'}\n"
          f"  plot:          {out / 'bleu_by_length.png'}\n"
          f"  translations:  {out / 'translations.txt'}\n"
          f"  heatmaps:      {out / 'alignments'}/, {out / 'attention_side_by_side.png'}\n"
          f"Try: mt translate {dirs[-1]} --beam 4   (type a sentence)\n"
          f"     mt align {dirs[-1]} --src \"The old man has seen the dog.\" --out heatmap.png")
    return model_dirs


def _check_demo_out(out: Path) -> None:
    """The demo writes into a new or empty folder, an earlier demo's or report's, or one an
    interrupted demo left (its model runs only); never into a folder of the user's."""
    left = {*MODELS, "plan.json", "alignments", *REPORT_FILES}  # what the demo writes before it seals the report
    if out.is_dir() and any((out / m).is_dir() for m in MODELS) and all(
            p.name in left for p in out.iterdir() if not p.name.startswith(".")):
        return
    check_report_dir(out, COMPARE_REPORT, False, "--out")


def _train_all(jobs: list[tuple[str, list[str], str]], sequential: bool) -> list[str]:
    """Both models, side by side on two cores where there are two."""
    if sequential or (os.cpu_count() or 1) < 2:
        return [_train_one(job) for job in jobs]
    pool = ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn"))
    try:
        return list(pool.map(_train_one, jobs))
    finally:
        pool.shutdown(wait=True)  # workers end on their own: nothing is left to the resource tracker


def _report_speed(plan: TrainingPlan, out: Path, budget_s: float) -> None:
    """What the models trained at, beside the estimate, printed and in plan.json."""
    trained = {m: trained_tokens_per_s(out / m / "metrics.jsonl") for m in MODELS}
    said = ", ".join(f"{m} {v:,.0f}" for m, v in trained.items())
    print(f"trained at {said} target tokens/s (estimated {plan.tokens_per_s:,.0f} on {MODELS[-1]})", flush=True)
    write_text_file(out / "plan.json", json.dumps(
        {"budget_s": budget_s, "epochs": plan.epochs, "train_seconds": round(plan.train_seconds, 1),
         "expected_epochs": round(plan.expected_epochs, 2), "fits": plan.fits,
         "estimated_tokens_per_s": round(plan.tokens_per_s, 1), "estimated_on": MODELS[-1],
         "trained_tokens_per_s": {m: round(v, 1) for m, v in trained.items()}}, indent=1) + "\n")


def trained_tokens_per_s(metrics: Path) -> float:
    """A run's training speed from its metrics.jsonl: each validation's tokens/s, weighted by the
    updates it covers (training only, as the demo's estimate is)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    steps, previous, total = 0, 0, 0.0
    for row in rows:
        covered = row["step"] - previous
        total, steps, previous = total + row["tokens_per_s"] * covered, steps + covered, row["step"]
    return total / steps if steps else 0.0


def _examples(sources: list[str], wanted: tuple[tuple[int, int], ...] = ((4, 8), (12, 18), (26, 34))) -> list[int]:
    """One test sentence for each length range: short, medium, long."""
    picks = []
    for low, high in wanted:
        for i, s in enumerate(sources):
            if low <= len(s.split()) <= high and i not in picks:
                picks.append(i)
                break
    return picks


def evaluate_models(model_dirs: dict[str, str], test: dict, out: Path, beam: int, gold: Path | None = None) -> str:
    """Compares the models with ``mt.analysis.compare.comparison`` (what ``mt compare`` writes, into
    ``out``) and returns the demo's report: scores, the gap by length, example translations.
    With ``gold`` (Pharaoh links of the test pairs), each attention model's alignment error
    rate too: argmax of its attention while it reads the reference, merged to words."""
    sources, references = list(test["src"]), list(test["tgt"])
    gold_links = read_pharaoh(gold) if gold is not None and gold.is_file() else None
    if gold_links is not None and len(gold_links) != len(sources):
        gold_links = None  # not this test set's alignments
    entries = describe_models([Path(d) for d in model_dirs.values()])
    for entry, name in zip(entries, model_dirs):
        entry.name = name
    comparison = compare_models(entries, sources, references, search=SearchConfig(beam=beam), gold=gold_links,
                                progress=False)
    write_comparison(comparison, out, seal=False)  # sealed below, once the example heatmaps are drawn too
    names, scores, aer = list(model_dirs), comparison.scores, comparison.aer
    score_rows = [[n, f"{scores[n].bleu:.2f}", f"{scores[n].chrf:.2f}", f"{aer[n]:.2f}" if n in aer else "-",
                   f"{comparison.significance[n].p_value:.4f}" if n != comparison.baseline else "-"] for n in names]
    two = len(names) == 2  # a gap column only for a pair: the second minus the first
    length_rows = [[b.bucket, b.sentences, *(f"{b.bleu[n]:.2f}" for n in names),
                    *([f"{b.bleu[names[1]] - b.bleu[names[0]]:+.2f}"] if two else [])]
                   for b in comparison.buckets]
    length_header = ["source words", "sentences", *names, *(["gap"] if two else [])]
    lines = [f"\nTest set: {len(sources)} sentences, beam {beam}  ({scores[names[0]].bleu_signature})",
             format_table(["model", "BLEU", "chrF", "AER", f"p vs {comparison.baseline}"], score_rows),
             *([("(AER: alignment error rate of the attention, argmax while reading the reference, against "
                "the corpus's gold word alignments; lower is better)")] if aer else []),
             "\nBLEU by source length" + (f" (gap: {names[1]} minus {names[0]})" if two else ""),
             format_table(length_header, length_rows), "\nExamples"]
    (out / "alignments").mkdir(exist_ok=True)
    for k, i in enumerate(_examples(sources)):
        lines.append(f"  source     {sources[i]}\n  reference  {references[i]}")
        for n in names:
            t = comparison.translations[n][i]
            lines.append(f"  {n:<10} {t.text}")
            if t.attention is not None:
                plot_attention(t.attention, t.src_pieces, t.tgt_pieces, out / "alignments" / f"{n}_{k + 1}.png",
                               title=f"{n}: {t.text}")
        lines.append("")
    seal_report(out)  # a compare report: a later mt compare --out on this folder writes into it again
    return "\n".join(lines)
