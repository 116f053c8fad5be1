"""``mt align``: the attention of one sentence pair as a heatmap
(``mt.analysis.align_files.draw_sentence``), or whole files aligned into Pharaoh links, soft
matrices and heatmaps (``mt.analysis.align_files.align_files``)."""

from __future__ import annotations

import argparse
import sys

from mt.cli.flags import (
    add_explore_flag,
    check_file_languages,
    check_files,
    model_parser,
    open_model,
    search_config,
)
from mt.errors import MTError


def parser() -> argparse.ArgumentParser:
    from mt.decoding.attention_alignment import MERGES, SYMMETRISATIONS

    align = model_parser("align", "Draw the attention of the model on one sentence pair as a heatmap (--src), or "
                         "align whole files (--src-file): Pharaoh word alignments, soft matrices and heatmaps.")
    align.add_argument("--src", help="the source sentence")
    align.add_argument("--ref", help="a target sentence to force-decode (default: the model's own translation)")
    align.add_argument("--out", help="image file to write (.png, .pdf or .svg), for --src")
    align.add_argument("--json", help="also write tokens and weights here as JSON, for --src")
    align.add_argument("--all-heads", action="store_true",
                       help="draw every layer and head (a grid) instead of the model's single summary map")
    align.add_argument("--words", action="store_true", help="draw over whitespace words instead of subword pieces "
                       "(a word's weight: the sum over its source pieces, the mean over its target pieces; with --src-file, as "
                       "--merge says)")
    files = align.add_argument_group("files")
    files.add_argument("--src-file", help="source sentences, one a line (.gz accepted)")
    files.add_argument("--ref-file", help="target sentences to force-decode, line-aligned with --src-file "
                       "(default: align the model's own translations)")
    files.add_argument("--pairs", help="sentence pairs 'source ||| target', one a line (the fast_align / eflomal "
                       "format of gold sets), instead of --src-file and --ref-file")
    files.add_argument("--lowercase", action="store_true", help="lower-case the text before the model reads it "
                       "(for a model trained on lower-cased text); words and their indices do not change")
    files.add_argument("--unescape-moses", action="store_true", help="turn Moses escapes (&apos; &quot; &amp; ...) "
                       "back into characters before the model reads the text; words and their indices do not change")
    files.add_argument("--pharaoh", help="write hard word alignments here: one line per pair, i-j with i the source "
                       "and j the target whitespace word")
    files.add_argument("--one-based", action="store_true", help="count words from 1 in --pharaoh")
    files.add_argument("--jsonl", help="write each pair's tokens, words, soft matrices and links here, a line each")
    files.add_argument("--npz", help="write the soft matrices here (numpy: attention_N over pieces, words_N over "
                       "words, for line N)")
    files.add_argument("--out-dir", help="draw a heatmap per pair into this folder: a new or empty one, or the "
                       "heatmaps of an earlier run (replaced)")
    files.add_argument("--force", action="store_true", help="also draw into a compare report mt wrote at --out-dir "
                       "(its files are kept; never a folder mt did not write)")
    files.add_argument("--format", default="png", choices=["png", "svg", "pdf"], help="heatmap file type")
    files.add_argument("--max-plots", type=int, default=0, help="draw at most this many heatmaps (0: all)")
    files.add_argument("--rule", default="argmax", choices=["argmax", "threshold"],
                       help="argmax: each target word to its heaviest source word; threshold: every pair whose "
                       "weight reaches --threshold")
    files.add_argument("--threshold", type=float, default=0.5, help="the weight a link must reach, for --rule "
                       "threshold")
    files.add_argument("--shift-att", action=argparse.BooleanOptionalAction, default=None,
                       help="Shift-Att: read target word j from the step where it is the decoder's input (Chen et al. "
                       "2020; helps Transformers). Default: as the model was trained (train.alignment_shift)")
    files.add_argument("--layer", type=int, help="use this layer's cross-attention (Transformer; -1: the last) "
                       "instead of the model's summary map")
    files.add_argument("--head", type=int, help="with --layer: this head only (default: the mean of the heads)")
    files.add_argument("--merge", default="mean", choices=MERGES,
                       help="how a target word's subword rows become its row: their mean, their max (linked wherever "
                       "one piece attends), or its first piece's row (source pieces are always summed)")
    add_explore_flag(files, "these pairs (the first 500)")
    files.add_argument("--backward-model", help="a model trained in the other direction (target to source): "
                       "symmetrise both directions' links (--symmetrize)")
    # mean: the rule reads the mean of both directions' soft matrices (mt.analysis.align_files.average_directions)
    files.add_argument("--symmetrize", choices=[*SYMMETRISATIONS, "mean"],
                       help="with --backward-model: grow-diag-final-and (default), intersection (links both "
                       "directions agree on: precision), union (recall), or mean (the rule reads the mean of both "
                       "directions' soft word matrices)")
    return align


def run(args: list[str]) -> int:
    ns = parser().parse_args(args)
    search = search_config(ns)
    if ns.src_file or ns.pairs:
        return _align_files(ns, search)
    if ns.src is None or not ns.out:
        raise MTError("give --src and --out to draw one sentence, or --src-file to align a file")
    from mt.analysis.align_files import draw_sentence
    from mt.visualization.heatmap import image_format

    if not ns.src.strip():
        raise MTError("--src is empty: give a sentence to align")
    image_format(ns.out)
    check_files(ns, ["--out", "--json"], [], [ns.model_dir])
    result = draw_sentence(open_model(ns), ns.src, ns.out, ns.ref, search, ns.all_heads, ns.json, ns.words)
    print(f"{result.text}\nheatmap: {ns.out}")
    return 0


def _align_files(ns: argparse.Namespace, search) -> int:
    from mt.analysis.align_files import (
        AlignmentFiles,
        align_files,
        draw_pairs,
        prepare_pairs,
        read_pairs,
        unknown_words,
    )
    from mt.analysis.outputs import HEATMAPS, check_report_dir
    from mt.data.corpus import read_parallel
    from mt.decoding.attention_alignment import AlignOptions
    from mt.model_dir import readable_dir

    files = AlignmentFiles(ns.pharaoh, ns.one_based, ns.jsonl, ns.npz, ns.out_dir, ns.format, ns.words, ns.max_plots,
                           ns.explore)
    options = AlignOptions(ns.rule, ns.threshold, ns.shift_att, ns.layer, ns.head, ns.merge)
    if ns.explore and ns.merge != "mean":
        raise MTError(f"--explore draws words with the mean of a word's subword rows, not --merge {ns.merge}: "
                      "drop one of the two (the page's links would not be the file's)")
    if ns.pairs and (ns.src_file or ns.ref_file):
        raise MTError("give either --pairs or --src-file/--ref-file, not both")
    if ns.explore and not ns.explore.endswith((".html", ".htm")):
        raise MTError(f"{ns.explore}: the page is HTML; name it e.g. explore.html")
    models = [ns.model_dir, *([ns.backward_model] if ns.backward_model else [])]
    check_files(ns, ["--pharaoh", "--jsonl", "--npz", "--explore"], ["--src-file", "--ref-file", "--pairs"], models)
    if ns.out_dir:
        check_report_dir(ns.out_dir, HEATMAPS, ns.force, "--out-dir", models)
    sources, targets = read_pairs(ns.pairs) if ns.pairs else read_parallel(ns.src_file, ns.ref_file)
    sources, targets = prepare_pairs(sources, targets, ns.lowercase, ns.unescape_moses)
    if ns.symmetrize and not ns.backward_model:
        raise MTError(f"--symmetrize {ns.symmetrize} combines two directions: give --backward-model too")
    backward = open_model(ns, ns.backward_model) if ns.backward_model else None
    translator = open_model(ns)
    check_file_languages(ns, translator, [(ns.src_file, "source"), (ns.ref_file, "reference")])
    pairs = align_files(translator, sources, targets, files, search, options, backward,
                        readable_dir(ns.model_dir).resolve().parent.name or "model",  # a run folder: its name
                        ns.symmetrize or "grow-diag-final-and")
    drawn = draw_pairs(pairs, files)
    written = [x for x in (ns.pharaoh, ns.jsonl, ns.npz) if x] + ([f"{drawn} heatmaps in {ns.out_dir}"]
                                                                  if ns.out_dir else [])
    print(f"aligned {len(pairs)} sentence pairs: {', '.join(written)}")
    unknown = unknown_words(pairs)
    if unknown:
        print(f"note: {unknown[0]:,} of {unknown[1]:,} source words and {unknown[2]:,} of {unknown[3]:,} target words "
              "hold pieces outside the model's vocabulary (<unk>); their links are guesses", file=sys.stderr)
    return 0
