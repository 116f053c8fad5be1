"""``mt translate``, ``mt evaluate`` and ``mt align``: each loads a model directory and
works for every model, since they only use the Translator."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mt.errors import DataError, MTError


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beam", type=int, default=1, help="beam size (1: greedy)")
    parser.add_argument("--length-penalty", type=float, default=1.0, metavar="ALPHA",
                        help="beam hypotheses are ranked by score / penalty(length, ALPHA) (default 1; 0: raw score)")
    parser.add_argument("--length-penalty-type", default="plain", choices=["plain", "gnmt"],
                        help="plain: length ** ALPHA (default); gnmt: ((5 + length) / 6) ** ALPHA (Wu et al. 2016)")
    parser.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                        help="never repeat an N-gram in one output (default 0: allowed)")
    parser.add_argument("--max-len-a", type=float, default=2.0,
                        help="a sentence of n source pieces gets at most a * n + b output pieces (default a=2)")
    parser.add_argument("--max-len-b", type=int, default=10, help="see --max-len-a (default b=10)")
    parser.add_argument("--device", default="auto", help="auto (default: the GPU when there is one), cpu, cuda or "
                        "cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="auto (default): bf16 where the hardware computes it natively, else fp32")


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"mt {prog}", description=description)
    parser.add_argument("model_dir", help="a model directory written by mt train (its 'model' folder)")
    _add_search_options(parser)
    return parser


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    ns = parser.parse_args(args)
    if ns.beam < 1:
        raise MTError(f"--beam must be at least 1, got {ns.beam}")
    if ns.no_repeat_ngram < 0:
        raise MTError(f"--no-repeat-ngram must be 0 (off) or more, got {ns.no_repeat_ngram}")
    if ns.max_len_a < 0 or ns.max_len_b < 0 or ns.max_len_a == ns.max_len_b == 0:
        raise MTError(f"--max-len-a {ns.max_len_a} --max-len-b {ns.max_len_b} allow no output: make them positive")
    return ns


def _search(ns: argparse.Namespace) -> dict:
    """The search settings of the command line, as Translator.translate takes them."""
    return {"beam": ns.beam, "length_penalty": ns.length_penalty, "max_len_a": ns.max_len_a,
            "max_len_b": ns.max_len_b, "penalty": ns.length_penalty_type, "no_repeat_ngram": ns.no_repeat_ngram}


def _translator(ns: argparse.Namespace):
    from mt.decoding.translator import Translator

    return Translator.from_dir(ns.model_dir, ns.device, ns.precision)


def _nbest_lines(translations: list[list], first: int = 0) -> str:
    """Moses/fairseq-style n-best list: ``i ||| hypothesis ||| log-probability ||| ranking score``."""
    return "".join(f"{first + i} ||| {t.text} ||| {t.score:.4f} ||| {t.normalized_score:.4f}\n"
                   for i, hyps in enumerate(translations) for t in hyps)


def translate(args: list[str]) -> int:
    parser = _parser("translate", "Translate one sentence a line, in order; an empty line stays empty.")
    parser.add_argument("--input", "-i", help="source file (default: stdin)")
    parser.add_argument("--output", "-o", help="output file (default: stdout)")
    parser.add_argument("--nbest", type=int, default=1, metavar="N",
                        help="write the N best translations of each line as 'i ||| text ||| log-probability ||| "
                             "ranking score' (i counts lines from 0; the beam is at least N wide)")
    ns = _parse(parser, args)
    from mt.data.corpus import read_lines, split_lines

    if ns.nbest < 1:
        raise MTError(f"--nbest must be at least 1, got {ns.nbest}")
    search = _search(ns)
    if ns.nbest > 1 and ns.beam == 1:
        search["beam"] = ns.nbest
    translator = _translator(ns)

    def run(lines: list[str], first: int = 0) -> str:
        if ns.nbest > 1:
            return _nbest_lines(translator.translate_nbest(lines, ns.nbest, **search), first)
        return "".join(t.text + "\n" for t in translator.translate(lines, **search))

    if ns.input is None and sys.stdin.isatty():
        # Interactive: answer each line as it is typed.
        print("Type a sentence and press Enter (Ctrl-D to end).", file=sys.stderr)
        for i, line in enumerate(sys.stdin):
            sys.stdout.write(run([line.rstrip("\n")], i))
            sys.stdout.flush()
        return 0
    text = run(read_lines(ns.input) if ns.input else split_lines(sys.stdin.read()))
    if ns.output:
        Path(ns.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def evaluate(args: list[str]) -> int:
    parser = _parser("evaluate", "BLEU and chrF (sacrebleu) of the model's translations of --src against --ref.")
    parser.add_argument("--src", required=True, help="source file, one sentence a line (.gz accepted)")
    parser.add_argument("--ref", required=True, help="reference file, line-aligned with --src")
    parser.add_argument("--output", help="also write the translations here")
    parser.add_argument("--json", help="also write the scores here as JSON")
    ns = _parse(parser, args)
    from mt.data.corpus import read_lines
    from mt.evaluation.metrics import corpus_scores, scores_by_length
    from mt.evaluation.report import format_table

    sources, references = read_lines(ns.src), read_lines(ns.ref)
    if len(sources) != len(references):
        raise DataError(f"{ns.src} has {len(sources)} lines but {ns.ref} has {len(references)}: "
                        "they must pair line by line")
    translator = _translator(ns)
    hyps = [t.text for t in translator.translate(sources, **_search(ns))]
    if ns.output:
        Path(ns.output).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    scores = corpus_scores(hyps, references)
    buckets = scores_by_length(sources, hyps, references)
    print(f"BLEU {scores.bleu:.2f}   {scores.bleu_signature}")
    print(f"chrF {scores.chrf:.2f}   {scores.chrf_signature}")
    print(f"{scores.sentences} sentences, beam {ns.beam}\n")
    print(format_table(["source words", "sentences", "BLEU", "chrF"],
                       [[b.bucket, b.sentences, f"{b.bleu:.2f}", f"{b.chrf:.2f}"] for b in buckets]))
    if ns.json:
        Path(ns.json).write_text(json.dumps({"scores": scores.as_dict(), "by_length": [b.__dict__ for b in buckets],
                                             "beam": ns.beam, "model_dir": ns.model_dir}, indent=2))
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
    files.add_argument("--out-dir", help="draw a heatmap per pair into this folder")
    files.add_argument("--format", default="png", choices=["png", "svg", "pdf"], help="heatmap file type")
    files.add_argument("--words", action="store_true", help="draw heatmaps over words instead of subword pieces")
    files.add_argument("--max-plots", type=int, default=0, help="draw at most this many heatmaps (0: all)")
    files.add_argument("--rule", default="argmax", choices=["argmax", "threshold"],
                       help="argmax: each target word to its heaviest source word; threshold: every pair whose "
                       "weight reaches --threshold")
    files.add_argument("--threshold", type=float, default=0.5)
    files.add_argument("--shift-att", action="store_true", help="Shift-Att: read target word j from the step where "
                       "it is the decoder's input (Chen et al. 2020; helps Transformers)")
    files.add_argument("--layer", type=int, help="use this layer's cross-attention (Transformer; -1: the last) "
                       "instead of the model's summary map")
    files.add_argument("--head", type=int, help="with --layer: this head only (default: the mean of the heads)")
    files.add_argument("--explore", metavar="PAGE.html", help="also write the mt explore page of these pairs "
                       "(the first 500)")
    files.add_argument("--backward-model", help="a model trained in the other direction (target to source): "
                       "symmetrise both directions' links with grow-diag-final-and")
    ns = _parse(parser, args)
    if ns.src_file or ns.pairs:
        return _align_files(ns)
    if ns.src is None or not ns.out:
        raise MTError("give --src and --out to draw one sentence, or --src-file to align a file")
    from mt.visualization.heatmap import plot_attention, plot_attention_grid

    if not ns.src.strip():
        raise MTError("--src is empty: give a sentence to align")
    translator = _translator(ns)
    if ns.ref is not None:
        result = translator.force_decode(ns.src, ns.ref)
    else:
        result = translator.translate([ns.src], **_search(ns))[0]
    if result.attention is None:
        raise MTError(f"the model in {ns.model_dir} has no attention to draw (it was trained without attention)")
    data = {"source": result.source, "output": result.text, "src_tokens": result.src_pieces,
            "tgt_tokens": result.tgt_pieces, "attention": result.attention.round(5).tolist()}
    if ns.all_heads:
        # Every layer and head while the model reads the chosen output (rows: its pieces and </s>).
        maps = translator.attention_maps(ns.src, result.tgt_ids)
        pieces = translator.tgt_tokenizer.id_to_piece(result.tgt_ids) + ["</s>"]
        plot_attention_grid(maps, result.src_pieces, pieces, ns.out, title=result.text)
        data["attention_maps"] = maps.round(5).tolist()  # [layers, heads, tgt, src]
    else:
        plot_attention(result.attention, result.src_pieces, result.tgt_pieces, ns.out, title=result.text)
    if ns.json:
        Path(ns.json).write_text(json.dumps(data, ensure_ascii=False))
    print(f"{result.text}\nheatmap: {ns.out}")
    return 0


EXPLORE_SENTENCES = 500


def _explore_page(path: str, models: list, sources: list[str], references: list[str] | None, gold: list | None,
                  search: dict, title: str) -> Path:
    """``--explore PAGE.html`` of mt align and mt compare: the mt explore page for the same
    models and sentences (the first 500)."""
    from mt.visualization.explorer import build_explorer_data, write_explorer

    if not path.endswith((".html", ".htm")):
        raise MTError(f"--explore {path}: the page is HTML; name it e.g. explore.html")
    n = EXPLORE_SENTENCES
    data = build_explorer_data(models, sources[:n], None if references is None else references[:n],
                               None if gold is None else gold[:n], search=search, progress=sys.stderr.isatty())
    written = write_explorer(data, path, title)
    print(f"explorer page: {written} ({min(n, len(sources))} sentences; open it in a browser)")
    return written


def _align_files(ns: argparse.Namespace) -> int:
    import numpy as np

    from mt.data.corpus import read_lines
    from mt.decoding.aligner import align_pairs
    from mt.decoding.translator import Translator
    from mt.evaluation.alignment import grow_diag_final_and, has_moses_escapes, prepare_text, write_pharaoh
    from mt.visualization.heatmap import plot_attention

    if not (ns.pharaoh or ns.jsonl or ns.npz or ns.out_dir or ns.explore):
        raise MTError("nothing to write: give --pharaoh, --jsonl, --npz, --out-dir and/or --explore")
    if ns.head is not None and ns.layer is None:
        raise MTError("--head needs --layer (the layer whose head to read)")
    if ns.pairs:
        if ns.src_file or ns.ref_file:
            raise MTError("give either --pairs or --src-file/--ref-file, not both")
        sources, targets = _read_pairs(ns.pairs)
    else:
        sources = read_lines(ns.src_file)
        targets = read_lines(ns.ref_file) if ns.ref_file else None
        if targets is not None and len(targets) != len(sources):
            raise DataError(f"{ns.src_file} has {len(sources)} lines but {ns.ref_file} has {len(targets)}: "
                            "they must pair line by line")
    if not ns.unescape_moses and has_moses_escapes([*sources, *(targets or [])]):
        print("note: the text holds Moses escapes (&apos;, &quot;, &amp; ...) and the model reads them as they are; "
              "add --unescape-moses if it was trained on plain text", file=sys.stderr)
    if ns.lowercase or ns.unescape_moses:
        sources = [prepare_text(s, ns.lowercase, ns.unescape_moses) for s in sources]
        targets = None if targets is None else [prepare_text(t, ns.lowercase, ns.unescape_moses) for t in targets]
    translator = _translator(ns)
    options = {"rule": ns.rule, "threshold": ns.threshold, "shift_att": ns.shift_att, "layer": ns.layer, "head": ns.head}
    pairs = align_pairs(translator, sources, targets, **_search(ns),
                        progress=sys.stderr.isatty(), **options)
    if all(p.attention is None for p in pairs) and any(p.source.strip() for p in pairs):
        raise MTError(f"the model in {ns.model_dir} has no attention to align with (it was trained without attention)")
    if ns.backward_model:
        backward = Translator.from_dir(ns.backward_model, ns.device, ns.precision)
        reverse = align_pairs(backward, [p.target for p in pairs], [p.source for p in pairs],
                              progress=sys.stderr.isatty(), **options)
        for pair, rev in zip(pairs, reverse):
            pair.links = grow_diag_final_and(pair.links, {(i, j) for j, i in rev.links})
    if ns.explore:
        _explore_page(ns.explore, [(Path(ns.model_dir).parent.name or "model", translator)], sources, targets, None,
                      _search(ns), f"mt align: {ns.model_dir}")
    if ns.pharaoh:
        write_pharaoh(ns.pharaoh, [p.links for p in pairs], one_based=ns.one_based)
    if ns.jsonl:
        with open(ns.jsonl, "w", encoding="utf-8") as handle:
            for pair in pairs:
                handle.write(json.dumps(pair.as_dict(), ensure_ascii=False) + "\n")
    if ns.npz:
        arrays = {}
        for n, pair in enumerate(pairs):
            if pair.attention is not None:
                arrays[f"attention_{n}"] = pair.attention
            if pair.word_attention is not None:
                arrays[f"words_{n}"] = pair.word_attention
        np.savez_compressed(ns.npz, **arrays)
    drawn = 0
    if ns.out_dir:
        out_dir = Path(ns.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for n, pair in enumerate(pairs):
            if pair.attention is None or (ns.max_plots and drawn >= ns.max_plots):
                continue
            if ns.words:
                plot_attention(pair.word_attention, pair.src_words, pair.tgt_words,
                               out_dir / f"{n + 1:05d}.{ns.format}", title=pair.target)
            else:
                plot_attention(pair.attention, pair.src_pieces, [*pair.tgt_pieces, "</s>"],
                               out_dir / f"{n + 1:05d}.{ns.format}", title=pair.target)
            drawn += 1
    written = [x for x in (ns.pharaoh, ns.jsonl, ns.npz) if x] + ([f"{drawn} heatmaps in {ns.out_dir}"]
                                                                  if ns.out_dir else [])
    print(f"aligned {len(pairs)} sentence pairs: {', '.join(written)}")
    unknown = _unknown_words(pairs)
    if unknown:
        print(f"note: {unknown[0]:,} of {unknown[1]:,} source words and {unknown[2]:,} of {unknown[3]:,} target words "
              "hold pieces outside the model's vocabulary (<unk>); their links are guesses", file=sys.stderr)
    return 0


def _read_pairs(path: str) -> tuple[list[str], list[str]]:
    """Source and target lines of a 'source ||| target' file; an empty line is an empty pair."""
    from mt.data.corpus import read_lines

    sources, targets = [], []
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            sources.append("")
            targets.append("")
            continue
        parts = line.split(" ||| ") if " ||| " in line else line.split("|||")
        if len(parts) != 2:
            raise DataError(f"{path}:{n}: expected 'source ||| target', found {len(parts) - 1} separators")
        sources.append(parts[0].strip())
        targets.append(parts[1].strip())
    return sources, targets


def _unknown_words(pairs: list) -> tuple[int, int, int, int] | None:
    """(unknown source words, source words, unknown target words, target words), or None if all known."""
    counts = (sum(p.unknown_src for p in pairs), sum(len(p.src_words) for p in pairs),
              sum(p.unknown_tgt for p in pairs), sum(len(p.tgt_words) for p in pairs))
    return counts if counts[0] or counts[2] else None


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
    parser.add_argument("--json", help="also write the scores here as JSON")
    ns = parser.parse_args(args)
    from mt.evaluation.alignment import alignment_error_rate, read_pharaoh

    gold = read_pharaoh(ns.gold, one_based=ns.gold_one_based, swap=ns.swap_gold)
    pred = read_pharaoh(ns.pred, one_based=ns.pred_one_based)
    if len(gold) != len(pred):
        raise DataError(f"{ns.gold} has {len(gold)} lines but {ns.pred} has {len(pred)}: "
                        "they must pair line by line")
    scores = alignment_error_rate(gold, [p.possible for p in pred])
    print(f"AER {scores.aer:.2f}  precision {scores.precision:.2f}  recall {scores.recall:.2f}  "
          f"({scores.sentences} sentences; {scores.predicted} predicted, {scores.sure} sure and "
          f"{scores.possible} possible gold links)")
    if ns.json:
        scores.to_json(ns.json)
    return 0


def average(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt average", description="Average the weights of several models of a run.")
    parser.add_argument("paths", nargs="+", help="model directories, or a run directory whose kept checkpoints "
                                                 "(train.keep_checkpoints) are averaged")
    parser.add_argument("--last", type=int, default=0, help="use only the newest N models (0: all)")
    parser.add_argument("--out", required=True, help="the model directory to write")
    ns = parser.parse_args(args)
    from mt.training.averaging import average_models, snapshots

    dirs: list[Path] = []
    for p in map(Path, ns.paths):
        dirs.extend(snapshots(p) if (p / "checkpoints").is_dir() else [p])
    if ns.last:
        dirs = dirs[-ns.last:]
    out = average_models(dirs, Path(ns.out))
    print(f"averaged {len(dirs)} models: {', '.join(str(d) for d in dirs)}\nmodel directory: {out}")
    return 0


def _buckets(text: str) -> list[tuple[int, int]]:
    """'10,20,30,40' -> (1-10), (11-20), (21-30), (31-40), (41+)."""
    try:
        edges = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        edges = []
    if not edges or edges != sorted(set(edges)) or edges[0] < 1:
        raise MTError(f"--buckets {text!r}: give increasing upper bounds in words, e.g. --buckets 10,20,30,40")
    lows = [1] + [e + 1 for e in edges]
    return [*zip(lows, edges), (lows[-1], 10_000)]


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
    parser.add_argument("--out", required=True, help="folder for the tables, plots and translations")
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
    ns = _parse(parser, args)
    from mt.data.corpus import read_lines
    from mt.evaluation.compare import (
        check_languages,
        compare_models,
        describe_models,
        find_model_dirs,
        format_by_length,
        format_scores,
        systems_to_save,
        write_comparison,
    )
    from mt.evaluation.saved_systems import load_systems, save_systems

    if (ns.src is None) != (ns.ref is None):
        raise MTError("give both --src and --ref, or --split")
    if ns.split and ns.src:
        raise MTError("give --src and --ref, or --split, not both")
    if not ns.split and not ns.src:
        raise MTError("no test set: give --src SRC --ref REF, or --split test")
    if ns.bootstrap < 1:
        raise MTError(f"--bootstrap must be at least 1, got {ns.bootstrap}")
    if ns.seed < 1:
        raise MTError(f"--seed must be 1 or more, got {ns.seed}: sacrebleu reads 0 as 'no seed', so the p-values "
                      "would change from run to run")
    buckets = _buckets(ns.buckets)
    if not ns.models and not ns.systems:
        raise MTError("no models: pass model directories (runs/NAME/model), run directories or a multirun "
                      "directory, and/or --systems records")
    entries = describe_models(find_model_dirs(ns.models)) if ns.models else []
    saved = load_systems(ns.systems) if ns.systems else []
    given = {str(Path(e.model_dir).resolve()) for e in entries}
    again = [s for s in saved if str(Path(s.entry.model_dir).resolve()) in given]
    if again:  # the model is at hand: translate it now rather than trust its older record
        print(f"note: {len(again)} record(s) under --systems are of models given too; those are translated again",
              file=sys.stderr)
        saved = [s for s in saved if s not in again]
    check_languages(entries + [s.entry for s in saved], ns.src, ns.ref)
    if ns.split:
        from mt.config import ExperimentConfig, load_yaml
        from mt.data.corpus import load_corpus

        if entries:
            data = load_yaml(Path(entries[0].model_dir) / "config.yaml", ExperimentConfig).data
        else:
            data = load_yaml(Path(saved[0].path), ExperimentConfig, text=saved[0].config).data
        test = load_corpus(data)["validation" if ns.split == "valid" else "test"]
        sources, references = list(test["src"]), list(test["tgt"])
        where = f"the {ns.split} split of {data.name} ({data.src_lang}-{data.tgt_lang})"
    else:
        sources, references = read_lines(ns.src), read_lines(ns.ref)
        if len(sources) != len(references):
            raise DataError(f"{ns.src} has {len(sources)} lines but {ns.ref} has {len(references)}: "
                            "they must pair line by line")
        where = f"{ns.src} -> {ns.ref}"
    gold = None
    if ns.gold:
        from mt.evaluation.alignment import read_pharaoh

        gold = read_pharaoh(ns.gold)
    search = _search(ns)
    comparison = compare_models(entries, sources, references, baseline=ns.baseline, buckets=buckets, gold=gold,
                                samples=ns.bootstrap, seed=ns.seed, search=search, device=ns.device,
                                precision=ns.precision, progress=not ns.no_progress, saved=saved)
    files = write_comparison(comparison, ns.out)
    if ns.save_systems:
        written = save_systems(systems_to_save(comparison), ns.save_systems)
        print(f"records of {len(written)} translated model(s) written to {ns.save_systems}")
    entries = comparison.entries
    if saved:
        print(f"{len(saved)} of the models read from --systems records (translated before, not now)")
    print(f"{len(entries)} models on {where}: {len(sources)} sentences, beam {ns.beam}; baseline "
          f"{comparison.baseline}; paired bootstrap {ns.bootstrap} resamples, seed {ns.seed}\n")
    print(format_scores(comparison))
    print(f"\n{next(iter(comparison.scores.values())).bleu_signature}")
    print("\nBLEU by source length (gap: model minus baseline [95% paired-bootstrap interval])")
    print(format_by_length(comparison))
    print(f"\nwritten to {ns.out}: {', '.join(sorted(files))}")
    if ns.explore:
        from mt.decoding.translator import Translator

        models = [(e.name, Translator.from_dir(e.model_dir, ns.device, ns.precision)) for e in entries
                  if e.name not in comparison.saved]
        if len(models) < len(entries):
            print(f"note: the explorer page shows the {len(models)} models at hand; records hold no model to explore",
                  file=sys.stderr)
        if models:
            _explore_page(ns.explore, models, sources, references, gold, search, f"mt compare: {where}")
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
    ns = _parse(parser, args)
    from mt.data.corpus import read_lines
    from mt.decoding.translator import Translator
    from mt.evaluation.compare import check_languages, describe_models, find_model_dirs
    from mt.visualization.explorer import build_explorer_data, write_explorer

    if ns.max_sentences < 0:
        raise MTError(f"--max-sentences must be 0 (all) or more, got {ns.max_sentences}")
    if not ns.out.endswith((".html", ".htm")):
        raise MTError(f"--out {ns.out}: the page is HTML; name it e.g. explore.html")
    entries = describe_models(find_model_dirs(ns.models))
    check_languages(entries, ns.src_file, ns.ref_file)
    sources = read_lines(ns.src_file)
    references = read_lines(ns.ref_file) if ns.ref_file else None
    if references is not None and len(references) != len(sources):
        raise DataError(f"{ns.src_file} has {len(sources)} lines but {ns.ref_file} has {len(references)}: "
                        "they must pair line by line")
    gold = None
    if ns.gold:
        from mt.evaluation.alignment import read_pharaoh

        if references is None:
            raise MTError("--gold aligns the source with the reference: give --ref-file too")
        gold = read_pharaoh(ns.gold)
        if len(gold) != len(sources):
            raise DataError(f"{ns.gold} has {len(gold)} alignment lines for {len(sources)} sentences")
    if ns.max_sentences:
        sources = sources[: ns.max_sentences]
        references = references[: ns.max_sentences] if references is not None else None
        gold = gold[: ns.max_sentences] if gold is not None else None
    search = _search(ns)
    models = [(e.name, Translator.from_dir(e.model_dir, ns.device, ns.precision)) for e in entries]
    data = build_explorer_data(models, sources, references, gold, search=search, progress=True)
    title = ns.title or f"mt explore: {', '.join(e.name for e in entries)} on {Path(ns.src_file).name}"
    path = write_explorer(data, ns.out, title)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB): {len(sources)} sentences, {len(models)} models; open it in a browser")
    return 0
