"""``mt explore``: one self-contained HTML page to browse every sentence, model and head.

The page (``explorer.html`` beside this file) is plain HTML, CSS and JavaScript with the
data inlined as JSON: it opens from disk in any browser, with no server, no network and
nothing fetched. Attention matrices travel as base64 integers (uint16 for the map that
``mt align`` reads, uint8 for a Transformer's layer/head thumbnails) to keep hundreds of
sentences in a few megabytes; the page merges pieces to words as ``mt align`` does (sum
over a source word's pieces, mean over a target word's pieces), so its threshold slider
shows the links ``mt align --rule threshold --pharaoh`` writes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mt.errors import MTError

TEMPLATE = Path(__file__).with_name("explorer.html")
DATA_MARK = "/*__MT_DATA__*/null"


def _pack(matrix: np.ndarray, dtype: type = np.uint16) -> str:
    """Weights in [0, 1] as base64 integers (row-major)."""
    top = np.iinfo(dtype).max
    ints = np.rint(np.clip(np.asarray(matrix, dtype=np.float64), 0.0, 1.0) * top).astype(dtype)
    return base64.b64encode(ints.astype(ints.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _entropy(rows: np.ndarray) -> float:
    p = np.clip(np.asarray(rows, dtype=np.float64), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(axis=1).mean()) if p.size else 0.0


def _view(pair, maps: np.ndarray | None) -> dict:
    """One model's attention on one pair: pieces, their words, the map (pieces, EOS step
    included) and, for a Transformer, every layer and head."""
    att = pair.attention
    view = {"tgt": pair.target, "tgt_pieces": pair.tgt_pieces, "tgt_words": pair.tgt_words,
            "tgt_word_index": pair.tgt_word_index, "rows": 0, "map": None, "heads": None, "links": []}
    if att is not None:
        view["rows"] = int(att.shape[0])
        view["map"] = _pack(att)
        view["links"] = sorted([int(i), int(j)] for i, j in pair.links)
    if maps is not None and maps.shape[0] * maps.shape[1] > 1:
        view["heads"] = {"layers": int(maps.shape[0]), "heads": int(maps.shape[1]), "data": _pack(maps, np.uint8)}
    return view


def build_explorer_data(models: Sequence[tuple[str, object]], sources: Sequence[str],
                        references: Sequence[str] | None = None, gold: Sequence | None = None, *,
                        search: dict | None = None, progress: bool = False) -> dict:
    """Everything the page shows, for ``models`` (name, Translator) on the given sentences."""
    from sacrebleu.metrics import BLEU
    from tqdm import tqdm

    from mt.decoding.aligner import align_pairs
    from mt.evaluation.alignment import alignment_error_rate

    sources = list(sources)
    if not sources:
        raise MTError("no sentences to explore: the source file is empty")
    if references is not None and len(references) != len(sources):
        raise MTError(f"{len(sources)} source lines but {len(references)} references: they must pair line by line")
    if gold is not None and (references is None or len(gold) != len(sources)):
        raise MTError("--gold needs --ref-file, with one alignment line per sentence pair")
    search = dict(search or {})
    bleu = BLEU(effective_order=True)
    sentences: list[dict] = [{"id": i, "src": s, "ref": references[i] if references is not None else None,
                              "gold": None, "models": []} for i, s in enumerate(sources)]
    if gold is not None:
        for sentence, links in zip(sentences, gold):
            sentence["gold"] = [[i, j, 1] for i, j in sorted(links.sure)] + \
                               [[i, j, 0] for i, j in sorted(links.possible - links.sure)]
    info = []
    bar = tqdm(total=len(models) * len(sources), unit="sent", disable=not progress, desc="exploring")
    for name, translator in models:
        own = align_pairs(translator, sources, None, rule="argmax", **search)
        forced = align_pairs(translator, sources, references, rule="argmax") if references is not None else None
        layers = heads = 1
        many_maps = None  # whether this model has more than one map (a Transformer): asked once
        for i, pair in enumerate(own):
            sentence = sentences[i]
            if "src_pieces" not in sentence:
                sentence.update(src_pieces=pair.src_pieces, src_words=pair.src_words,
                                src_word_index=pair.src_word_index)
            maps = None
            if pair.attention is not None and pair.src_pieces and many_maps is not False:
                maps = translator.attention_maps(pair.source, pair.tgt_ids)
                layers, heads = maps.shape[:2]
                many_maps = layers * heads > 1
            entry = {"text": pair.target, "own": _view(pair, maps),
                     "entropy": round(_entropy(pair.attention), 4) if pair.attention is not None else None,
                     "bleu": None, "aer": None, "forced": None}
            if references is not None:
                entry["bleu"] = round(bleu.sentence_score(pair.target, [references[i]]).score, 2)
                fpair = forced[i]
                fmaps = translator.attention_maps(fpair.source, fpair.tgt_ids) if many_maps and \
                    fpair.attention is not None and fpair.tgt_ids and fpair.src_pieces else None
                entry["forced"] = _view(fpair, fmaps)
                if gold is not None and fpair.attention is not None:
                    entry["aer"] = round(alignment_error_rate([gold[i]], [fpair.links]).aer, 2)
            sentence["models"].append(entry)
            bar.update(1)
        cfg_model = translator.model
        info.append({"name": name, "attention": any(s["models"][-1]["own"]["map"] for s in sentences),
                     "layers": int(layers), "heads": int(heads), "parameters": cfg_model.num_parameters()})
    bar.close()
    return {"models": info, "sentences": sentences, "has_ref": references is not None, "has_gold": gold is not None}


def write_explorer(data: dict, path: str | Path, title: str = "mt explore") -> Path:
    """The page with ``data`` inlined. ``</`` is escaped inside the JSON so no sentence can
    end the script element."""
    page = TEMPLATE.read_text(encoding="utf-8")
    if DATA_MARK not in page:
        raise MTError(f"{TEMPLATE} lacks its data mark; reinstall mt")
    payload = json.dumps({**data, "title": title}, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    page = page.replace(DATA_MARK, payload).replace("__MT_TITLE__", _html_escape(title))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
