"""``mt translate``, ``evaluate``, ``align``, ``aer``, ``average``, ``compare``, ``explore`` and ``serve``:
each parses its arguments into the library's settings (a SearchConfig, AlignOptions, a
CompareRequest) and calls the library (``mt.decoding``, ``mt.analysis``, ``mt.evaluation``);
the library imports are lazy, so ``mt --help`` and ``mt aer`` start without torch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mt.config import Precision
from mt.errors import MTError
from mt.export import open_translator


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    from mt.decoding.search import GREEDY as DEFAULT  # the defaults are SearchConfig's, written once

    parser.add_argument("--beam", type=int, default=DEFAULT.beam, help="beam size (1: greedy)")
    parser.add_argument("--length-penalty", type=float, default=DEFAULT.length_penalty, metavar="ALPHA",
                        help=f"beam hypotheses are ranked by score / penalty(length, ALPHA) (default "
                        f"{DEFAULT.length_penalty:g}; 0: raw score)")
    parser.add_argument("--length-penalty-type", default=DEFAULT.penalty.value, choices=["plain", "gnmt"],
                        help="plain: length ** ALPHA (default); gnmt: ((5 + length) / 6) ** ALPHA (Wu et al. 2016)")
    parser.add_argument("--no-repeat-ngram", type=int, default=DEFAULT.no_repeat_ngram, metavar="N",
                        help="never repeat an N-gram in one output (default 0: allowed)")
    parser.add_argument("--max-len-a", type=float, default=DEFAULT.max_len_a,
                        help=f"a sentence of n source pieces gets at most a * n + b output pieces (default "
                        f"a={DEFAULT.max_len_a:g})")
    parser.add_argument("--max-len-b", type=int, default=DEFAULT.max_len_b,
                        help=f"see --max-len-a (default b={DEFAULT.max_len_b})")
    parser.add_argument("--max-input-len", type=int, default=DEFAULT.max_input_len, metavar="N",
                        help=f"read at most N source pieces of a line (default {DEFAULT.max_input_len}); a longer line "
                        "is cut, with a warning naming it (a Transformer's model.max_positions caps it too)")
    parser.add_argument("--device", default="auto", help="auto (default: the GPU when there is one), cpu, cuda or "
                        "cuda:N")
    parser.add_argument("--precision", default="auto", choices=[p.value for p in Precision],
                        help="auto (default): bf16 where the hardware computes it natively, else fp32")


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"mt {prog}", description=description)
    parser.add_argument("model_dir", help="a model directory written by mt train (its 'model' folder)")
    _add_search_options(parser)
    return parser


def _search(ns: argparse.Namespace, nbest: int = 1, keep_attention: bool = True):
    """The command line's search settings, checked once (a bad value is one line, exit 2).
    ``keep_attention``: whether the command uses the attention (plain translation does not)."""
    from mt.decoding.search import SearchConfig

    return SearchConfig(beam=ns.beam, nbest=nbest, length_penalty=ns.length_penalty, penalty=ns.length_penalty_type,
                        max_len_a=ns.max_len_a, max_len_b=ns.max_len_b, no_repeat_ngram=ns.no_repeat_ngram,
                        max_input_len=ns.max_input_len, keep_attention=keep_attention)


def _translator(ns: argparse.Namespace, model_dir: str | None = None):

    return open_translator(model_dir or ns.model_dir, ns.device, ns.precision)


def translate(args: list[str]) -> int:
    parser = _parser("translate", "Translate one sentence a line, in order; an empty line stays empty.")
    parser.add_argument("--input", "-i", help="source file (default: stdin)")
    parser.add_argument("--output", "-o", help="output file (default: stdout)")
    parser.add_argument("--nbest", type=int, default=1, metavar="N",
                        help="write the N best translations of each line as 'i ||| text ||| log-probability ||| "
                             "ranking score' (i counts lines from 0; the beam is at least N wide)")
    ns = parser.parse_args(args)
    from mt.analysis.outputs import check_output_files

    check_output_files([("--output", ns.output)], [("--input", ns.input)], [ns.model_dir])
    from mt.data.corpus import read_lines, split_lines
    from mt.decoding.translator import nbest_lines

    search = _search(ns, ns.nbest, keep_attention=False)
    translator = _translator(ns)

    def run(lines: list[str], first: int = 0) -> str:
        if search.nbest > 1:
            return nbest_lines(translator.translate_nbest(lines, search=search), first)
        return "".join(t.text + "\n" for t in translator.translate(lines, search))

    if ns.input is None and sys.stdin.isatty():
        # Interactive: answer each line as it is typed.
        print("Type a sentence and press Enter (Ctrl-D to end).", file=sys.stderr)
        for i, line in enumerate(sys.stdin):
            sys.stdout.write(run([line.rstrip("\n")], i))
            sys.stdout.flush()
        return 0
    text = run(read_lines(ns.input) if ns.input else split_lines(sys.stdin.read()))
    if ns.output:
        from mt.files import write_text_file

        write_text_file(ns.output, text)  # whole or not at all: the previous file stays until the new one is complete
    else:
        sys.stdout.write(text)
    return 0


def evaluate(args: list[str]) -> int:
    parser = _parser("evaluate", "BLEU and chrF (sacrebleu) of the model's translations of --src against --ref.")
    parser.add_argument("--src", required=True, help="source file, one sentence a line (.gz accepted)")
    parser.add_argument("--ref", required=True, help="reference file, line-aligned with --src")
    parser.add_argument("--output", help="also write the translations here")
    parser.add_argument("--json", help="also write the scores here as JSON")
    ns = parser.parse_args(args)
    from mt.analysis.evaluate import evaluate as evaluate_model
    from mt.analysis.evaluate import read_test_set
    from mt.analysis.outputs import check_output_files
    from mt.files import write_text_file

    check_output_files([("--output", ns.output), ("--json", ns.json)], [("--src", ns.src), ("--ref", ns.ref)],
                       [ns.model_dir])

    search = _search(ns, keep_attention=False)
    sources, references = read_test_set(ns.src, ns.ref)
    result = evaluate_model(_translator(ns), sources, references, search)
    if ns.output:
        write_text_file(ns.output, "".join(h + "\n" for h in result.hypotheses))
    print(result.report())
    if ns.json:
        write_text_file(ns.json, json.dumps(result.as_dict(ns.model_dir), indent=2))
    return 0


def align(args: list[str]) -> int:
    parser = _parser("align", "Draw the attention of the model on one sentence pair as a heatmap (--src), or align "
                     "whole files (--src-file): Pharaoh word alignments, soft matrices and heatmaps.")
    parser.add_argument("--src", help="the source sentence")
    parser.add_argument("--ref", help="a target sentence to force-decode (default: the model's own translation)")
    parser.add_argument("--out", help="image file to write (.png, .pdf or .svg), for --src")
    parser.add_argument("--json", help="also write tokens and weights here as JSON, for --src")
    parser.add_argument("--all-heads", action="store_true",
                        help="draw every layer and head (a grid) instead of the model's single summary map")
    files = parser.add_argument_group("files")
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
    files.add_argument("--words", action="store_true", help="draw heatmaps over words instead of subword pieces")
    files.add_argument("--max-plots", type=int, default=0, help="draw at most this many heatmaps (0: all)")
    files.add_argument("--rule", default="argmax", choices=["argmax", "threshold"],
                       help="argmax: each target word to its heaviest source word; threshold: every pair whose "
                       "weight reaches --threshold")
    files.add_argument("--threshold", type=float, default=0.5)
    files.add_argument("--shift-att", action=argparse.BooleanOptionalAction, default=None,
                       help="Shift-Att: read target word j from the step where it is the decoder's input (Chen et al. "
                       "2020; helps Transformers). Default: as the model was trained (train.alignment_shift)")
    files.add_argument("--layer", type=int, help="use this layer's cross-attention (Transformer; -1: the last) "
                       "instead of the model's summary map")
    files.add_argument("--head", type=int, help="with --layer: this head only (default: the mean of the heads)")
    files.add_argument("--explore", metavar="PAGE.html", help="also write the mt explore page of these pairs "
                       "(the first 500)")
    files.add_argument("--backward-model", help="a model trained in the other direction (target to source): "
                       "symmetrise both directions' links (--symmetrize)")
    # the keys of mt.decoding.attention_alignment.SYMMETRISATIONS and mean (mt.analysis.align_files.average_directions),
    # written here so that parsing needs no torch
    files.add_argument("--symmetrize", choices=["grow-diag-final-and", "intersection", "union", "mean"],
                       help="with --backward-model: grow-diag-final-and (default), intersection (links both "
                       "directions agree on: precision), union (recall), or mean (the rule reads the mean of both "
                       "directions' soft word matrices)")
    ns = parser.parse_args(args)
    search = _search(ns)
    if ns.src_file or ns.pairs:
        return _align_files(ns, search)
    if ns.src is None or not ns.out:
        raise MTError("give --src and --out to draw one sentence, or --src-file to align a file")
    from mt.analysis.align_files import draw_sentence
    from mt.analysis.outputs import check_output_files
    from mt.visualization.heatmap import image_format

    if not ns.src.strip():
        raise MTError("--src is empty: give a sentence to align")
    image_format(ns.out)
    check_output_files([("--out", ns.out), ("--json", ns.json)], [], [ns.model_dir])
    result = draw_sentence(_translator(ns), ns.src, ns.out, ns.ref, search, ns.all_heads, ns.json)
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
    from mt.analysis.outputs import HEATMAPS, check_output_files, check_report_dir
    from mt.data.corpus import read_parallel
    from mt.decoding.attention_alignment import AlignOptions

    files = AlignmentFiles(ns.pharaoh, ns.one_based, ns.jsonl, ns.npz, ns.out_dir, ns.format, ns.words, ns.max_plots,
                           ns.explore)
    options = AlignOptions(ns.rule, ns.threshold, ns.shift_att, ns.layer, ns.head)
    if ns.pairs and (ns.src_file or ns.ref_file):
        raise MTError("give either --pairs or --src-file/--ref-file, not both")
    if ns.explore and not ns.explore.endswith((".html", ".htm")):
        raise MTError(f"{ns.explore}: the page is HTML; name it e.g. explore.html")
    models = [ns.model_dir, *([ns.backward_model] if ns.backward_model else [])]
    check_output_files([("--pharaoh", ns.pharaoh), ("--jsonl", ns.jsonl), ("--npz", ns.npz), ("--explore", ns.explore)],
                       [("--src-file", ns.src_file), ("--ref-file", ns.ref_file), ("--pairs", ns.pairs)], models)
    if ns.out_dir:
        check_report_dir(ns.out_dir, HEATMAPS, ns.force, "--out-dir", models)
    sources, targets = read_pairs(ns.pairs) if ns.pairs else read_parallel(ns.src_file, ns.ref_file)
    sources, targets = prepare_pairs(sources, targets, ns.lowercase, ns.unescape_moses)
    if ns.symmetrize and not ns.backward_model:
        raise MTError(f"--symmetrize {ns.symmetrize} combines two directions: give --backward-model too")
    backward = _translator(ns, ns.backward_model) if ns.backward_model else None
    pairs = align_files(_translator(ns), sources, targets, files, search, options, backward,
                        Path(ns.model_dir).parent.name or "model", ns.symmetrize or "grow-diag-final-and")
    drawn = draw_pairs(pairs, files)
    written = [x for x in (ns.pharaoh, ns.jsonl, ns.npz) if x] + ([f"{drawn} heatmaps in {ns.out_dir}"]
                                                                  if ns.out_dir else [])
    print(f"aligned {len(pairs)} sentence pairs: {', '.join(written)}")
    unknown = unknown_words(pairs)
    if unknown:
        print(f"note: {unknown[0]:,} of {unknown[1]:,} source words and {unknown[2]:,} of {unknown[3]:,} target words "
              "hold pieces outside the model's vocabulary (<unk>); their links are guesses", file=sys.stderr)
    return 0


def aer(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mt aer", description="Alignment error rate, precision and recall (Och & Ney 2003) of predicted word "
        "alignments against gold with sure (i-j) and possible (ipj) links; one line per sentence pair, i the "
        "source word and j the target word.")
    parser.add_argument("--gold", required=True, help="gold alignments (Pharaoh: i-j sure, ipj possible)")
    parser.add_argument("--pred", required=True, help="predicted alignments (Pharaoh i-j, as mt align --pharaoh writes)")
    parser.add_argument("--gold-one-based", action="store_true", help="the gold counts words from 1 (as the Hansards "
                        "set of ../shared/data/alignments does)")
    parser.add_argument("--pred-one-based", action="store_true", help="the prediction counts words from 1")
    parser.add_argument("--swap-gold", action="store_true",
                        help="the gold writes target-source (j-i): swap each pair before scoring")
    parser.add_argument("--by-length", metavar="TEXT", help="also score by source length: the source sentences "
                        "of the same pairs, one a line (or 'source ||| target' lines, as mt align --pairs reads)")
    parser.add_argument("--edges", type=int, nargs="+", default=[10, 18], metavar="N",
                        help="with --by-length: the longest sentence of each bucket (default 10 18: 1-10, 11-18, 19+)")
    parser.add_argument("--json", help="also write the scores here as JSON")
    ns = parser.parse_args(args)
    from mt.analysis.outputs import check_output_files

    check_output_files([("--json", ns.json)], [("--gold", ns.gold), ("--pred", ns.pred), ("--by-length", ns.by_length)])
    from mt.evaluation.aer import aer_by_length, alignment_error_rate, read_gold_and_predicted

    gold, predicted = read_gold_and_predicted(ns.gold, ns.pred, ns.gold_one_based, ns.pred_one_based, ns.swap_gold)
    scores = alignment_error_rate(gold, predicted)
    print(f"AER {scores.aer:.2f}  precision {scores.precision:.2f}  recall {scores.recall:.2f}  "
          f"({scores.sentences} sentences; {scores.predicted} predicted, {scores.sure} sure and "
          f"{scores.possible} possible gold links)")
    result = scores.as_dict()
    if ns.by_length:
        from mt.data.corpus import read_lines

        lengths = [len(line.split("|||")[0].split()) for line in read_lines(ns.by_length)]  # source words
        buckets = aer_by_length(gold, predicted, lengths, ns.edges)
        for label, s in buckets:
            print(f"  {label:>7} source words: AER {s.aer:.2f}  precision {s.precision:.2f}  recall {s.recall:.2f}  "
                  f"({s.sentences} sentences)")
        result["by_length"] = [{"source_words": label, **s.as_dict()} for label, s in buckets]
    if ns.json:
        from mt.files import write_text_file

        write_text_file(ns.json, json.dumps(result, indent=2) + "\n")
    return 0


def average(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt average", description="Average the weights of several models of a run.")
    parser.add_argument("paths", nargs="+", help="model directories, or a run directory whose kept checkpoints "
                                                 "(train.keep_checkpoints) are averaged")
    parser.add_argument("--last", type=int, default=0, help="use only the newest N models (0: all)")
    parser.add_argument("--out", required=True, help="the model directory to write: a new or empty folder, or an "
                        "earlier average (replaced once the new one is complete)")
    parser.add_argument("--force", action="store_true", help="also replace an export mt wrote at --out (never a "
                        "trained model or a folder mt did not write)")
    ns = parser.parse_args(args)
    from mt.training.averaging import average_paths

    dirs, out = average_paths([Path(p) for p in ns.paths], Path(ns.out), ns.last, ns.force)
    print(f"averaged {len(dirs)} models: {', '.join(str(d) for d in dirs)}\nmodel directory: {out}")
    return 0


def export(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mt export", description="Write a model for deployment, which every mt command (translate, evaluate, "
        "align, compare, serve) runs like a model directory: --to ctranslate2 (Transformers) or --to int8 (any model).")
    parser.add_argument("model_dir", help="the model directory to export")
    parser.add_argument("--to", required=True, choices=["ctranslate2", "int8"],
                        help="ctranslate2: a CTranslate2 model (Transformers); int8: any model with int8 weights "
                        "(about a quarter of the size) that translates with int8 products on the CPU")
    parser.add_argument("--quantization", default=None,
                        help="for --to ctranslate2, the weight type: int8 (default), int8_float32, int16, float32, "
                        "bfloat16, int8_bfloat16")
    parser.add_argument("--out", required=True, help="the directory to write: a new or empty folder, or an earlier "
                        "export of the same kind (replaced once the new one is complete)")
    parser.add_argument("--force", action="store_true", help="also replace an export of the other kind or an average "
                        "mt wrote at --out (never a trained model or a folder mt did not write)")
    ns = parser.parse_args(args)
    if ns.to == "int8":
        if ns.quantization not in (None, "int8"):
            raise MTError(f"--quantization {ns.quantization} is for --to ctranslate2; --to int8 always writes int8")
        from mt.export.int8 import export_int8

        out = export_int8(ns.model_dir, ns.out, ns.force)
        size = (out / "model.int8.safetensors").stat().st_size
        print(f"int8 model ({size / 2**20:.2f} MiB of weights): {out}\n"
              f"translate with it as with a model directory: mt translate {out} < input.txt")
        return 0
    from mt.export.ctranslate2 import export_ctranslate2

    quantization = ns.quantization or "int8"
    out = export_ctranslate2(ns.model_dir, ns.out, quantization, ns.force)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"CTranslate2 model ({quantization}, {size / 2**20:.1f} MiB): {out}\n"
          f"translate with it as with a model directory: mt translate {out} < input.txt")
    return 0


def _buckets(text: str) -> list[tuple[int, int]]:
    """'10,20,30,40' -> (1-10), (11-20), (21-30), (31-40), (41+)."""
    from mt.evaluation.metrics import length_buckets

    try:
        edges = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        edges = []
    try:
        return length_buckets(edges)
    except MTError:
        raise MTError(f"--buckets {text!r}: give increasing upper bounds in words, e.g. --buckets 10,20,30,40") from None


def compare(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mt compare", description="Translate one test set with several models and compare them: BLEU and "
        "chrF with sacrebleu's paired bootstrap against a baseline, BLEU by source length, attention entropy and "
        "AER, and the same sentence's attention from every model side by side.")
    parser.add_argument("models", nargs="*", help="model directories (runs/NAME/model), run directories, or a "
                        "Hydra multirun directory (every model below it)")
    parser.add_argument("--systems", nargs="+", action="extend", metavar="PATH",
                        help="records of models translated before (folders or *.system.json.gz files written by "
                        "--save-systems): compared as if translated now, on the same test set and search settings")
    parser.add_argument("--save-systems", metavar="DIR", help="write each model's translations, run record and "
                        "attention statistics here, one *.system.json.gz per model, for a later --systems")
    parser.add_argument("--src", help="source file, one sentence a line (.gz accepted)")
    parser.add_argument("--ref", help="reference file, line-aligned with --src")
    parser.add_argument("--split", choices=["valid", "test"],
                        help="instead of --src/--ref: this split of the corpus the models were trained on")
    parser.add_argument("--out", required=True, help="folder for the tables, plots and translations: a new or empty "
                        "one, or an earlier compare report (its files replaced)")
    parser.add_argument("--force", action="store_true", help="also write into a folder of heatmaps mt wrote "
                        "(mt align --out-dir; its files are kept); never into a folder mt did not write")
    parser.add_argument("--baseline", help="the model the others are tested against (default: the first without "
                        "attention, else the first given; of several seeds of it, the one of median BLEU)")
    parser.add_argument("--gold", help="gold word alignments of the test pairs (Pharaoh i-j / ipj, 0-based) for AER")
    parser.add_argument("--buckets", default="10,20,30,40",
                        help="upper bounds of the source-length buckets in words (default 10,20,30,40)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=12345,
                        help="seed of the resampling, 1 or more (default 12345): the same seed, the same p-values")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--explore", metavar="PAGE.html", help="also write the mt explore page of these models "
                        "on the first 500 sentences")
    _add_search_options(parser)
    ns = parser.parse_args(args)
    from mt.analysis.compare.job import CompareRequest, run_compare

    request = CompareRequest(ns.out, ns.models, ns.systems or (), ns.src, ns.ref, ns.split, _search(ns), ns.baseline,
                             ns.gold, _buckets(ns.buckets), ns.bootstrap, ns.seed, ns.save_systems, ns.explore,
                             ns.device, ns.precision, not ns.no_progress, force=ns.force)
    _, report = run_compare(request)
    print(report)
    return 0


def explore(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mt explore", description="Write one self-contained HTML page to browse the attention of one or more "
        "models on many sentences: a searchable, sortable sentence list, each model's translation and heatmap, "
        "a Transformer's layers and heads, gold links, subword or word view and a threshold slider. No server, "
        "no network: open the file in any browser.")
    parser.add_argument("models", nargs="+", help="model directories (runs/NAME/model), run directories or a "
                        "multirun directory")
    parser.add_argument("--src-file", required=True, help="source sentences, one a line (.gz accepted)")
    parser.add_argument("--ref-file", help="references, line-aligned: sentence BLEU, and the attention while each "
                        "model reads the reference")
    parser.add_argument("--gold", help="gold word alignments of the source-reference pairs (Pharaoh, 0-based) to "
                        "draw over the maps and sort by AER")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--max-sentences", type=int, default=500,
                        help="explore the first N lines (default 500; 0: all)")
    parser.add_argument("--title", default="", help="the page's title")
    _add_search_options(parser)
    ns = parser.parse_args(args)
    from mt.analysis.compare.entries import find_model_dirs
    from mt.analysis.explore import explore_models
    from mt.analysis.outputs import check_output_files

    check_output_files([("--out", ns.out)], [("--src-file", ns.src_file), ("--ref-file", ns.ref_file),
                                              ("--gold", ns.gold)], find_model_dirs(ns.models))

    path, sentences, models = explore_models(ns.models, ns.src_file, ns.ref_file, ns.gold, ns.out, ns.max_sentences,
                                             ns.title, _search(ns), ns.device, ns.precision)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB): {sentences} sentences, {models} models; open it in a browser")
    return 0


def serve(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt serve", description="a translation server: LibreTranslate's API "
                                     "(POST /translate, /detect, /translate_file, GET /languages), GET /models, /health, /metrics, and at / a "
                                     "page that shows the attention of every model as you type")
    parser.add_argument("models", nargs="+", metavar="MODEL_DIR", help="model directories, each DIR or NAME=DIR "
                        "(a 'model' folder is named after its run); each language pair goes to its first model")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                        "only; 0.0.0.0 lets every machine that reaches this one translate, unauthenticated)")
    parser.add_argument("--port", type=int, default=5000)
    _add_search_options(parser)
    parser.add_argument("--batching", choices=["continuous", "window", "off"], default="continuous",
                        help="continuous (default): a request's sentences join the running search at its next step "
                        "and leave it the step they end; window: requests gathered into batches (--max-wait-ms, "
                        "--min-wait-ms); off: each request alone (for comparison)")
    parser.add_argument("--max-batch-tokens", type=int, default=4096, metavar="N",
                        help="source pieces searching at once, or per batch of concurrent requests (default 4096)")
    parser.add_argument("--max-wait-ms", type=float, default=20.0, metavar="MS",
                        help="--batching window: how long a batch waits at most for the requests of a steady load "
                        "to come back (default 20 ms; a lone request does not wait)")
    parser.add_argument("--min-wait-ms", type=float, default=0.0, metavar="MS",
                        help="--batching window: how long every batch waits for company (default 0; more: "
                        "throughput before latency)")
    parser.add_argument("--max-queue", type=int, default=2048, metavar="N",
                        help="sentences per model waiting or being translated before requests get 503 (default 2048)")
    parser.add_argument("--no-batching", action="store_true", help="the same as --batching off")
    parser.add_argument("--char-limit", type=int, default=5000, help="characters per request (default 5000)")
    parser.add_argument("--max-texts", type=int, default=64, help="texts in one request's q list (default 64)")
    parser.add_argument("--max-body", type=int, default=1_000_000, help="bytes of request body (default 1 MB)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take (default 30)")
    parser.add_argument("--read-timeout", type=float, default=10.0, metavar="S",
                        help="seconds a client has to send a request's headers, and again its body (default 10; "
                        "past it: 408 and the connection closed)")
    parser.add_argument("--max-connections", type=int, default=1000, metavar="N",
                        help="connections open at once; more are answered 503 with Retry-After (default 1000)")
    parser.add_argument("--show-paths", action="store_true",
                        help="GET /models names each model's directory (off: clients do not learn the paths)")
    parser.add_argument("--search-processes", type=int, default=1, metavar="N",
                        help="processes per model that run batches side by side (default 1; 2 with --threads 1 "
                        "gave 1.25x the sentences/s of one for a Transformer on 2 cores under load, "
                        "docs/BENCHMARKS.md)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of each search process (default: the cores shared among them, less "
                        "one for the HTTP side with --batching continuous)")
    ns = parser.parse_args(args)
    for name in ("port", "search_processes", "max_batch_tokens", "max_queue", "char_limit", "max_texts", "max_body",
                 "max_connections"):
        if getattr(ns, name) < 1:
            raise MTError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(ns, name)}")
    if ns.port > 65535:
        raise MTError(f"--port must be at most 65535, got {ns.port}")
    if ns.threads < 0:
        raise MTError(f"--threads must be at least 0 (0: the cores shared among the search processes), got {ns.threads}")
    if ns.timeout <= 0 or ns.read_timeout <= 0 or ns.max_wait_ms < 0 or ns.min_wait_ms < 0:
        raise MTError("--timeout and --read-timeout must be above 0, --max-wait-ms and --min-wait-ms at least 0")
    try:
        from mt.serving.server import serve as run_server
    except ImportError as err:
        raise MTError(f"mt serve needs the serve extra ({err.name} is missing): pip install 'mt[serve]' "
                      "(scripts/setup.sh installs it)") from None
    from mt.serving.batcher import BatchingOptions
    from mt.serving.protocol import Limits

    return run_server(ns.models, ns.host, ns.port, ns.device, ns.precision, _search(ns, keep_attention=False),
                      BatchingOptions(max_tokens=ns.max_batch_tokens, max_wait=ns.max_wait_ms / 1000,
                                      max_queue=ns.max_queue, mode="off" if ns.no_batching else ns.batching,
                                      min_wait=ns.min_wait_ms / 1000),
                      Limits(ns.char_limit, ns.max_texts, ns.max_body, ns.timeout, ns.read_timeout),
                      threads=ns.threads, processes=ns.search_processes, max_connections=ns.max_connections,
                      show_paths=ns.show_paths)
