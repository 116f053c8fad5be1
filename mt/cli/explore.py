"""``mt explore``: one self-contained HTML page to browse the attention of models on many
sentences (``mt.analysis.explore.explore_models``)."""

from __future__ import annotations

import argparse

from mt.cli.flags import add_language_flag, add_model_flags, add_search_flags, check_files, new_parser, search_config


def parser() -> argparse.ArgumentParser:
    explore = new_parser("explore", "Write one self-contained HTML page to browse the attention of one or more models "
                         "on many sentences: a searchable, sortable sentence list, each model's translation and "
                         "heatmap, a Transformer's layers and heads, gold links, subword or word view and a threshold "
                         "slider. No server, no network: open the file in any browser.")
    explore.add_argument("models", nargs="+", help="model directories (runs/NAME/model), run directories or a "
                         "multirun directory")
    explore.add_argument("--src-file", required=True, help="source sentences, one a line (.gz accepted)")
    explore.add_argument("--ref-file", help="references, line-aligned: sentence BLEU, and the attention while each "
                         "model reads the reference")
    explore.add_argument("--gold", help="gold word alignments of the source-reference pairs (Pharaoh, 0-based) to "
                         "draw over the maps and sort by AER")
    explore.add_argument("--out", required=True, help="the HTML file to write")
    explore.add_argument("--max-sentences", type=int, default=500,
                         help="explore the first N lines (default 500; 0: all)")
    explore.add_argument("--title", default="", help="the page's title")
    add_search_flags(explore)
    add_model_flags(explore)
    add_language_flag(explore)
    return explore


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    from mt.analysis.compare.entries import find_model_dirs
    from mt.analysis.explore import explore_models

    check_files(ns, ["--out"], ["--src-file", "--ref-file", "--gold"], find_model_dirs(ns.models))
    path, sentences, models = explore_models(ns.models, ns.src_file, ns.ref_file, ns.gold, ns.out, ns.max_sentences,
                                             ns.title, search_config(ns), ns.device, ns.precision,
                                             ns.force_language)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB): {sentences} sentences, {models} models; open it in a browser")
    return 0
