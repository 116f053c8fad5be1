"""The data of the ``mt explore`` page: every model's translation of every sentence, its
attention (its own output and, with references, while it reads the reference), a
Transformer's layers and heads, sentence BLEU, entropy and, with gold links, AER.
``mt.visualization.explorer`` writes the page from it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sacrebleu.metrics import BLEU
from tqdm import tqdm

from mt.analysis.compare.entries import check_languages, describe_models, find_model_dirs
from mt.data.corpus import read_parallel
from mt.decoding.attention_alignment import AlignedPair, align_pairs
from mt.decoding.search import GREEDY, SearchConfig
from mt.decoding.translator import Translator
from mt.errors import DataError, MTError
from mt.evaluation.aer import GoldLinks, alignment_error_rate, read_pharaoh
from mt.evaluation.metrics import attention_entropy
from mt.export import open_translator
from mt.visualization.explorer import pack_weights, write_explorer

EXPLORE_SENTENCES = 500  # what --explore of mt align and mt compare shows: the first 500


def _view(pair: AlignedPair, maps: np.ndarray | None) -> dict:
    """One model's attention on one pair: pieces, their words, the map (pieces, EOS step
    included) and, for a Transformer, every layer and head."""
    att = pair.attention
    if pair.shift_att and att is not None:  # draw the rows the links were read from (Shift-Att)
        att = _shifted(att)
        maps = None if maps is None else _shifted(maps)
    view = {"tgt": pair.target, "tgt_pieces": pair.tgt_pieces, "tgt_words": pair.tgt_words,
            "tgt_word_index": pair.tgt_word_index, "rows": 0, "map": None, "heads": None, "links": [],
            "shift_att": pair.shift_att}
    if att is not None:
        view["rows"] = int(att.shape[0])
        view["map"] = pack_weights(att)
        view["links"] = sorted([int(i), int(j)] for i, j in pair.links)
    if maps is not None and maps.shape[0] * maps.shape[1] > 1:
        view["heads"] = {"layers": int(maps.shape[0]), "heads": int(maps.shape[1]), "data": pack_weights(maps, np.uint8)}
    return view


def _shifted(maps: np.ndarray) -> np.ndarray:
    """Row t becomes the step that reads piece t as its input (the next one); no step reads the
    EOS, whose row is left empty. ``maps``: [..., pieces + 1, src]."""
    out = np.zeros_like(maps)
    out[..., :-1, :] = maps[..., 1:, :]
    return out


def build_explorer_data(models: Sequence[tuple[str, Translator]], sources: Sequence[str],
                        references: Sequence[str] | None = None, gold: Sequence[GoldLinks] | None = None, *,
                        search: SearchConfig = GREEDY, progress: bool = False) -> dict:
    """Everything the page shows, for ``models`` (name, Translator) on the given sentences."""
    sources = list(sources)
    if not sources:
        raise MTError("no sentences to explore: the source file is empty")
    if references is not None and len(references) != len(sources):
        raise MTError(f"{len(sources)} source lines but {len(references)} references: they must pair line by line")
    if gold is not None and (references is None or len(gold) != len(sources)):
        raise MTError("--gold needs --ref-file, with one alignment line per sentence pair")
    sentences: list[dict] = [{"id": i, "src": s, "ref": references[i] if references is not None else None,
                              "gold": None, "models": []} for i, s in enumerate(sources)]
    if gold is not None:
        for sentence, links in zip(sentences, gold):
            sentence["gold"] = [[i, j, 1] for i, j in sorted(links.sure)] + \
                               [[i, j, 0] for i, j in sorted(links.possible - links.sure)]
    info = []
    for number, (name, translator) in enumerate(models, 1):
        # a bar of its own for each model, counting the sentences
        desc = f"exploring {name} ({number}/{len(models)})" if len(models) > 1 else "exploring"
        with tqdm(total=len(sources), unit="sent", disable=not progress, desc=desc) as bar:
            layers, heads = _add_model(translator, sentences, references, gold, search, bar)
        info.append({"name": name, "attention": any(s["models"][-1]["own"]["map"] for s in sentences),
                     "layers": int(layers), "heads": int(heads), "parameters": translator.model.num_parameters()})
    return {"models": info, "sentences": sentences, "has_ref": references is not None, "has_gold": gold is not None}


def _add_model(translator: Translator, sentences: list[dict], references: Sequence[str] | None,
               gold: Sequence[GoldLinks] | None, search: SearchConfig, bar: tqdm) -> tuple[int, int]:
    """One model's entry in every sentence; returns its layers and heads (1, 1 for an RNN)."""
    sources = [s["src"] for s in sentences]
    bleu = BLEU(effective_order=True)
    own = align_pairs(translator, sources, None, search)
    forced = align_pairs(translator, sources, references) if references is not None else None
    layers = heads = 1
    many_maps = None  # whether this model has more than one map (a Transformer): asked once
    for i, pair in enumerate(own):
        sentence = sentences[i]
        if "src_pieces" not in sentence:
            sentence.update(src_pieces=pair.src_pieces, src_words=pair.src_words, src_word_index=pair.src_word_index)
        maps = None
        if pair.attention is not None and pair.src_pieces and many_maps is not False:
            maps = translator.attention_maps(pair.source, pair.tgt_ids)
            layers, heads = maps.shape[:2]
            many_maps = layers * heads > 1
        entry = {"text": pair.target, "own": _view(pair, maps),
                 "entropy": round(attention_entropy([pair.attention]), 4) if pair.attention is not None else None,
                 "bleu": None, "aer": None, "forced": None}
        if references is not None and forced is not None:
            entry["bleu"] = round(bleu.sentence_score(pair.target, [references[i]]).score, 2)
            fpair = forced[i]
            fmaps = translator.attention_maps(fpair.source, fpair.tgt_ids) if many_maps and \
                fpair.attention is not None and fpair.tgt_ids and fpair.src_pieces else None
            entry["forced"] = _view(fpair, fmaps)
            if gold is not None and fpair.attention is not None:
                entry["aer"] = round(alignment_error_rate([gold[i]], [fpair.links]).aer, 2)
        sentence["models"].append(entry)
        bar.update(1)
    return layers, heads


def write_explore_page(path: str | Path, models: Sequence[tuple[str, Translator]], sources: Sequence[str],
                       references: Sequence[str] | None, gold: Sequence[GoldLinks] | None, search: SearchConfig,
                       title: str, limit: int = EXPLORE_SENTENCES) -> Path:
    """The page for ``models`` on the first ``limit`` sentences (0: all), written to ``path``."""
    if not str(path).endswith((".html", ".htm")):
        raise MTError(f"{path}: the page is HTML; name it e.g. explore.html")
    n = limit or len(sources)
    data = build_explorer_data(models, list(sources)[:n], None if references is None else list(references)[:n],
                               None if gold is None else list(gold)[:n], search=search, progress=sys.stderr.isatty())
    return write_explorer(data, path, title)


def explore_models(model_paths: Sequence[str], src_file: str, ref_file: str | None, gold_file: str | None,
                   out: str, max_sentences: int = EXPLORE_SENTENCES, title: str = "",
                   search: SearchConfig = GREEDY, device: str = "auto",
                   precision: str = "auto", force_language: bool = False) -> tuple[Path, int, int]:
    """``mt explore``: the page of the models found under ``model_paths`` on the first
    ``max_sentences`` lines of the files (0: all). Returns the page, sentences and models.
    ``force_language``: files whose names say another language than the models' are read as
    they are."""
    if max_sentences < 0:
        raise MTError(f"--max-sentences must be 0 (all) or more, got {max_sentences}")
    if not out.endswith((".html", ".htm")):
        raise MTError(f"--out {out}: the page is HTML; name it e.g. explore.html")
    entries = describe_models(find_model_dirs(model_paths))
    check_languages(entries, src_file, ref_file, force_language)
    sources, references = read_parallel(src_file, ref_file)
    gold = None
    if gold_file:
        if references is None:
            raise MTError("--gold aligns the source with the reference: give --ref-file too")
        gold = read_pharaoh(gold_file)
        if len(gold) != len(sources):
            raise DataError(f"{gold_file} has {len(gold)} alignment lines for {len(sources)} sentences")
    n = max_sentences or len(sources)
    models = [(e.name, open_translator(e.model_dir, device, precision)) for e in entries]
    data = build_explorer_data(models, sources[:n], None if references is None else references[:n],
                               None if gold is None else gold[:n], search=search, progress=True)
    page = write_explorer(data, out, title or f"mt explore: {', '.join(e.name for e in entries)} on "
                                              f"{Path(src_file).name}")
    return page, min(n, len(sources)), len(models)
