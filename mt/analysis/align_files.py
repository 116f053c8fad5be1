"""``mt align`` as a library: one sentence drawn as a heatmap, or whole files aligned.

Whole files: each pair is force-decoded (``mt.decoding.attention_alignment``), its attention merged to
words and turned into links; the links go to a Pharaoh file, the matrices to JSON lines or
NumPy, the heatmaps to a folder and the whole set to the explorer page, as asked. With a
model of the other direction, both directions' links are symmetrised (grow-diag-final-and, or
another rule of ``--symmetrize``; ``mean`` averages the two soft matrices before the rule reads them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mt.analysis.explore import write_explore_page
from mt.analysis.outputs import HEATMAPS, heatmap_files, kind_of, remove_stale
from mt.data.corpus import read_lines
from mt.decoding.attention_alignment import (
    SYMMETRISATIONS,
    AlignedPair,
    AlignOptions,
    align_pairs,
    links_by_rule,
    translation_pair,
)
from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translation, Translator
from mt.errors import DataError, MTError
from mt.evaluation.aer import has_moses_escapes, prepare_text, write_pharaoh
from mt.files import output_file, read_manifest, write_manifest, write_text_file
from mt.visualization.heatmap import plot_attention, plot_attention_grid


def draw_sentence(translator: Translator, source: str, out: str | Path, reference: str | None = None,
                  search: SearchConfig | None = None, all_heads: bool = False,
                  json_path: str | Path | None = None, words: bool = False) -> Translation:
    """The attention of one sentence as a heatmap: while the model translates it (``search``),
    or while it reads ``reference``; ``all_heads`` draws every layer and head as a grid;
    ``words`` merges the pieces to whitespace words (as ``mt align --src-file --words``);
    ``json_path`` also writes the pieces and weights."""
    if not source.strip():
        raise MTError("--src is empty: give a sentence to align")
    result = translator.force_decode(source, reference) if reference is not None \
        else translator.translate([source], search)[0]
    if result.attention is None:
        raise MTError("the model has no attention to draw (it was trained without attention)")
    data = {"source": result.source, "output": result.text, "src_tokens": result.src_pieces,
            "tgt_tokens": result.tgt_pieces, "attention": result.attention.round(5).tolist()}
    if words and all_heads:
        raise MTError("--words draws one map over words; --all-heads draws every head over pieces: choose one")
    if words:
        pair = translation_pair(translator, result)
        assert pair.word_attention is not None
        plot_attention(pair.word_attention, pair.src_words, pair.tgt_words, out, title=result.text)
        data.update(src_words=pair.src_words, tgt_words=pair.tgt_words,
                    word_attention=pair.word_attention.round(5).tolist())
    elif all_heads:
        # Every layer and head while the model reads the chosen output (rows: its pieces and </s>).
        maps = translator.attention_maps(source, result.tgt_ids)
        assert maps is not None
        pieces = translator.tgt_tokenizer.id_to_piece(result.tgt_ids) + ["</s>"]
        plot_attention_grid(maps, result.src_pieces, pieces, out, title=result.text)
        data["attention_maps"] = maps.round(5).tolist()  # [layers, heads, tgt, src]
    else:
        plot_attention(result.attention, result.src_pieces, result.tgt_pieces, out, title=result.text)
    if json_path:
        write_text_file(json_path, json.dumps(data, ensure_ascii=False))
    return result


@dataclass(frozen=True)
class AlignmentFiles:
    """What to write for aligned files; at least one of them."""

    pharaoh: str | None = None     # hard word links, a line per pair (i-j, source-target)
    one_based: bool = False        # ... counting words from 1
    jsonl: str | None = None       # tokens, words, soft matrices and links, a line per pair
    npz: str | None = None         # the soft matrices: attention_N over pieces, words_N over words
    heatmaps: str | None = None    # a folder with a heatmap per pair
    image_format: str = "png"
    words: bool = False            # heatmaps over words instead of pieces
    max_plots: int = 0             # at most this many heatmaps (0: all)
    explore: str | None = None     # the mt explore page of the first 500 pairs

    def __post_init__(self) -> None:
        if not (self.pharaoh or self.jsonl or self.npz or self.heatmaps or self.explore):
            raise MTError("nothing to write: give --pharaoh, --jsonl, --npz, --out-dir and/or --explore")


def read_pairs(path: str) -> tuple[list[str], list[str]]:
    """Source and target lines of a 'source ||| target' file; an empty line is an empty pair."""
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


def prepare_pairs(sources: list[str], targets: list[str] | None, lowercase: bool = False,
                  unescape_moses: bool = False) -> tuple[list[str], list[str] | None]:
    """The text as the model was trained on it (case, Moses escapes); words and their
    indices do not change. Text with Moses escapes left in gets a note."""
    if not unescape_moses and has_moses_escapes([*sources, *(targets or [])]):
        print("note: the text holds Moses escapes (&apos;, &quot;, &amp; ...) and the model reads them as they are; "
              "add --unescape-moses if it was trained on plain text", file=sys.stderr)
    if not (lowercase or unescape_moses):
        return sources, targets
    return ([prepare_text(s, lowercase, unescape_moses) for s in sources],
            None if targets is None else [prepare_text(t, lowercase, unescape_moses) for t in targets])


def align_files(translator: Translator, sources: list[str], targets: list[str] | None, files: AlignmentFiles,
                search: SearchConfig, options: AlignOptions, backward: Translator | None = None,
                name: str = "model", symmetrise: str = "grow-diag-final-and") -> list[AlignedPair]:
    """Aligns every pair (the model's own translation where ``targets`` is None) and writes
    ``files``; ``backward``, a model of the other direction, symmetrises the links (by
    ``symmetrise``, a key of SYMMETRISATIONS)."""
    progress = sys.stderr.isatty()
    pairs = align_pairs(translator, sources, targets, search, options, progress=progress)
    if all(p.attention is None for p in pairs) and any(p.source.strip() for p in pairs):
        raise MTError("the model has no attention to align with (it was trained without attention)")
    if backward is not None:
        reverse = align_pairs(backward, [p.target for p in pairs], [p.source for p in pairs], None, options,
                              progress=progress)
        for pair, rev in zip(pairs, reverse):
            if symmetrise == "mean":
                average_directions(pair, rev, options)
            else:
                pair.links = SYMMETRISATIONS[symmetrise](pair.links, {(i, j) for j, i in rev.links})
    if files.explore:
        page = write_explore_page(files.explore, [(name, translator)], sources, targets, None, search,
                                  f"mt align: {name}")
        print(f"explorer page: {page} (the first {min(len(sources), 500)} sentences; open it in a browser)")
    if files.pharaoh:
        write_pharaoh(files.pharaoh, [p.links for p in pairs], one_based=files.one_based)
    if files.jsonl:
        with output_file(files.jsonl) as handle:
            for pair in pairs:
                handle.write(json.dumps(pair.as_dict(), ensure_ascii=False) + "\n")
    if files.npz:
        arrays = {}
        for n, pair in enumerate(pairs):
            if pair.attention is not None:
                arrays[f"attention_{n}"] = pair.attention
            if pair.word_attention is not None:
                arrays[f"words_{n}"] = pair.word_attention
        with output_file(files.npz, "wb") as handle:  # a file object: numpy adds no .npz to the name given
            np.savez_compressed(handle, **arrays)
    return pairs


def average_directions(pair: AlignedPair, reverse: AlignedPair, options: AlignOptions) -> None:
    """``--symmetrize mean``: the pair's word matrix becomes the mean of both directions' (the
    reverse one transposed) and the rule reads its links from that; a pair the reverse model
    could not align (too long for it) keeps its forward links."""
    if pair.word_attention is None or reverse.word_attention is None or \
            pair.word_attention.shape != reverse.word_attention.T.shape:
        return
    pair.word_attention = (pair.word_attention + reverse.word_attention.T) / 2  # [tgt_words, src_words]
    pair.links = links_by_rule(torch.from_numpy(pair.word_attention), options)


def draw_pairs(pairs: Sequence[AlignedPair], files: AlignmentFiles) -> int:
    """A heatmap per aligned pair into ``files.heatmaps`` (over words with ``files.words``);
    returns how many were drawn."""
    if not files.heatmaps:
        return 0
    out_dir = Path(files.heatmaps)
    manifest = read_manifest(out_dir) if kind_of(out_dir) == HEATMAPS else None  # an earlier run's, sealed
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    for n, pair in enumerate(pairs):
        if pair.attention is None or (files.max_plots and len(drawn) >= files.max_plots):
            continue
        path = out_dir / f"{n + 1:05d}.{files.image_format}"
        if files.words:
            plot_attention(pair.word_attention, pair.src_words, pair.tgt_words, path, title=pair.target)
        else:
            plot_attention(pair.attention, pair.src_pieces, [*pair.tgt_pieces, "</s>"], path, title=pair.target)
        drawn.append(path)
    listed = {out_dir / name for name in manifest["files"] if "/" not in name} if manifest is not None else set()
    if manifest is not None:  # the folder shows this run's heatmaps only, not those of an earlier run past them
        remove_stale(out_dir, (set(heatmap_files(out_dir)) & listed) - set(drawn))
    if kind_of(out_dir) in (None, HEATMAPS):  # not a compare report it was --force'd into
        ours = sorted({*drawn, *(p for p in listed if p.is_file())})  # never an image of the user's
        write_manifest(out_dir, HEATMAPS, files=[p.name for p in ours])
    return len(drawn)


def unknown_words(pairs: Sequence[AlignedPair]) -> tuple[int, int, int, int] | None:
    """(unknown source words, source words, unknown target words, target words), or None if all known."""
    counts = (sum(p.unknown_src for p in pairs), sum(len(p.src_words) for p in pairs),
              sum(p.unknown_tgt for p in pairs), sum(len(p.tgt_words) for p in pairs))
    return counts if counts[0] or counts[2] else None
