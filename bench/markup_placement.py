"""How well ``mt serve``'s ``format: "html"`` places an inline tag: the model's word links
against human (or constructed) gold alignments.

For each test pair, one source span (contiguous source words, chosen at random with a fixed
seed among spans of 1-4 words) that the gold aligns contiguously: its linked target words form
one contiguous block, and no source word outside the span links into that block. The span is
wrapped in ``<b>``, the pair is force-decoded on the reference translation (``align_pairs``, so
the target words are the gold's target words), ``mt.decoding.markup`` places the tag by the
model's links, and the placed ``<b>`` is compared with the gold block: **exact** (it covers
exactly the gold's target words) and **overlap** (it covers at least one of them).

Rules, chosen per model on the validation pairs (never the test pairs): argmax or a threshold
(0.1-0.5) on the word attention, each with and without Shift-Att, and for a Transformer each read
from the model's own map or from one decoder layer's mean of heads (``mt align --layer``).
Beside the models:

- ``gold links``: the gold's own links placed by the same code (how much the placement itself
  loses: nothing, for these spans, by construction);
- ``same relative position``: the tag on the target words at the span's relative position
  (``round(s*m/n)`` to ``round(e*m/n)``), what a tag-placer without alignment could do. The
  fallback of a model without attention (each text node translated apart, as LibreTranslate
  does) cannot be scored this way at all: its translation of the tagged words is a separate
  translation, not words of the reference, so no gold block exists for it.

Corpora: ``demo`` (``data/demo/{valid,test}.{en,de}`` with ``.align``, Pharaoh 0-based, exact by
construction; ``mt demo`` or ``mt train data=demo`` generates it) and ``hansards`` (the 447
English-French pairs of ``../shared/data/alignments/en-fr-hansards`` (``--gold``), sure links
only, 1-based, text as ``studies/hansards_alignment/hansards_aer.py --corpus hansards prepare``
writes it into ``.bench/hansards-indomain/gold.pairs``; the first 100 pairs choose the rule, the
other 347 score it, as that study split them). The models are trained first (the ``mt train``
commands of docs/lab/benchmarks.md, "Inline tags placed by attention"); results into
``bench/results/DATE_markup/``:

    .venv/bin/python bench/markup_placement.py demo bahdanau=/tmp/markup_runs/bahdanau/model ... \\
        --json bench/results/DATE_markup/demo.json
    .venv/bin/python bench/markup_placement.py hansards transformer=RUN/model ... \\
        --json bench/results/DATE_markup/hansards.json
    .venv/bin/python bench/markup_placement.py table bench/results/DATE_markup/demo.json  # Markdown
"""

from __future__ import annotations

import argparse
import html
import json
import platform
import random
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import torch

from mt import __version__
from mt.api import (
    AlignedSegment,
    AlignOptions,
    Translator,
    align_pairs,
    links_by_rule,
    open_translator,
    parse_html,
    read_pharaoh,
)

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
HANSARDS_GOLD = REPO.parent / "shared" / "data" / "alignments" / "en-fr-hansards"
HANSARDS_PAIRS = REPO / ".bench" / "hansards-indomain" / "gold.pairs"
DEV = 100  # Hansards: the first 100 gold pairs choose the rule


def choose_span(n_src: int, n_tgt: int, links: set[tuple[int, int]], rng: random.Random,
                max_len: int = 4) -> tuple[int, int, int, int] | None:
    """A source span [s, e) that the gold aligns to one contiguous target block [a, b) into which
    no other source word links; None if the pair has none."""
    by_src: dict[int, set[int]] = {}
    by_tgt: dict[int, set[int]] = {}
    for i, j in links:
        by_src.setdefault(i, set()).add(j)
        by_tgt.setdefault(j, set()).add(i)
    candidates = []
    for s in range(n_src):
        for e in range(s + 1, min(n_src, s + max_len) + 1):
            if e - s == n_src:
                continue  # the whole sentence: nothing to place
            if not all(i in by_src for i in range(s, e)):
                continue  # every tagged word aligned in the gold
            block = set().union(*(by_src[i] for i in range(s, e)))
            a, b = min(block), max(block) + 1
            if len(block) != b - a or b - a == n_tgt:
                continue
            if any(not (s <= i < e) for j in block for i in by_tgt[j]):
                continue
            candidates.append((s, e, a, b))
    return rng.choice(candidates) if candidates else None


def tagged(words: list[str], s: int, e: int) -> str:
    return " ".join([*map(html.escape, words[:s]), "<b>" + " ".join(map(html.escape, words[s:e])) + "</b>",
                     *map(html.escape, words[e:])])


def bold_words(out: str) -> tuple[list[str], set[int]]:
    """The words of ``out`` and the indices of those inside ``<b>``."""
    words: list[str] = []
    inside: set[int] = set()
    depth = 0
    glue = False  # the last data ended inside a word

    class Reader(HTMLParser):
        def handle_starttag(self, tag, attrs):
            nonlocal depth, glue
            depth += tag == "b"

        def handle_endtag(self, tag):
            nonlocal depth
            depth -= tag == "b"

        def handle_data(self, data):
            nonlocal glue
            pieces = data.split()
            for k, piece in enumerate(pieces):
                if k == 0 and glue and not data[0].isspace() and words:
                    words[-1] += piece
                else:
                    words.append(piece)
                if depth > 0:
                    inside.add(len(words) - 1)
            glue = bool(data) and not data[-1].isspace()

    reader = Reader(convert_charrefs=True)
    reader.feed(out)
    reader.close()
    return words, inside


def place(words_src: list[str], tgt_words: list[str], span: tuple[int, int], links: set[tuple[int, int]]) -> set[int]:
    doc = parse_html(tagged(words_src, *span), split_sentences=False)
    assert doc.sentences == [" ".join(words_src)], (doc.sentences, words_src)
    out = doc.render([AlignedSegment(tgt_words, links)])
    words, inside = bold_words(out)
    assert words == tgt_words, (words, tgt_words)
    return inside


def score(placed: list[set[int]], items: list[dict]) -> dict:
    exact = sum(p == set(range(it["a"], it["b"])) for p, it in zip(placed, items))
    overlap = sum(bool(p & set(range(it["a"], it["b"]))) for p, it in zip(placed, items))
    n = len(items)
    return {"exact": round(100 * exact / n, 1) if n else 0.0, "overlap": round(100 * overlap / n, 1) if n else 0.0,
            "n": n}


def load(corpus: str, split: str,
         gold: Path = HANSARDS_GOLD) -> tuple[list[str], list[str], list[set[tuple[int, int]]]]:
    if corpus == "demo":
        folder = REPO / "data" / "demo"
        src = (folder / f"{split}.en").read_text(encoding="utf-8").splitlines()
        tgt = (folder / f"{split}.de").read_text(encoding="utf-8").splitlines()
        gold = [g.sure for g in read_pharaoh(folder / f"{split}.align")]
        return src, tgt, gold
    lines = HANSARDS_PAIRS.read_text(encoding="utf-8").splitlines()
    src = [line.split(" ||| ")[0] for line in lines]
    tgt = [line.split(" ||| ")[1] for line in lines]
    links = [g.sure for g in read_pharaoh(gold / "enfr.gold", one_based=True)]
    part = slice(0, DEV) if split == "valid" else slice(DEV, None)
    return src[part], tgt[part], links[part]


def items_of(corpus: str, split: str, seed: int, gold_dir: Path = HANSARDS_GOLD) -> list[dict]:
    src, tgt, gold = load(corpus, split, gold_dir)
    items = []
    for k, (s, t, g) in enumerate(zip(src, tgt, gold)):
        sw, tw = s.split(), t.split()
        g = {(i, j) for i, j in g if i < len(sw) and j < len(tw)}
        span = choose_span(len(sw), len(tw), g, random.Random(seed * 100_003 + k))
        if span is not None:
            items.append({"line": k, "src": s, "tgt": t, "s": span[0], "e": span[1], "a": span[2], "b": span[3],
                          "gold": g})
    return items


def rules(layer: int | None = None) -> list[tuple[str, AlignOptions]]:
    out = []
    where = "" if layer is None else f", layer {layer}"
    for shift in (False, True):
        name = (" + shift-att" if shift else "") + where
        out.append((f"argmax{name}", AlignOptions("argmax", shift_att=shift, layer=layer)))
        out += [(f"threshold {t}{name}", AlignOptions("threshold", t, shift_att=shift, layer=layer))
                for t in THRESHOLDS]
    return out


def model_links(translator: Translator, items: list[dict], lowercase: bool) -> dict[str, list[set]]:
    """Every rule's links of every item's pair, force-decoding the reference (once per Shift-Att
    and, for a Transformer, per decoder layer read: the model's own map, then each layer's mean of
    heads)."""
    out: dict[str, list[set]] = {}
    src = [it["src"].lower() if lowercase else it["src"] for it in items]
    tgt = [it["tgt"].lower() if lowercase else it["tgt"] for it in items]
    transformer = getattr(translator.model, "reduction_layer", None) is not None
    layers = [None, *range(len(translator.model.decoder))] if transformer else [None]
    for layer in layers:
        for shift in (False, True):
            pairs = align_pairs(translator, src, tgt, options=AlignOptions("argmax", shift_att=shift, layer=layer),
                                chunk=128)
            for name, options in rules(layer):
                if options.shift_att != shift:
                    continue
                out[name] = [set() if p.word_attention is None else
                             links_by_rule(torch.from_numpy(p.word_attention), options) for p in pairs]
    return out


def evaluate(items: list[dict], links: list[set]) -> dict:
    placed = [place(it["src"].split(), it["tgt"].split(), (it["s"], it["e"]), ln) for it, ln in zip(items, links)]
    return score(placed, items)


def relative(items: list[dict]) -> dict:
    placed = []
    for it in items:
        n, m = len(it["src"].split()), len(it["tgt"].split())
        a, b = round(it["s"] * m / n), round(it["e"] * m / n)
        placed.append(set(range(a, max(b, a + 1))))
    return score(placed, items)


def training(model_dir: Path) -> dict:
    """Wall clock and best validation BLEU of the run that wrote ``model_dir`` (its metrics.jsonl)."""
    metrics = model_dir.parent / "metrics.jsonl"
    if not metrics.is_file():
        return {}
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "valid_bleu" in r]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r["valid_bleu"])
    config = (model_dir / "config.yaml").read_text(encoding="utf-8") if (model_dir / "config.yaml").is_file() else ""
    return {"train_seconds": rows[-1].get("elapsed"), "valid_bleu": best["valid_bleu"], "best_epoch": best["epoch"],
            "best_step": best["step"], "last_step": rows[-1]["step"], "precision": best.get("precision"),
            "shift": "alignment_shift: true" in config}


def table(path: Path) -> str:
    """The Markdown table of a report: each model's exact and overlap rates on the test pairs with
    the rule chosen on valid, and with argmax as trained (what ``mt serve`` reads by default)."""
    report = json.loads(path.read_text(encoding="utf-8"))
    lines = [("| model | rule (chosen on valid) | exact % | overlap % | argmax as trained: exact / overlap % | "
             "n pairs | training | valid BLEU |"), "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name, row in report["models"].items():
        test = row["test"]
        trained = row.get("training", {})
        default = ""
        if "every_rule_test" in row:
            key = "argmax + shift-att" if trained.get("shift") else "argmax"
            default = f"{row['every_rule_test'][key]['exact']} / {row['every_rule_test'][key]['overlap']}"
        seconds = trained.get("train_seconds")
        lines.append(f"| {name} | {row.get('rule', '-')} | {test['exact']} | {test['overlap']} | {default or '-'} | "
                     f"{test['n']} | {f'{seconds:.0f} s' if seconds else '-'} | {trained.get('valid_bleu', '-')} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["table"]:
        for path in sys.argv[2:]:
            print(table(Path(path)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", choices=["demo", "hansards"])
    parser.add_argument("models", nargs="*", help="NAME=MODEL_DIR")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gold", type=Path, default=HANSARDS_GOLD, help="hansards: the en-fr-hansards folder")
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    lowercase = ns.corpus == "hansards"
    valid, test = items_of(ns.corpus, "valid", ns.seed, ns.gold), items_of(ns.corpus, "test", ns.seed, ns.gold)
    report: dict = {"corpus": ns.corpus, "date": time.strftime("%Y-%m-%d"), "seed": ns.seed,
                    "pairs": {"valid": len(valid), "test": len(test)},
                    "machine": {"cpu": _cpu(), "python": platform.python_version(), "torch": torch.__version__,
                                "mt": __version__}, "models": {}}
    report["models"]["gold links"] = {"test": evaluate(test, [it["gold"] for it in test])}
    report["models"]["same relative position"] = {"test": relative(test)}
    for name, base in report["models"].items():
        print(f"{name}: {base['test']}", flush=True)
    for spec in ns.models:
        name, _, path = spec.partition("=")
        start = time.perf_counter()
        translator = open_translator(path, "cpu", "fp32")
        on_valid = {rule: evaluate(valid, ln) for rule, ln in model_links(translator, valid, lowercase).items()}
        best = max(on_valid, key=lambda r: (on_valid[r]["exact"], on_valid[r]["overlap"]))
        on_test = {rule: evaluate(test, ln) for rule, ln in model_links(translator, test, lowercase).items()}
        report["models"][name] = {"model_dir": path, "rule": best, "valid": on_valid[best], "test": on_test[best],
                                  "every_rule_valid": on_valid, "every_rule_test": on_test,
                                  "training": training(Path(path)),
                                  "bench_seconds": round(time.perf_counter() - start, 1)}
        print(f"{name}: rule {best} (valid {on_valid[best]}), test {on_test[best]}", flush=True)
    if ns.json:
        ns.json.parent.mkdir(parents=True, exist_ok=True)
        ns.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {ns.json}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
