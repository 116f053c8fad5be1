"""Word alignments as data and their measure: Pharaoh ``i-j`` files read and written, and the
alignment error rate against human gold (Och & Ney 2003).

A link is ``(i, j)``: source word i, target word j, both 0-based inside the library; files
may be 1-based (gold sets often are) and are converted at the edge. Gold marks each link
sure (``i-j``) or possible (``ipj``); every sure link is also possible (S is a subset of P).
How attention becomes links is ``mt.decoding.attention_alignment``; the file job ``mt align``
is ``mt.analysis.align_files``; the training loss that pulls attention towards links is
``mt.training.alignment_loss``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mt.errors import DataError, MTError
from mt.files import output_file

Link = tuple[int, int]


@dataclass
class GoldLinks:
    sure: set[Link]
    possible: set[Link]  # includes the sure links


def parse_pharaoh(line: str, one_based: bool = False, swap: bool = False, where: str = "") -> GoldLinks:
    """Links of one line: ``i-j`` (sure) and ``ipj`` (possible), space-separated.
    ``swap`` reads each pair as ``j-i`` (files that put the target word first)."""
    sure: set[Link] = set()
    possible: set[Link] = set()
    shift = 1 if one_based else 0
    for item in line.split():
        sep = "-" if "-" in item else "p" if "p" in item else None
        parts = item.split(sep) if sep else []
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise MTError(f"{where}'{item}' is not an alignment link: write i-j (sure) or ipj (possible)")
        i, j = int(parts[0]) - shift, int(parts[1]) - shift
        if i < 0 or j < 0:
            raise MTError(f"{where}link '{item}' has index 0 in a 1-based file: drop --one-based (or the gold's flag)")
        link = (j, i) if swap else (i, j)
        possible.add(link)
        if sep == "-":
            sure.add(link)
    return GoldLinks(sure, possible)


def format_pharaoh(links: Iterable[Link], one_based: bool = False) -> str:
    shift = 1 if one_based else 0
    return " ".join(f"{i + shift}-{j + shift}" for i, j in sorted(links))


def read_pharaoh(path: str | Path, one_based: bool = False, swap: bool = False) -> list[GoldLinks]:
    path = Path(path)
    if not path.is_file():
        raise MTError(f"alignment file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [parse_pharaoh(line, one_based, swap, where=f"{path}:{n}: ") for n, line in enumerate(lines, 1)]


def write_pharaoh(path: str | Path, alignments: Sequence[Iterable[Link]], one_based: bool = False) -> Path:
    path = Path(path)
    with output_file(path) as handle:  # whole or not at all
        for links in alignments:
            handle.write(format_pharaoh(links, one_based) + "\n")
    return path


@dataclass
class AERScores:
    aer: float        # 1 - (|A&S| + |A&P|) / (|A| + |S|), in percent
    precision: float  # |A&P| / |A|, in percent
    recall: float     # |A&S| / |S|, in percent
    predicted: int    # |A|
    sure: int         # |S|
    possible: int     # |P|
    sentences: int

    def as_dict(self) -> dict:
        return asdict(self)


def alignment_error_rate(gold: Sequence[GoldLinks], predicted: Sequence[Iterable[Link]]) -> AERScores:
    """Corpus-level AER, precision and recall: the counts are summed over sentences first."""
    if len(gold) != len(predicted):
        raise MTError(f"the gold has {len(gold)} sentences and the prediction {len(predicted)}: "
                      "give files with one line per sentence pair, in the same order")
    a = s = p = a_s = a_p = 0
    for g, links in zip(gold, predicted):
        links = set(links)
        a += len(links)
        s += len(g.sure)
        p += len(g.possible)
        a_s += len(links & g.sure)
        a_p += len(links & g.possible)
    aer = 1.0 - (a_s + a_p) / (a + s) if a + s else 0.0
    return AERScores(aer=round(100 * aer, 2), precision=round(100 * a_p / a, 2) if a else 0.0,
                     recall=round(100 * a_s / s, 2) if s else 0.0, predicted=a, sure=s, possible=p,
                     sentences=len(gold))


def aer_by_length(gold: Sequence[GoldLinks], predicted: Sequence[Iterable[Link]], lengths: Sequence[int],
                  edges: Sequence[int]) -> list[tuple[str, AERScores]]:
    """AER of the sentences in each length bucket (``lengths``: each pair's source words;
    ``edges``: each bucket's longest, ascending; the last bucket takes the rest), so a model
    read on sentences longer than any it trained on shows what that costs. Empty buckets
    are left out."""
    if len(lengths) != len(gold):
        raise MTError(f"{len(lengths)} sentence lengths for {len(gold)} gold sentences: give the text of the same "
                      "pairs, one per line")
    if list(edges) != sorted(set(edges)) or (edges and edges[0] < 1):
        raise MTError(f"length edges must be positive and ascending, got {' '.join(map(str, edges))}")
    out, low = [], 1
    for high in [*edges, None]:
        rows = [i for i, n in enumerate(lengths) if n >= low and (high is None or n <= high)]
        if rows:
            label = f"{low}-{high}" if high is not None else f"{low}+"
            out.append((label, alignment_error_rate([gold[i] for i in rows], [predicted[i] for i in rows])))
        low = (high or 0) + 1
    return out


# --- from attention to links ------------------------------------------------------------

def read_gold_and_predicted(gold_path: str | Path, pred_path: str | Path, gold_one_based: bool = False,
                            pred_one_based: bool = False,
                            swap_gold: bool = False) -> tuple[list[GoldLinks], list[set[Link]]]:
    """A gold file and a Pharaoh file of predicted links that pair line by line."""
    gold = read_pharaoh(gold_path, one_based=gold_one_based, swap=swap_gold)
    pred = read_pharaoh(pred_path, one_based=pred_one_based)
    if len(gold) != len(pred):
        raise DataError(f"{gold_path} has {len(gold)} lines but {pred_path} has {len(pred)}: "
                        "they must pair line by line")
    return gold, [p.possible for p in pred]



# Moses' tokenizer escapes these (its deescape-special-chars.perl undoes them, &amp; last).
MOSES_ESCAPES = {"&bar;": "|", "&#124;": "|", "&lt;": "<", "&gt;": ">", "&bra;": "[", "&ket;": "]",
                 "&quot;": '"', "&apos;": "'", "&#91;": "[", "&#93;": "]", "&amp;": "&"}
_MOSES_RE = re.compile("|".join(re.escape(k) for k in MOSES_ESCAPES))


def prepare_text(line: str, lowercase: bool = False, unescape_moses: bool = False) -> str:
    """The text a model reads when aligning a line of a gold set prepared differently from its
    training data. Each whitespace word changes in place, so word i of the result is word i
    of the line and gold indices stay valid."""
    words = line.split()
    if unescape_moses:
        words = [_MOSES_RE.sub(lambda m: MOSES_ESCAPES[m.group(0)], w) for w in words]
    if lowercase:
        words = [w.lower() for w in words]
    return " ".join(words)


def has_moses_escapes(lines: Iterable[str]) -> bool:
    return any(_MOSES_RE.search(line) for line in lines)
