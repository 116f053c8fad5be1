"""The Multi30k study's tables in docs/lab/results.md, from an mt compare output folder.

The lab notebook shows the study as one row per run, a row per variant (mean and standard deviation
over its seeds) and BLEU by length with each run's gap to the baseline; mt compare writes the
same numbers as CSV (scores.csv, scores_by_variant.csv, bleu_by_length.csv). This turns the
CSVs into those Markdown tables, so the report is regenerated, not retyped:

    mt compare --systems studies/multi30k_attention/results/m30k_study --split test --beam 5 --out cmp/
    .venv/bin/python studies/multi30k_attention/tables.py cmp/                          # print them
    .venv/bin/python studies/multi30k_attention/tables.py cmp/ --write docs/lab/results.md  # replace them there

A second compare of the same records against another baseline (``--baseline``, say Bahdanau's
median seed) adds its p-values as a column of the runs table:

    mt compare --systems studies/multi30k_attention/results/m30k_study --split test --beam 5 --baseline "NAME" --out cmp-b/
    .venv/bin/python studies/multi30k_attention/tables.py cmp/ --against cmp-b/ --write docs/lab/results.md

With --write, each table replaces the lines between ``<!-- m30k-study:NAME -->`` and
``<!-- /m30k-study:NAME -->`` (NAME: runs, variants, length) and the rest of the file is left
as it is. Only formatting happens here; every number is read from the CSVs.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from pathlib import Path

# The variant strings mt compare writes, in the report's order, with the report's names.
NAMES = {
    "no attention": "no attention",
    "bahdanau additive": "Bahdanau",
    "bahdanau additive sparsemax": "Bahdanau, sparsemax",
    "luong dot": "Luong dot",
    "luong general": "Luong general",
    "luong concat": "Luong concat",
    "luong scaled_dot": "Luong scaled dot",
    "luong cosine": "Luong cosine",
    "luong_local general": "Luong local-p (general)",
    "luong euclidean": "Luong Euclidean",
    "luong pearson": "Luong Pearson",
    "bahdanau additive sigmoid": "Bahdanau, sigmoid",
    "bahdanau additive max": "Bahdanau, max",
    "bahdanau additive top-3": "Bahdanau, top-3",
    "bahdanau additive hard": "Bahdanau, hard",
}


def display(variant: str) -> tuple[int, str]:
    """(order, name) of a variant string such as "gru 128, luong dot"."""
    if variant.startswith("transformer"):
        m = re.match(r"transformer (\d+\+\d+), d (\d+)", variant)
        return len(NAMES), f"Transformer ({m.group(1)}, d {m.group(2)})" if m else variant
    kind = variant.split(", ", 1)[-1]
    return (list(NAMES).index(kind), NAMES[kind]) if kind in NAMES else (len(NAMES) + 1, variant)


def seed_of(row: dict) -> str:
    if row.get("seed"):
        return row["seed"]
    m = re.search(r" seed (\d+)$", row["model"])
    return m.group(1) if m else ""


def read(path: Path) -> list[dict]:
    if not path.is_file():
        sys.exit(f"{path} does not exist: pass the --out folder of an mt compare run")
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def num(value: str, digits: int = 2, thousands: bool = False) -> str:
    if value in ("", None):
        return ""
    x = float(value)
    return f"{x:,.0f}" if thousands else f"{x:.{digits}f}"


def table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def p_cell(p: str) -> str:
    return f"{float(p):.3f}" if p else "(baseline)"


def against(scores: list[dict], other: list[dict]) -> tuple[str, dict[str, str]]:
    """The other compare's baseline, named as the report names it, and its p-value for each
    model of ``scores`` (matched by name: the same records compared twice name them alike)."""
    base = [r for r in other if not r["p_value_vs_baseline"]]
    if len(base) != 1:
        sys.exit("--against: its scores.csv has no single baseline row; pass the --out folder of an mt compare run")
    missing = {r["model"] for r in scores} - {r["model"] for r in other}
    if missing:
        sys.exit(f"--against: {len(missing)} model(s) are not in its scores.csv ({', '.join(sorted(missing)[:3])}); "
                 "compare the same records in both")
    name, seed = display(base[0]["variant"])[1], seed_of(base[0])
    return f"{name}{f' (seed {seed})' if seed else ''}", {r["model"]: p_cell(r["p_value_vs_baseline"]) for r in other}


def runs_table(scores: list[dict], other: list[dict] | None = None) -> str:
    second_name, second = against(scores, other) if other else ("", {})
    second_header = [f"p vs {second_name}"] if other else []
    rows = []
    for r in sorted(scores, key=lambda r: (display(r["variant"]), int(seed_of(r) or 0))):
        epochs = f"{r['epochs']} / {r['best_epoch']}" if r.get("epochs") else ""
        interval = r["bleu_95ci"].split("+-")[-1].strip() if r["bleu_95ci"] else ""
        rows.append([display(r["variant"])[1], seed_of(r), num(r["parameters"], thousands=True), epochs,
                     num(r["train_seconds"], thousands=True), num(r["valid_bleu"]),
                     f"{num(r['test_bleu'])} (+- {interval})" if interval else num(r["test_bleu"]),
                     num(r["test_chrf"]), p_cell(r["p_value_vs_baseline"]),
                     *([second[r["model"]]] if other else []), num(r["attention_entropy"])])
    header = ["model", "seed", "parameters", "epochs (stop / best)", "train s", "valid BLEU",
              "test BLEU (95% interval)", "test chrF", "p vs no attention", *second_header, "attention entropy (nats)"]
    return table(header, ["---"] + ["---:"] * (len(header) - 1), rows)


def variants_table(scores: list[dict], by_variant: list[dict]) -> str:
    """Mean ± sd per variant, with the median wall clock of its runs."""
    seconds: dict[str, list[float]] = {}
    for r in scores:
        if r["train_seconds"]:
            seconds.setdefault(r["variant"], []).append(float(r["train_seconds"]))
    rows = []
    for v in sorted(by_variant, key=lambda v: display(v["variant"])):
        sd = int(v["seeds"]) > 1
        rows.append([display(v["variant"])[1], v["seeds"], num(v["parameters"], thousands=True),
                     f"{num(v['bleu_mean'])} ± {num(v['bleu_std'])}" if sd else num(v["bleu_mean"]),
                     f"{num(v['chrf_mean'])} ± {num(v['chrf_std'])}" if sd else num(v["chrf_mean"]),
                     num(v["valid_bleu_mean"]),
                     f"{statistics.median(seconds[v['variant']]):,.0f}" if v["variant"] in seconds else ""])
    return table(["model", "seeds", "parameters", "test BLEU, mean ± sd", "test chrF, mean ± sd",
                  "valid BLEU, mean", "train s, median"],
                 ["---", "---:", "---:", "---:", "---:", "---:", "---:"], rows)


def length_table(scores: list[dict], by_length: list[dict], min_sentences: int) -> str:
    buckets = [b for b in by_length if int(b["sentences"]) >= min_sentences]
    header, align = ["model", "seed"], ["---", "---:"]
    for b in buckets:
        header += [f"{b['bucket']} words ({b['sentences']}): BLEU", "gap [95%]"]
        align += ["---:", "---"]
    rows = []
    for r in sorted(scores, key=lambda r: (display(r["variant"]), int(seed_of(r) or 0))):
        name, row = r["model"], [display(r["variant"])[1], seed_of(r)]
        for b in buckets:
            row.append(num(b[name]))
            if f"gap {name}" in b:
                row.append(f"{float(b[f'gap {name}']):+.1f} [{float(b[f'gap_low {name}']):+.1f}, "
                           f"{float(b[f'gap_high {name}']):+.1f}]")
            else:
                row.append("(baseline)")
        rows.append(row)
    return table(header, align, rows)


def write_into(path: Path, tables: dict[str, str]) -> None:
    """Each table between its markers in ``path``; a missing marker is an error, not a skip."""
    text = path.read_text(encoding="utf-8")
    for name, body in tables.items():
        start, end = f"<!-- m30k-study:{name} -->", f"<!-- /m30k-study:{name} -->"
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            sys.exit(f"{path} needs one '{start}' line and one '{end}' line after it, around the {name} table")
        head, rest = text.split(start)
        text = f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("compare_dir", type=Path, help="the --out folder of mt compare")
    parser.add_argument("--min-sentences", type=int, default=10,
                        help="length buckets with fewer sentences stay in the CSV only (default 10)")
    parser.add_argument("--against", type=Path, metavar="COMPARE_DIR",
                        help="a second mt compare of the same models against another baseline: its p-values "
                             "become a column of the runs table")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="replace the tables between their markers in FILE instead of printing them")
    args = parser.parse_args(argv)
    scores = read(args.compare_dir / "scores.csv")
    tables = {"runs": runs_table(scores, read(args.against / "scores.csv") if args.against else None)}
    if (args.compare_dir / "scores_by_variant.csv").is_file():  # written once a variant has two seeds
        tables["variants"] = variants_table(scores, read(args.compare_dir / "scores_by_variant.csv"))
    tables["length"] = length_table(scores, read(args.compare_dir / "bleu_by_length.csv"), args.min_sentences)
    if args.write:
        write_into(args.write, tables)
        print(f"{', '.join(tables)} tables written into {args.write}")
        return
    for name, body in tables.items():
        print(f"<!-- m30k-study:{name} -->\n{body}\n<!-- /m30k-study:{name} -->\n")


if __name__ == "__main__":
    main()
