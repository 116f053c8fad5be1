"""What ``mt compare`` writes: the scores and length tables for the terminal, as CSV,
Markdown and JSON, the BLEU-by-length plot and the side-by-side attention figure."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mt.analysis.compare.comparison import Comparison, by_variant, pick_example
from mt.analysis.compare.entries import seed_groups
from mt.analysis.outputs import COMPARE_REPORT, REPORT_FILES, kind_of, remove_stale
from mt.errors import WriteError, write_failure
from mt.evaluation.report import format_table, write_csv
from mt.files import MANIFEST, output_file, write_manifest, write_text_file
from mt.visualization.curves import plot_bleu_by_length
from mt.visualization.heatmap import plot_attention_row


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


SCORE_COLUMNS = ["model", "variant", "parameters", "seed", "epochs", "best_epoch", "train_seconds", "tokens_per_s",
                 "valid_bleu", "test_bleu", "test_chrf", "bleu_95ci", "p_value_vs_baseline", "sentences_per_s",
                 "attention_entropy", "aer"]


# What the terminal shows of the scores (scores.csv and scores.md hold every column): what a reader
# compares first, narrow enough for a terminal; a column no model fills is left out.
CONSOLE_COLUMNS = ["model", "parameters", "train_seconds", "test_bleu", "bleu_95ci", "p_value_vs_baseline", "test_chrf",
                   "aer"]
# A length bucket with fewer sentences than this gets its interval marked: a paired bootstrap over a
# handful of sentences resamples the same few and says little.
FEW_SENTENCES = 30


def format_scores(comparison: Comparison, columns: Sequence[str] = CONSOLE_COLUMNS) -> str:
    rows = [[_fmt(r[c], 4 if c == "p_value_vs_baseline" else 2) for c in columns] for r in comparison.rows()]
    kept = [i for i, c in enumerate(columns) if i == 0 or any(row[i] != "-" for row in rows)]
    return format_table([columns[i] for i in kept], [[row[i] for i in kept] for row in rows])


def format_by_length(comparison: Comparison) -> str:
    names = [e.name for e in comparison.entries]
    others = [n for n in names if n != comparison.baseline]
    # Long names (a variant's settings) head the columns as #1, #2, ... named above the table.
    short = {n: f"#{i}" for i, n in enumerate(names, 1)} if max(map(len, names)) > 16 else {n: n for n in names}
    legend = "".join(f"{short[n]} {n}\n" for n in names) if short[names[0]] != names[0] else ""
    header = ["source words", "sentences", *(short[n] for n in names),
              *(f"{short[n]} - {short[comparison.baseline]}" for n in others)]
    mark = {True: " *", False: ""}
    rows = [[b.bucket, b.sentences, *(f"{b.bleu[n]:.2f}" for n in names),
             *(f"{b.gap[n]:+.2f} [{b.gap_low[n]:+.2f}, {b.gap_high[n]:+.2f}]{mark[b.sentences < FEW_SENTENCES]}"
               for n in others)]
            for b in comparison.buckets]
    table = legend + format_table(header, rows)
    if others and any(b.sentences < FEW_SENTENCES for b in comparison.buckets):
        table += (f"\n* fewer than {FEW_SENTENCES} sentences: the interval resamples the same few and says little; "
                  "wider buckets (--buckets) or a larger test set")
    return table


def _markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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


def _figures(comparison: Comparison, out: Path, example: int | None) -> dict[str, Path]:
    """BLEU by length (PNG, SVG) and one sentence's attention from every attention model."""
    files: dict[str, Path] = {}
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
    return files


def write_comparison(comparison: Comparison, out: str | Path, example: int | None = None,
                     seal: bool = True) -> dict[str, Path]:
    """Every table as CSV, Markdown and JSON, the length plot as PNG and SVG, and one figure
    with the same sentence's attention from every model side by side. Each file is written
    whole or not at all (a failed write keeps its previous version); where ``out`` holds an
    earlier report, its files this one does not write (a by-variant table, a figure) are
    removed. ``seal``: mark ``out`` as mt's compare report (``manifest.json``, written last),
    so a later ``mt compare --out`` may write into it again; a caller that adds files to the
    folder seals it itself once they are written (``seal_report``)."""
    out = Path(out)
    earlier = kind_of(out) == COMPARE_REPORT
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
    names = [e.name for e in comparison.entries]
    others = [n for n in names if n != comparison.baseline]
    header = ["bucket", "sentences", *names]
    for n in others:
        header += [f"gap {n}", f"gap_low {n}", f"gap_high {n}", f"p {n}"]
    files["bleu_by_length.csv"] = write_csv(out / "bleu_by_length.csv", header, [
        [b.bucket, b.sentences, *(b.bleu[n] for n in names),
         *(v for n in others for v in (b.gap[n], b.gap_low[n], b.gap_high[n], b.p_value[n]))]
        for b in comparison.buckets])
    files.update(_figures(comparison, out, example))
    variants = by_variant(comparison)
    if any(v["seeds"] > 1 for v in variants):
        columns = list(variants[0])
        files["scores_by_variant.csv"] = write_csv(out / "scores_by_variant.csv", columns,
                                                   [[v[c] for c in columns] for v in variants])
        md += "\nBy variant (mean and standard deviation over seeds):\n\n"
        md += _markdown(columns, [[v[c] for c in columns] for v in variants])
    files["scores.md"] = write_text_file(out / "scores.md", md)
    with output_file(out / "translations.txt") as handle:
        for i, s in enumerate(comparison.sources):
            handle.write(f"source     {s}\nreference  {comparison.references[i]}\n")
            for n in names:
                handle.write(f"{n}  {comparison.translations[n][i].text}\n")
            handle.write("\n")
    files["translations.txt"] = out / "translations.txt"
    files["results.json"] = write_text_file(out / "results.json", json.dumps({
        "sentences": comparison.sentences, "beam": comparison.beam, "baseline": comparison.baseline,
        "bootstrap_samples": comparison.bootstrap_samples, "seed": comparison.seed,
        "models": [asdict(e) for e in comparison.entries], "scores": rows,
        "signatures": {n: {"bleu": s.bleu_signature, "chrf": s.chrf_signature} for n, s in comparison.scores.items()},
        "by_length": [asdict(b) for b in comparison.buckets], "by_variant": variants, "search": comparison.search,
        "from_records": comparison.saved,
    }, indent=2))
    if earlier:  # the earlier report's tables and figures this one has no rows for
        remove_stale(out, [out / name for name in REPORT_FILES if name not in files])
    if seal:
        seal_report(out)
    return files


def seal_report(out: str | Path) -> None:
    """Marks ``out`` as a complete compare report (mt.files.write_manifest, written last)."""
    try:
        out = Path(out)  # the report's own files: not the runs a demo trains beside them
        files = [p.relative_to(out).as_posix() for p in [*out.iterdir(), *(out / "alignments").glob("*")]
                 if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")] if out.is_dir() else []
        write_manifest(out, COMPARE_REPORT, files=files)
    except OSError as err:
        why = write_failure(err)
        if why is None:
            raise
        raise WriteError(f"could not write {Path(out) / MANIFEST} ({why}); the report's files are written, "
                         "free space there and run again") from err
