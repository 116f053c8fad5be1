"""Alignment error rate of attention on the English-French Hansards gold, beside eflomal.

    .venv/bin/python studies/hansards_alignment/hansards_aer.py all \
        --json studies/hansards_alignment/results/DATE_hansards_aer_CPU.json   # everything
    .venv/bin/python studies/hansards_alignment/hansards_aer.py prepare | eflomal | train | align | demo  # one step
    .venv/bin/python studies/hansards_alignment/hansards_aer.py --corpus hansards prepare | eflomal | train | align  # in-domain
    .venv/bin/python studies/hansards_alignment/hansards_aer.py --corpus hansards explore --out /tmp/hansards_explorer.html
    .venv/bin/python studies/hansards_alignment/hansards_aer.py table --json FILE.json   # the tables of what it holds

``--corpus`` picks the training text: ``multi30k`` (the default; another domain than the
gold, work under ``.bench/hansards``) or ``hansards`` (``../shared/data/hansards``, 305,739
pairs of the gold's own Parliament; work under ``.bench/hansards-indomain``).

Steps (each reuses what the previous wrote under the corpus's folder):

- ``prepare``: the corpus's English-French train / validation / test text (Multi30k: val and
  test 2016) written in the style of the gold text: lower-cased, punctuation and hyphens
  split off, English ``'s`` split, French elisions expanded as the Hansards annotators did
  (``l'avis`` -> ``le avis``, ``j'ai`` -> ``je ai``). The gold text itself is only
  lower-cased (``mt align --lowercase``): its words, and so the gold's indices, stay; for the
  Hansards corpus, whose French has no accents, the gold's French accents are stripped too
  (``é`` -> ``e``; the words and their indices stay).
- ``eflomal``: the statistical baseline. Installs eflomal from PyPI into its own virtual
  environment (``.bench/eflomal-venv``), aligns the corpus's text plus the 447 gold sentence
  pairs (an unsupervised aligner may see the test text; it never sees the gold links) in both
  directions, and scores forward, reverse, intersection and grow-diag-final-and.
- ``train``: trains every variant of ``--variants`` English->French with ``mt train`` (``noattn``,
  no attention, for BLEU only) and those of ``--backward`` French->English for
  symmetrisation, ``--jobs`` at a time with the ``--threads`` shared, each for the same budget:
  ``--epochs`` with ``--patience`` (early stopping on validation BLEU) and, if not 0,
  ``--seconds`` of wall clock (the Transformer ``--transformer-seconds``). Each run folder gets
  ``trained.json`` (its wall clock and machine); a run cut off part-way resumes from its last
  checkpoint when the step is rerun. ``*_supervised*`` learn their attention from eflomal's
  grow-diag-final-and links of the training pairs (``train.alignment_loss``; it needs the eflomal
  step first), ``*_inter`` from its intersection; ``*_self*`` from a teacher model's own
  symmetrised links of them (``TEACHERS``: self-training; the teacher and its French-English
  twin must be trained first, ``--backward TEACHER``).
- ``split`` (with ``--json``): each Hansards-gold figure of the JSON also on the gold's first 100
  sentences, which choose a rule, and on the other 347, which score it (the align and eflomal
  steps add this themselves; the step adds it to figures from before, from the links on disk).
- ``align``: for every model and extraction rule, ``mt align --pairs`` force-decodes the gold
  sentence pairs and ``mt aer`` scores the links: argmax (Luong et al. 2015), a threshold,
  Shift-Att (Chen et al. 2020), each of the Transformer's layers and heads (the ``split`` step
  chooses one on the gold's first 100 sentences), and grow-diag-final-and, the
  intersection and the mean of both soft matrices with the backward model; each threshold-0.5
  reading also with a target word's subword rows merged by their max and by the first piece's
  (``mt align --merge``; the mean otherwise); for the Hansards corpus also each model's test BLEU (beam 5, fp32) and how it
  trained (wall clock, epochs, speed, precision, machine). Prints a table (Markdown) and with
  ``--json`` writes every figure, the machine, the date and the versions (merged per variant, so
  models trained in different sessions add up in one file). Beside the gold, an in-domain check: each model's links
  of 500 of its corpus's validation pairs scored against eflomal's links of them (agreement with
  eflomal, not accuracy), which separates bad attention from a domain the model cannot read.
- ``explore``: one explorer page (``mt explore``) of the first ``--sentences`` gold pairs (50)
  with every trained English->French model, each reading the gold's French, and the gold's sure
  and possible links drawn over the maps (sorted by AER if you like): a self-contained HTML file
  at ``--out``.
- ``by-epoch``: for the models a run kept per validation (``--keep-checkpoints N`` in the
  train step), the AER on the gold's first 100 and other 347 sentences and the validation BLEU
  of each, read as the finished model is (with the twin's model of the same validation): how
  alignment grows with the budget.
- ``demo``: the same table on the synthetic demo corpus (``data/demo``, its gold
  ``test.align``), eflomal beside: every variant at the demo's size (``mt demo``'s widths, the
  Transformer at d_model 128) trained until validation BLEU stops improving (``--demo-patience``
  validations, at most ``--demo-epochs`` epochs; ``--jobs`` at once), every rule.

The gold set is read for evaluation only; nothing here trains on its links or copies it into
the repository.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # mt.api's names are imported where needed (they bring torch)
WORKS = {"multi30k": REPO / ".bench" / "hansards", "hansards": REPO / ".bench" / "hansards-indomain"}
WORK = WORKS["multi30k"]  # the chosen corpus's folder (use_corpus)
EFLOMAL_VENV = REPO / ".bench" / "eflomal-venv"
SPLITS = {"multi30k": {"train": "train", "valid": "val", "test": "test_2016_flickr"},  # ours: the corpus's files
          "hansards": {"train": "train", "valid": "valid", "test": "test"}}
# Where a supervised variant's links of the training pairs come from (its data.train_alignments, resolved
# when it trains, the fr->en model's swapped): eflomal's grow-diag-final-and (train.gdfa), eflomal's
# intersection (train.inter: fewer links, more of them right), or self-training (SELF): the symmetrised
# links of a model trained before, read by its teacher's rule over every training pair (TEACHERS).
SUPERVISED = "data.train_alignments=EFLOMAL"
SUPERVISED_INTERSECTION = "data.train_alignments=EFLOMAL_INTERSECTION"
SELF_TRAINED = "data.train_alignments=SELF"
LABELS = (SUPERVISED, SUPERVISED_INTERSECTION, SELF_TRAINED)


def use_corpus(corpus: str) -> None:
    """Every step reads and writes under the corpus's own folder."""
    global WORK
    WORK = WORKS[corpus]


def supervision(reverse: bool = False, intersection: bool = False) -> Path:
    """eflomal's grow-diag-final-and (or intersected) links of the training pairs, en-fr (or fr-en)."""
    return WORK / "eflomal" / (("train.inter" if intersection else "train.gdfa") + (".rev" if reverse else ""))

# The Transformer preset's training as it was when these figures were measured (constant 1e-3
# after 100 warm-up updates, dropout 0.1); issue 51 changed the preset's recipe.
TRANSFORMER_2026_12 = ["train.schedule=constant", "train.lr=0.001", "train.warmup_steps=100", "train.decay_from=0",
                       "train.betas=[0.9,0.999]", "model.dropout=0.1", "model.attention_dropout=null",
                       "model.share_embeddings=false"]

# Every attention variant, English->French, as `mt train` overrides.
VARIANTS = {
    "noattn": ["model=rnn_noattn"],  # no attention: test BLEU only, the baseline of what attention buys
    "bahdanau": ["model=rnn_bahdanau"],
    "bahdanau_sparsemax": ["model=rnn_bahdanau", "model.attention.normalizer=sparsemax"],
    "luong_dot": ["model=rnn_luong_dot"],
    "luong_general": ["model=rnn_luong_general"],
    "luong_concat": ["model=rnn_luong_concat"],
    "luong_scaled_dot": ["model=rnn_luong_dot", "model.attention.score=scaled_dot"],
    "luong_cosine": ["model=rnn_luong_dot", "model.attention.score=cosine"],
    "luong_local": ["model=rnn_luong_local"],
    # The rest of the family (issue 33).
    "luong_euclidean": ["model=rnn_luong_dot", "model.attention.score=euclidean"],
    "luong_pearson": ["model=rnn_luong_dot", "model.attention.score=pearson"],
    "bahdanau_sigmoid": ["model=rnn_bahdanau", "model.attention.normalizer=sigmoid"],
    "bahdanau_max": ["model=rnn_bahdanau", "model.attention.normalizer=max"],
    "bahdanau_top3": ["model=rnn_bahdanau", "model.attention.top_k=3"],
    "bahdanau_hard": ["model=rnn_bahdanau", "model.attention.hard=true"],
    # Bahdanau with its attention supervised by eflomal's grow-diag-final-and links of the
    # training pairs (Garg et al., 2019; train.alignment_loss); never the gold links.
    "bahdanau_supervised": ["model=rnn_bahdanau", "train.alignment_loss=1.0", SUPERVISED],
    # The same links on Luong general, supervising the step that reads target word j rather than
    # the one that predicts it (train.alignment_shift; read back with Shift-Att): Luong's
    # attention comes after the decoder has read its input, so that step knows which word it
    # places. (Bahdanau's attention comes before, so it cannot.)
    "luong_general_supervised": ["model=rnn_luong_general", "train.alignment_loss=1.0", "train.alignment_shift=true",
                                 SUPERVISED],
    "transformer": ["model=transformer", *TRANSFORMER_2026_12],
    # The Transformer with one head supervised by the same links, head 0 of its penultimate
    # layer (Garg et al., 2019; model.attention_reduction=one_head): the map align reads.
    "transformer_supervised": ["model=transformer", *TRANSFORMER_2026_12, "model.attention_reduction=one_head",
                               "train.alignment_loss=1.0", SUPERVISED],
    # The same head supervised on the step that reads target word j (train.alignment_shift), as
    # luong_general_supervised: read back with Shift-Att.
    "transformer_supervised_shift": ["model=transformer", *TRANSFORMER_2026_12, "model.attention_reduction=one_head",
                                     "train.alignment_loss=1.0", "train.alignment_shift=true", SUPERVISED],
    # The same with eflomal's intersection as the labels: fewer links, more of them right.
    "transformer_supervised_shift_inter": ["model=transformer", *TRANSFORMER_2026_12,
                                           "model.attention_reduction=one_head", "train.alignment_loss=1.0",
                                           "train.alignment_shift=true", SUPERVISED_INTERSECTION],
    # Self-training (TEACHERS): the same head learns the links of a model trained before, read over
    # every training pair. From the supervised model (a second round), and from the unsupervised
    # Transformer (no external aligner anywhere in its training: self-supervised).
    "transformer_supervised_shift_self": ["model=transformer", *TRANSFORMER_2026_12,
                                          "model.attention_reduction=one_head", "train.alignment_loss=1.0",
                                          "train.alignment_shift=true", SELF_TRAINED],
    "transformer_self_shift": ["model=transformer", *TRANSFORMER_2026_12, "model.attention_reduction=one_head",
                               "train.alignment_loss=1.0", "train.alignment_shift=true", SELF_TRAINED],
}

# Self-trained variant: (teacher variant, its reading as rules_for names it, the symmetrisation with the
# teacher's French-English twin). The teacher and its twin must be trained first (--backward TEACHER).
TEACHERS = {"transformer_supervised_shift_self": ("transformer_supervised_shift", "threshold 0.5, Shift-Att", "mean"),
            "transformer_self_shift": ("transformer", "argmax, layer 1 mean of heads", "grow-diag-final-and")}

_FR_ELISION = {"l": "le", "d": "de", "j": "je", "n": "ne", "s": "se", "c": "ce", "m": "me", "t": "te",
               "qu": "que", "jusqu": "jusque", "lorsqu": "lorsque", "puisqu": "puisque", "quoiqu": "quoique"}
_FR_ELISION_RE = re.compile(r"\b(jusqu|lorsqu|puisqu|quoiqu|qu|[cdjlmnst])['’](?=\w)")
_PUNCT_RE = re.compile(r"(?<!\d)([.,])|([.,])(?!\d)|([!?;:()\"«»/\[\]-])")


_FR_CONTRACTION = {"du": "de le", "des": "de les", "au": "à le", "aux": "à les"}
_FR_CONTRACTION_RE = re.compile(r"\b(du|des|au|aux)\b")


def hansards_style(line: str, lang: str, contractions: bool = False) -> str:
    """A line of training text written the way the Hansards gold text is. ``contractions``:
    French ``du des au aux`` written ``de le``, ``de les``, ``à le``, ``à les``, as the gold's
    annotators did (its French has 92 ``de le`` and no ``des``); the Multi30k step predates
    this and keeps them, so that its published figures stay reproducible."""
    text = line.strip().lower().replace("’", "'")
    if lang == "fr":
        text = text.replace("aujourd'hui", "aujourd' hui")
        text = _FR_ELISION_RE.sub(lambda m: _FR_ELISION[m.group(1)] + " ", text)
        if contractions:
            text = _FR_CONTRACTION_RE.sub(lambda m: _FR_CONTRACTION[m.group(1)], text)
    else:
        text = re.sub(r"(\w)'s\b", r"\1 's", text)
        text = re.sub(r"(\w)n't\b", r"\1 n't", text)
    text = _PUNCT_RE.sub(lambda m: f" {m.group(0)} ", text)
    return " ".join(text.split())


def strip_accents(text: str) -> str:
    """``é`` -> ``e``: the Hansards training French has none. Words (and so the gold's
    indices) do not change."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def gold_pairs(path: Path) -> tuple[list[str], list[str]]:
    """The sentences of a 'source ||| target' file (the gold's enfr.src-tgt, or gold.pairs as
    prepared), single-spaced: word i stays word i."""
    from mt.api import read_pairs

    sources, targets = read_pairs(str(path))
    return [" ".join(s.split()) for s in sources], [" ".join(t.split()) for t in targets]


def coverage(data: Path, sources: list[str], targets: list[str]) -> dict:
    """The share of the gold's tokens (lower-cased) that occur in the prepared training text."""
    out = {}
    for lang, gold in (("en", sources), ("fr", targets)):
        seen = set((data / f"train.{lang}").read_text(encoding="utf-8").split())
        tokens = [w.lower() for line in gold for w in line.split()]
        out[lang] = round(100 * sum(w in seen for w in tokens) / len(tokens), 1)
    return out


def prepare(ns) -> Path:
    data = WORK / "data"
    data.mkdir(parents=True, exist_ok=True)
    folder = ns.multi30k if ns.corpus == "multi30k" else ns.hansards
    for split, raw in SPLITS[ns.corpus].items():
        for lang in ("en", "fr"):
            path = folder / f"{raw}.{lang}.gz"
            if not path.is_file():
                raise SystemExit(f"missing {path}: pass --{ns.corpus} DIR (the folder of {raw}.{lang}.gz)")
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                lines = [hansards_style(line, lang, contractions=ns.corpus == "hansards") for line in
                         handle.read().splitlines()]
                if ns.corpus == "hansards" and lang == "fr":  # as the training French: no accents
                    lines = [strip_accents(line) for line in lines]
            (data / f"{split}.{lang}").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    sources, targets = gold_pairs(ns.gold / "enfr.src-tgt")
    if ns.corpus == "hansards":
        targets = [strip_accents(t) for t in targets]
    (WORK / "gold.pairs").write_text("".join(f"{s} ||| {t}\n" for s, t in zip(sources, targets)), encoding="utf-8")
    covered = coverage(data, sources, targets)
    print(f"prepared {data} and {WORK / 'gold.pairs'} ({len(sources)} gold pairs; the training text holds "
          f"{covered['en']}% of the gold's English tokens, {covered['fr']}% of its French)", flush=True)
    return data


def aer_of(links_file: Path, gold: list[str]) -> dict:
    """``mt aer`` of a 0-based Pharaoh file; ``gold``: its --gold arguments. On the Hansards gold
    also the split of ``split_aer``."""
    out = links_file.with_suffix(".aer.json")
    subprocess.run([str(REPO / ".venv" / "bin" / "mt"), "aer", *gold, "--pred", str(links_file), "--json", str(out)],
                   check=True, capture_output=True)
    scores = json.loads(out.read_text())
    result = {k: round(scores[k], 2) for k in ("aer", "precision", "recall")}
    if "by_length" in scores:  # --by-length among the gold arguments
        result["by_length"] = {b["source_words"]: {k: b[k] for k in ("aer", "precision", "recall", "sentences")}
                               for b in scores["by_length"]}
    if "--gold-one-based" in gold:  # the Hansards gold
        result |= split_aer(links_file, gold)
    return result


DEV = 100  # the Hansards gold's first sentences choose a rule; the other 347 score the choice


def split_aer(links_file: Path, gold: list[str]) -> dict:
    """AER on the gold's first DEV sentences (to choose a rule by) and AER, precision and recall
    on the rest (to report it by): no rule is then chosen on the sentences that score it."""
    from mt.api import alignment_error_rate, read_pharaoh

    truth = read_pharaoh(gold[gold.index("--gold") + 1], one_based="--gold-one-based" in gold)
    links = [g.sure for g in read_pharaoh(links_file)]
    dev, rest = alignment_error_rate(truth[:DEV], links[:DEV]), alignment_error_rate(truth[DEV:], links[DEV:])
    return {"dev_aer": round(dev.aer, 2), "held_out": {**{k: round(getattr(rest, k), 2) for k in ("aer", "precision", "recall")},
                                                        "sentences": rest.sentences}}


def slug(rule: str) -> str:
    """A rule's name in its Pharaoh file's name."""
    return re.sub(r"[^a-z0-9]+", "_", rule.lower())


def rescore(ns, report: dict) -> dict:
    """The ``split`` step: ``split_aer`` added to every figure of ``report`` (a JSON the align and
    eflomal steps wrote) from the links those steps left on disk, once each file is checked to
    give the whole-gold AER the JSON holds (eflomal samples: a rerun's links are others)."""
    from mt.api import alignment_error_rate, read_pharaoh

    gold = ["--gold", str(ns.gold / "enfr.gold"), "--gold-one-based"]
    files = [(report["eflomal"][rule], WORK / "eflomal" / f"{rule}.pharaoh") for rule in
             ("forward", "reverse", "intersection", "grow-diag-final-and") if rule in report.get("eflomal", {})]
    files += [(scores, WORK / "align_hansards" / f"{name}.{slug(rule)}.pharaoh")
              for name, res in report.get("attention", {}).items() for rule, scores in res["rules"].items()]
    truth = read_pharaoh(ns.gold / "enfr.gold", one_based=True)
    for scores, path in files:
        if not path.is_file():
            print(f"   {path.name}: not on disk, left without the split", flush=True)
            continue
        whole = alignment_error_rate(truth, [g.sure for g in read_pharaoh(path)]).aer
        if abs(whole - scores["aer"]) > 0.01:
            raise SystemExit(f"{path} gives {whole:.2f} AER but the JSON holds {scores['aer']}: these are not the "
                             "links it scored; rerun the step that wrote them")
        scores |= split_aer(path, gold)
    return report


def eflomal_links(lines: slice, work: Path | None = None) -> tuple[list[set], list[set]]:
    """eflomal's forward and reverse links of some of the lines it aligned (for a corpus:
    train, valid, test, then the gold pairs)."""
    from mt.api import read_pharaoh

    work = work or WORK / "eflomal"
    return ([g.sure for g in read_pharaoh(work / "all.fwd")[lines]],
            [g.sure for g in read_pharaoh(work / "all.rev")[lines]])


def eflomal(ns) -> dict:

    eflomal_venv(ns)
    work = WORK / "eflomal"
    work.mkdir(parents=True, exist_ok=True)
    data = WORK / "data"
    src = [line for s in SPLITS[ns.corpus] for line in (data / f"{s}.en").read_text(encoding="utf-8").splitlines()]
    tgt = [line for s in SPLITS[ns.corpus] for line in (data / f"{s}.fr").read_text(encoding="utf-8").splitlines()]
    gold_src, gold_tgt = gold_pairs(WORK / "gold.pairs")  # as prepared (accents stripped for hansards)
    n = len(gold_src)
    (work / "text.en").write_text("".join(x + "\n" for x in [*src, *(s.lower() for s in gold_src)]), encoding="utf-8")
    (work / "text.fr").write_text("".join(x + "\n" for x in [*tgt, *(t.lower() for t in gold_tgt)]), encoding="utf-8")
    seconds = run_eflomal(work, "fr")
    training_alignments()
    fwd, rev = eflomal_links(slice(-n, None))
    return score_eflomal(ns, work, fwd, rev, ["--gold", str(ns.gold / "enfr.gold"), "--gold-one-based", "--by-length",
                                              str(WORK / "gold.pairs"), "--edges", "10", "18"],
                         {"seconds": round(seconds, 1), "sentences": len(src) + n})


def run_eflomal(work: Path, tgt_lang: str) -> float:
    """eflomal on ``work``/text.en and text.TGT_LANG, both directions into all.fwd / all.rev;
    returns its seconds."""
    start = time.perf_counter()
    subprocess.run([str(EFLOMAL_VENV / "bin" / "eflomal-align"), "-s", str(work / "text.en"), "-t",
                    str(work / f"text.{tgt_lang}"), "-f", str(work / "all.fwd"), "-r", str(work / "all.rev"),
                    "--model", "3", "--overwrite"], check=True)
    return time.perf_counter() - start


def eflomal_venv(ns) -> None:
    """eflomal from PyPI in its own virtual environment (its numpy and Cython stay out of mt's)."""
    if not (EFLOMAL_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(EFLOMAL_VENV)], check=True)
        subprocess.run([str(EFLOMAL_VENV / "bin" / "pip"), "install", "-q", f"eflomal=={ns.eflomal_version}"],
                       check=True)


def score_eflomal(ns, work: Path, fwd: list[set], rev: list[set], gold: list[str], result: dict) -> dict:
    """AER of eflomal's forward, reverse, intersected and symmetrised links of the gold pairs."""
    from mt.api import grow_diag_final_and, write_pharaoh

    files = {"forward": fwd, "reverse": rev, "intersection": [f & r for f, r in zip(fwd, rev)],
             "grow-diag-final-and": [grow_diag_final_and(f, r) for f, r in zip(fwd, rev)]}
    result["version"] = ns.eflomal_version
    for name, links in files.items():
        path = work / f"{name}.pharaoh"
        write_pharaoh(path, links)
        result[name] = aer_of(path, gold)
        print(f"eflomal {name}: {result[name]}", flush=True)
    return result


def training_alignments() -> Path:
    """eflomal's grow-diag-final-and and intersected links of the training pairs (the first
    lines of what it aligned), for the alignment-supervised variants."""
    from mt.api import grow_diag_final_and, write_pharaoh

    work = WORK / "eflomal"
    if not (work / "all.fwd").is_file():
        raise SystemExit("no eflomal alignments yet: run the eflomal step first")
    n = len((WORK / "data" / "train.en").read_text(encoding="utf-8").splitlines())
    forward, backward = eflomal_links(slice(n))
    for intersection in (False, True):
        links = [f & r if intersection else grow_diag_final_and(f, r) for f, r in zip(forward, backward)]
        write_pharaoh(supervision(intersection=intersection), links)
        write_pharaoh(supervision(True, intersection), [{(j, i) for i, j in pair} for pair in links])  # fr->en
    return supervision()


def lines_of(path: Path) -> list[str]:
    """A file's lines as mt reads them: split at newlines only, the last one's newline optional."""
    lines = path.read_text(encoding="utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


SHARD = 20_000  # training pairs per mt align call: it keeps every pair's matrices until it writes


def self_labels(name: str, reverse: bool = False) -> Path:
    """The teacher's symmetrised links of every training pair (TEACHERS[name]) and the same
    swapped for the French-English student (``.rev``), written together: ``mt align``
    force-decodes the pairs, SHARD at a time, with the teacher and its French-English twin. Made
    again when the teacher trained after them (``--retrain``)."""
    from mt.api import read_pharaoh, write_pharaoh

    teacher, rule, how = TEACHERS[name]
    out = WORK / "self" / f"{teacher}.{slug(rule)}.{slug(how)}.train"
    runs = WORK / "runs"
    model, twin = finished_model(runs / f"{teacher}.en-fr"), finished_model(runs / f"{teacher}.fr-en")
    if model is None or twin is None:
        raise SystemExit(f"{name} learns {teacher}'s links: train {teacher} in both directions first "
                         f"(--variants {teacher} --backward {teacher})")
    rev = out.with_name(out.name + ".rev")
    trained = max((run / "trained.json").stat().st_mtime for run in (model.parent, twin.parent))
    if not rev.is_file() or rev.stat().st_mtime < trained:
        out.parent.mkdir(parents=True, exist_ok=True)
        data = WORK / "data"
        src, tgt = (lines_of(data / f"train.{lang}") for lang in ("en", "fr"))
        start, links = time.perf_counter(), []
        for first in range(0, len(src), SHARD):
            part = out.parent / "shard"
            part.with_suffix(".en").write_text("".join(x + "\n" for x in src[first:first + SHARD]), encoding="utf-8")
            part.with_suffix(".fr").write_text("".join(x + "\n" for x in tgt[first:first + SHARD]), encoding="utf-8")
            subprocess.run([str(REPO / ".venv" / "bin" / "mt"), "align", str(model), "--src-file",
                            str(part.with_suffix(".en")), "--ref-file", str(part.with_suffix(".fr")), "--pharaoh",
                            str(part.with_suffix(".align")), *rules_for(teacher)[rule], "--backward-model", str(twin),
                            "--symmetrize", how], check=True)
            links += [g.sure for g in read_pharaoh(part.with_suffix(".align"))]
            print(f"   {teacher}: {min(first + SHARD, len(src)):,} of {len(src):,} training pairs aligned", flush=True)
        if len(links) != len(src):
            raise SystemExit(f"{teacher} aligned {len(links)} of {len(src)} training pairs: rerun the train step")
        write_pharaoh(out, links)
        write_pharaoh(rev, [{(j, i) for i, j in pair} for pair in links])  # last: its date says both are whole
        (out.parent / f"{out.name}.json").write_text(json.dumps({"teacher": teacher, "rule": rule, "symmetrize": how,
                                                                 "pairs": len(links),
                                                                 "seconds": round(time.perf_counter() - start)}))
    return rev if reverse else out


def labels(name: str, override: str, reverse: bool) -> str:
    """A variant's override with its label placeholder (LABELS) made a file of links."""
    if override == SUPERVISED or override == SUPERVISED_INTERSECTION:
        return f"data.train_alignments={supervision(reverse, override == SUPERVISED_INTERSECTION)}"
    if override == SELF_TRAINED:
        return f"data.train_alignments={self_labels(name, reverse)}"
    return override


def train(ns) -> None:
    """Every model of --variants (English->French) and --backward (French->English), ``--jobs`` at
    a time with the threads shared, each for its budget: ``--epochs`` with ``--patience`` (early
    stopping on validation BLEU) and, if given, ``--seconds`` of wall clock. Each run's folder gets
    ``trained.json``: the command, its wall-clock seconds and the machine it ran on (sessions may
    train the models on different machines)."""
    from mt.api import machine

    if any(o in (SUPERVISED, SUPERVISED_INTERSECTION) for name in [*ns.variants, *ns.backward] for o in VARIANTS[name]) \
            and not supervision(True, intersection=True).is_file():
        training_alignments()
    data = WORK / "data"
    runs = [(name, "en", "fr") for name in ns.variants] + [(name, "fr", "en") for name in ns.backward]
    pending = []
    for name, src, tgt in runs:
        run_dir = WORK / "runs" / f"{name}.{src}-{tgt}"
        if (run_dir / "trained.json").is_file() and not ns.retrain:
            print(f"== {name} {src}->{tgt}: trained already ({run_dir})", flush=True)
            continue
        if name in TEACHERS and not all(finished_model(WORK / "runs" / f"{TEACHERS[name][0]}.{d}") for d in
                                        ("en-fr", "fr-en")):
            print(f"== {name} {src}->{tgt}: waits for {TEACHERS[name][0]} in both directions (--variants "
                  f"{TEACHERS[name][0]} --backward {TEACHERS[name][0]}); rerun this step once they are trained",
                  flush=True)
            continue
        # A supervised French->English model learns the same links, swapped.
        overrides = [labels(name, o, reverse=src == "fr") for o in VARIANTS[name]]
        seconds = ns.transformer_seconds if name.startswith("transformer") else ns.seconds
        pending.append((run_dir, [
            str(REPO / ".venv" / "bin" / "mt"), "train", "data=files", f"data.dir={data}", f"data.src_lang={src}",
            f"data.tgt_lang={tgt}", *overrides, f"train.epochs={ns.epochs}", f"train.patience={ns.patience}",
            f"train.max_seconds={seconds}", f"train.precision={ns.precision}", f"train.seed={ns.seed}",
            f"train.threads={max(1, ns.threads // ns.jobs)}", "train.log_seconds=60",
            *([f"train.keep_checkpoints={ns.keep_checkpoints}"] if ns.keep_checkpoints else []),
            # a run cut off part-way goes on from its last checkpoint when the step is rerun
            *([f"train.resume={run_dir}"] if (run_dir / "checkpoints" / "last").is_dir() else []),
            f"hydra.run.dir={run_dir}", f"cache_dir={WORK / 'cache'}"]))

    def finished(run_dir: Path, cmd: list[str], seconds: float) -> None:
        record = {"command": " ".join(["mt", *cmd[1:]]), "seconds": round(seconds), "date": time.strftime("%Y-%m-%d"),
                  "machine": machine()}
        (run_dir / "trained.json").write_text(json.dumps(record, indent=2))
        print(f"   {run_dir.name}: {seconds:.0f} s", flush=True)

    run_parallel(pending, ns.jobs, finished)


def run_parallel(commands: list[tuple[Path, list[str]]], jobs: int, finished=None) -> None:
    """Run (folder, command) pairs ``jobs`` at a time; ``finished(folder, command, seconds)`` after
    each; the first failure stops the step (what finished stays finished)."""
    pending, running = list(commands), []
    while pending or running:
        while pending and len(running) < jobs:
            folder, cmd = pending.pop(0)
            print(f"== {folder.name}: {' '.join(cmd[2:])}", flush=True)
            running.append((folder, cmd, time.perf_counter(), subprocess.Popen(cmd, cwd=REPO)))
        time.sleep(1)
        for item in [r for r in running if r[3].poll() is not None]:
            running.remove(item)
            folder, cmd, start, process = item
            if process.returncode:
                for *_, other in running:
                    other.wait()
                raise SystemExit(f"training failed ({process.returncode}): {' '.join(cmd[2:])}")
            if finished:
                finished(folder, cmd, time.perf_counter() - start)


def supervised(name: str) -> bool:
    """Its attention learns links of the training pairs (train.alignment_loss): eflomal's or a teacher's."""
    return any(label in VARIANTS[name] for label in LABELS)


def shifted(name: str) -> bool:
    """Supervised on the step that reads the word (train.alignment_shift): read with Shift-Att."""
    return "train.alignment_shift=true" in VARIANTS[name]


TRANSFORMER_LAYERS, TRANSFORMER_HEADS = 3, 4  # conf/model/transformer.yaml's decoder


def best_rule(name: str) -> str:
    """The rule each model is meant for, and the one symmetrised and checked in-domain: Shift-Att
    for a model supervised on the shifted step; the penultimate decoder layer of the unsupervised
    Transformer, where Garg et al. (2019) find its attention aligns best (Shift-Att, Chen et al.'s
    reading, did not help it on Hansards: RESULTS)."""
    if shifted(name):
        return "argmax, Shift-Att"
    return f"argmax, layer {TRANSFORMER_LAYERS - 2} mean of heads" if name == "transformer" else "argmax"


def rules_for(name: str) -> dict[str, list[str]]:
    # --no-shift-att said outright: mt align reads a model trained with train.alignment_shift
    # shifted unless told otherwise
    rules = {"argmax": ["--no-shift-att"], "threshold 0.3": ["--no-shift-att", "--rule", "threshold", "--threshold", "0.3"],
             "argmax, Shift-Att": ["--shift-att"]}
    if shifted(name):  # mt align's default threshold, on the rows the supervision shaped
        rules["threshold 0.5, Shift-Att"] = ["--shift-att", "--rule", "threshold", "--threshold", "0.5"]
    elif supervised(name):
        rules["threshold 0.5"] = ["--no-shift-att", "--rule", "threshold", "--threshold", "0.5"]
    if name == "transformer":  # layer and head: the split step chooses one on the gold's first DEV sentences
        for layer in range(TRANSFORMER_LAYERS):
            rules[f"argmax, layer {layer} mean of heads, Shift-Att"] = ["--shift-att", "--layer", str(layer)]
            rules[f"argmax, layer {layer} mean of heads"] = ["--no-shift-att", "--layer", str(layer)]
            for head in range(TRANSFORMER_HEADS):
                where = ["--layer", str(layer), "--head", str(head)]
                rules[f"argmax, layer {layer} head {head}, Shift-Att"] = ["--shift-att", *where]
                rules[f"argmax, layer {layer} head {head}"] = ["--no-shift-att", *where]
    return rules


IN_DOMAIN = 500  # validation pairs of the training corpus in the in-domain check


def in_domain_reference() -> tuple[list[str], list[str]]:
    """The first IN_DOMAIN validation pairs of the training corpus as --pairs input, and eflomal's
    grow-diag-final-and links of them (written by the eflomal step) as --gold arguments: how
    closely a model's attention follows a statistical aligner on the text it was trained for.
    Agreement with eflomal, not accuracy: there is no human gold for those pairs."""
    from mt.api import grow_diag_final_and, write_pharaoh

    work = WORK / "in_domain"
    work.mkdir(parents=True, exist_ok=True)
    data = WORK / "data"
    start = len((data / "train.en").read_text(encoding="utf-8").splitlines())  # eflomal read train, valid, ...
    src = (data / "valid.en").read_text(encoding="utf-8").splitlines()[:IN_DOMAIN]
    tgt = (data / "valid.fr").read_text(encoding="utf-8").splitlines()[:IN_DOMAIN]
    (work / "valid.pairs").write_text("".join(f"{a} ||| {b}\n" for a, b in zip(src, tgt)), encoding="utf-8")
    links = [grow_diag_final_and(f, r) for f, r in zip(*eflomal_links(slice(start, start + IN_DOMAIN)))]
    write_pharaoh(work / "eflomal.gdfa", links)
    return ["--pairs", str(work / "valid.pairs")], ["--gold", str(work / "eflomal.gdfa")]


def align(ns, corpus: str = "hansards") -> dict:
    """AER of every trained model and rule on one gold set."""
    results: dict = {}
    runs = WORK / "runs" if corpus == "hansards" else WORK / "demo_runs"
    forward, backward_dir = ("en-fr", "fr-en") if corpus == "hansards" else ("en-de", "de-en")
    if corpus == "hansards":
        inputs = ["--pairs", str(WORK / "gold.pairs"), "--lowercase"]
        # By source length too: 1-18 words is as long as the Hansards training text gets.
        gold = ["--gold", str(ns.gold / "enfr.gold"), "--gold-one-based", "--by-length", str(WORK / "gold.pairs"),
                "--edges", "10", "18"]
    else:
        inputs = ["--src-file", str(ns.demo / "test.en"), "--ref-file", str(ns.demo / "test.de")]
        gold = ["--gold", str(ns.demo / "test.align")]
    in_domain = in_domain_reference() if corpus == "hansards" and (WORK / "eflomal" / "all.fwd").is_file() else None
    for name in ns.variants:
        model = finished_model(runs / f"{name}.{forward}")
        if model is None:
            print(f"== {name}: no finished run at {runs / f'{name}.{forward}'}; run the train step", flush=True)
            continue
        backward = finished_model(runs / f"{name}.{backward_dir}")  # the other direction's, if trained
        metrics = _last_valid(model.parent / "metrics.jsonl")
        results[name] = {"valid_bleu": metrics.get("valid_bleu"), "steps": metrics.get("step"), "rules": {}}
        if corpus == "hansards":
            results[name] |= {"test_bleu": test_bleu(model), "training": training_record(model.parent)}
            if backward is not None:
                results[name]["backward_training"] = training_record(backward.parent)
            print(f"{name:20s} test BLEU {results[name]['test_bleu']['bleu']}, trained "
                  f"{results[name]['training'].get('seconds')} s", flush=True)
        if name == "noattn":  # no attention to align: its BLEU is the baseline of the others'
            continue
        rules, best = rules_for(name), best_rule(name)
        if backward is not None:  # symmetrised with the model of the other direction, as eflomal's two
            for rule in [best, *[r for r in rules if r.startswith("threshold 0.5")]]:
                for how in ("grow-diag-final-and", "intersection", "mean"):
                    rules[f"{rule}, {how}"] = [*rules[rule], "--backward-model", str(backward), "--symmetrize", how]
        for rule in [r for r in list(rules) if r.startswith("threshold 0.5")]:  # a word's subword rows: max, first
            for merge in ("max", "first"):
                rules[f"{rule}, merge {merge}"] = [*rules[rule], "--merge", merge]
        for rule, extra in rules.items():
            out = WORK / f"align_{corpus}" / f"{name}.{slug(rule)}.pharaoh"
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(REPO / ".venv" / "bin" / "mt"), "align", str(model), *inputs, "--pharaoh", str(out),
                            *extra], check=True, capture_output=True)
            results[name]["rules"][rule] = aer_of(out, gold)
            print(f"{name:20s} {rule:45s} {results[name]['rules'][rule]}", flush=True)
        if in_domain:  # the same rule on the model's own domain, against eflomal's links there
            out = WORK / "in_domain" / f"{name}.pharaoh"
            subprocess.run([str(REPO / ".venv" / "bin" / "mt"), "align", str(model), *in_domain[0], "--pharaoh",
                            str(out), *rules[best]], check=True, capture_output=True)
            results[name]["in_domain_vs_eflomal"] = {"rule": best, **aer_of(out, in_domain[1])}
            print(f"{name:20s} {'own validation pairs, against eflomal (' + best + ')':45s} "
                  f"{results[name]['in_domain_vs_eflomal']}", flush=True)
    return results


def by_epoch(ns) -> dict:
    """AER on the gold (first 100 / other 347) and validation BLEU of every model a run kept per
    validation (``--keep-checkpoints``), each read as the finished model is (``epoch_reading``),
    with the twin's model of the same validation where both directions kept theirs: how
    alignment quality grows with the budget."""
    inputs = ["--pairs", str(WORK / "gold.pairs"), "--lowercase"]
    gold = ["--gold", str(ns.gold / "enfr.gold"), "--gold-one-based"]
    results = {}
    for name in ns.variants:
        forward, backward = WORK / "runs" / f"{name}.en-fr", WORK / "runs" / f"{name}.fr-en"
        kept, twins = kept_models(forward), kept_models(backward)
        if not kept:
            print(f"== {name}: no models kept per validation in {forward / 'checkpoints'}; train with "
                  "--keep-checkpoints N", flush=True)
            continue
        rule, how = epoch_reading(name)
        valid = {r["step"]: r for r in _rows(forward / "metrics.jsonl")}
        rows = []
        for i, snapshot in enumerate(kept):
            twin = twins[i] if len(twins) == len(kept) else None  # the twin's model of the same validation
            extra = [*rules_for(name)[rule], *(["--backward-model", str(twin), "--symmetrize", how] if twin else [])]
            out = WORK / "by_epoch" / f"{name}.{snapshot.name}.pharaoh"
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(REPO / ".venv" / "bin" / "mt"), "align", str(snapshot), *inputs, "--pharaoh", str(out),
                            *extra], check=True, capture_output=True)
            step = int(snapshot.name.split("_")[-1])
            row = {"step": step, "epoch": valid.get(step, {}).get("epoch"), "valid_bleu": valid.get(step, {}).get(
                "valid_bleu"), "reading": f"{rule}, {how}" if twin else rule, **aer_of(out, gold)}
            rows.append(row)
            print(f"{name:20s} step {step:6d} epoch {row['epoch']} valid BLEU {row['valid_bleu']} AER {row['aer']}",
                  flush=True)
        results[name] = rows
    return results


def kept_models(run_dir: Path) -> list[Path]:
    """The models a run kept per validation (train.keep_checkpoints), oldest first."""
    return sorted(p for p in (run_dir / "checkpoints").glob("step_*[0-9]") if p.is_dir())


def epoch_reading(name: str) -> tuple[str, str]:
    """The reading by epoch: for a model supervised on the shifted step the study's best (threshold
    0.5 with Shift-Att, the mean of both directions), else the model's own (``best_rule``)."""
    return ("threshold 0.5, Shift-Att", "mean") if shifted(name) else (best_rule(name), "grow-diag-final-and")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def finished_model(run_dir: Path) -> Path | None:
    """A run's model once its training finished: the train step writes trained.json at the end
    (the demo step, which trains before it aligns, writes none); a run still training already
    has a model folder from its first epoch."""
    done = (run_dir / "trained.json").is_file() or run_dir.parent.name == "demo_runs"
    return run_dir / "model" if done and (run_dir / "model").is_dir() else None


def test_bleu(model: Path) -> dict:
    """BLEU and chrF of beam 5 (fp32 on every machine) on the prepared test split: lower-cased and
    tokenized as the gold, so not comparable with published detokenized BLEU."""
    out = model.parent / "test_bleu.json"
    data = WORK / "data"
    src, tgt = ("en", "fr") if model.parent.name.endswith("en-fr") else ("fr", "en")
    if not out.is_file():
        subprocess.run([str(REPO / ".venv" / "bin" / "mt"), "evaluate", str(model), "--src", str(data / f"test.{src}"),
                        "--ref", str(data / f"test.{tgt}"), "--beam", "5", "--precision", "fp32", "--json", str(out)],
                       check=True, capture_output=True)
    scores = json.loads(out.read_text())["scores"]
    return {"bleu": scores["bleu"], "chrf": scores["chrf"], "sentences": scores["sentences"], "beam": 5}


def training_record(run_dir: Path) -> dict:
    """How a run trained: its wall clock and machine (trained.json), how far it got and at what
    speed and precision (its metrics)."""
    record = json.loads((run_dir / "trained.json").read_text()) if (run_dir / "trained.json").is_file() else {}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] \
        if (run_dir / "metrics.jsonl").is_file() else []
    rows = [r for r in rows if "valid_bleu" in r]
    if rows:
        record |= {"epochs": rows[-1]["epoch"], "steps": rows[-1]["step"], "precision": rows[-1].get("precision"),
                   "best_epoch": max(rows, key=lambda r: r["valid_bleu"])["epoch"],
                   "tokens_per_s": round(sorted(r["tokens_per_s"] for r in rows)[len(rows) // 2])}
    return record


def zero_based(gold_line: str) -> str:
    """A line of the gold's 1-based links (``i-j`` sure, ``ipj`` possible) 0-based, as mt explore
    reads them; a possible link that is also sure is written once, as sure."""
    from mt.api import parse_pharaoh

    links = parse_pharaoh(gold_line, one_based=True)
    return " ".join([f"{i}-{j}" for i, j in sorted(links.sure)] +
                    [f"{i}p{j}" for i, j in sorted(links.possible - links.sure)])


def explore(ns) -> Path:
    """The explorer page of the first gold pairs, every trained English->French model beside the
    gold links."""
    runs = WORK / "runs"
    models = [m for m in (finished_model(runs / f"{name}.en-fr") for name in ns.variants) if m is not None]
    if not models:
        raise SystemExit(f"no trained model under {runs}: run the train step first")
    sources, targets = gold_pairs(WORK / "gold.pairs")
    gold = (ns.gold / "enfr.gold").read_text(encoding="utf-8").splitlines()
    n = min(ns.sentences, len(sources))
    folder = WORK / "explore"
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("gold.en", sources), ("gold.fr", targets), ("gold.align", [zero_based(g) for g in gold])):
        (folder / name).write_text("".join(line + "\n" for line in lines[:n]), encoding="utf-8")
    out = ns.out or WORK / "explore" / "hansards_explorer.html"
    subprocess.run([str(REPO / ".venv" / "bin" / "mt"), "explore", *map(str, models), "--src-file",
                    str(folder / "gold.en"), "--ref-file", str(folder / "gold.fr"), "--gold", str(folder / "gold.align"),
                    "--out", str(out), "--max-sentences", str(n), "--title",
                    f"Attention on the first {n} Hansards gold pairs ({ns.corpus} training text)"], check=True)
    print(f"wrote {out}: {n} gold pairs, {len(models)} models", flush=True)
    return Path(out)


# The demo's model size and training settings (``mt demo``'s, which reach their best BLEU on this
# corpus in minutes), as this study trained with them: the study keeps its own copy, so that a
# change to the demo does not change what rerunning the study measures.
DEMO_MODEL = ["model.emb_dim=64", "model.hidden_dim=128", "model.enc_hidden_dim=64", "model.attention.dim=64"]
DEMO_TRAIN = ["train.max_tokens=1500", "train.lr=0.003", "train.log_seconds=20"]


def demo_size(name: str) -> list[str]:
    """The demo's model size and training settings; the Transformer at the same d_model as the
    RNN decoders, with its preset's rate and warm-up (0.003 is the RNNs')."""
    if name == "transformer":
        return ["model.hidden_dim=128", "model.ff_dim=512", *[o for o in DEMO_TRAIN if not o.startswith("train.lr=")]]
    return [*DEMO_MODEL, *DEMO_TRAIN]


def demo(ns) -> dict:
    """Every variant trained on the demo corpus until validation stops improving, ``--jobs`` at
    a time, threads shared (seen once in the progress lines of the 2026-11-23 run: two
    one-thread Bahdanau trainings at 4.8k + 4.5k tokens/s against 6.8k for one on two
    threads), then every rule against its gold."""
    ns.variants = [n for n in ns.variants if not supervised(n)  # they learn eflomal's links of its corpus
                   and n != "noattn"]  # no attention, nothing to align
    pending = []
    for name in ns.variants:
        run_dir = WORK / "demo_runs" / f"{name}.en-de"
        if (run_dir / "model" / "model.safetensors").is_file() and not ns.retrain:
            continue
        pending.append((run_dir, [str(REPO / ".venv" / "bin" / "mt"), "train", "data=demo", f"data.dir={ns.demo}",
                        *VARIANTS[name], *demo_size(name), f"train.epochs={ns.demo_epochs}",
                        f"train.patience={ns.demo_patience}", f"train.max_seconds={ns.demo_seconds}",
                        f"train.seed={ns.seed}", f"train.threads={max(1, ns.threads // ns.jobs)}",
                        f"hydra.run.dir={run_dir}", f"cache_dir={WORK / 'cache'}"]))
    run_parallel(pending, ns.jobs)
    return align(ns, "demo")


def demo_corpus(folder: Path) -> Path:
    """The demo corpus as ``mt train data=demo`` generates it on first use (its preset's sizes and
    seed), in ``folder``."""
    from mt.api import compose, load_corpus

    load_corpus(compose(["data=demo", f"data.dir={folder}"]).data)
    return folder


def demo_eflomal(ns) -> dict:
    """eflomal on the demo corpus (training and test pairs, whitespace words as the gold
    counts them), scored against the test pairs' gold."""
    eflomal_venv(ns)
    work = WORK / "eflomal_demo"
    work.mkdir(parents=True, exist_ok=True)
    text = {lang: [line for split in ("train", "test")
                   for line in (ns.demo / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()]
            for lang in ("en", "de")}
    for lang, lines in text.items():
        (work / f"text.{lang}").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    seconds = run_eflomal(work, "de")
    n = len((ns.demo / "test.en").read_text(encoding="utf-8").splitlines())
    fwd, rev = eflomal_links(slice(-n, None), work)
    return score_eflomal(ns, work, fwd, rev, ["--gold", str(ns.demo / "test.align")],
                         {"seconds": round(seconds, 1), "sentences": len(text["en"])})


def _last_valid(path: Path) -> dict:
    rows = [r for r in _rows(path) if "valid_bleu" in r]
    return max(rows, key=lambda r: r["valid_bleu"]) if rows else {}


def table(report: dict) -> str:
    """Markdown tables: Hansards (eflomal first), then the demo corpus."""
    out = []
    trained = {"multi30k": "trained on Multi30k", "hansards": "trained on Hansards"}[report.get("corpus", "multi30k")]
    for key, title in (("attention", f"Hansards gold en-fr, {trained}"), ("demo", "demo corpus en-de")):
        if key not in report and not (key == "attention" and "eflomal" in report):  # a demo table needs its models
            continue
        test = key == "attention" and report.get("corpus") == "hansards"  # in-domain: BLEU of the test split
        flo = report.get("eflomal" if key == "attention" else "demo_eflomal")
        rows = [(f"eflomal {flo['version']}", "-", rule, flo[rule]) for rule in
                ("forward", "reverse", "intersection", "grow-diag-final-and")] if flo else []
        for name, res in report.get(key, {}).items():
            bleu = res["test_bleu"]["bleu"] if test and "test_bleu" in res else res["valid_bleu"]
            rows += [(name, bleu, "-", None)] if not res["rules"] else []  # no attention: BLEU only
            rows += [(name, bleu, rule, s) for rule, s in res["rules"].items()]
        buckets = next((list(s["by_length"]) for *_, s in rows if s and "by_length" in s), [])
        by_length = f" AER, {' / '.join(buckets)} words |" if buckets else ""
        lines = [f"{title}", "", f"| aligner | {'test' if test else 'valid'} BLEU | rule | AER | precision | recall |"
                 + by_length, "| --- | ---: | --- | ---: | ---: | ---: |" + (" --- |" if buckets else "")]
        for name, bleu, rule, s in rows:
            cells = [f"{s[k]:.1f}" for k in ("aer", "precision", "recall")] if s else ["-"] * 3
            if buckets:
                cells.append(" / ".join(f"{s['by_length'][b]['aer']:.1f}" for b in buckets) if s else "-")
            lines.append(f"| {name} | {bleu} | {rule} | {' | '.join(cells)} |")
        out.append("\n".join(lines))
    out += [chosen_table(report)] if any("dev_aer" in s for s in report.get("eflomal", {}).values()
                                        if isinstance(s, dict)) else []
    runs = {n: r for n, r in report.get("attention", {}).items() if r.get("training")}
    if runs:
        lines = ["How each model trained (one row per direction)", "",
                 "| model | direction | epochs (best) | wall clock | target tokens/s | precision | CPU |",
                 "| --- | --- | ---: | ---: | ---: | --- | --- |"]
        for name, res in runs.items():
            for direction, t in (("en-fr", res["training"]), ("fr-en", res.get("backward_training"))):
                if t:
                    lines.append(f"| {name} | {direction} | {t.get('epochs')} ({t.get('best_epoch')}) | "
                                 f"{t.get('seconds', 0) / 60:.0f} min | {t.get('tokens_per_s'):,} | "
                                 f"{t.get('precision')} | {cpu_label(t.get('machine', {}))} |")
        out.append("\n".join(lines))
    checks = {n: r for n, r in report.get("attention", {}).items() if "in_domain_vs_eflomal" in r}
    if checks:
        title = (f"Check on the training corpus ({IN_DOMAIN} of its validation pairs, against eflomal's "
                 "grow-diag-final-and links of them; agreement, not accuracy)")
        header = "| model | rule | AER against eflomal | precision | recall | Hansards gold AER, same rule |"
        lines = [title, "", header, "| --- | --- | ---: | ---: | ---: | ---: |"]
        for name, res in checks.items():
            s = res["in_domain_vs_eflomal"]
            lines.append(f"| {name} | {s['rule']} | {s['aer']:.1f} | {s['precision']:.1f} | {s['recall']:.1f} | "
                         f"{res['rules'][s['rule']]['aer']:.1f} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def chosen_table(report: dict) -> str:
    """Each aligner's rule chosen on the gold's first DEV sentences, scored on the others."""
    flo = report["eflomal"]
    rest = next(s["held_out"]["sentences"] for s in flo.values() if isinstance(s, dict) and "held_out" in s)
    lines = [f"The rule chosen on the gold's first {DEV} sentences, scored on the other {rest}", "",
             f"| aligner | rule (lowest AER on the first {DEV}) | AER there | AER on the other {rest} | precision | recall |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    aligners = [(f"eflomal {flo['version']}", {r: s for r, s in flo.items() if isinstance(s, dict) and "dev_aer" in s})]
    aligners += [(name, {r: s for r, s in res["rules"].items() if "dev_aer" in s})
                 for name, res in report.get("attention", {}).items()]
    for name, rules in aligners:
        if rules:
            rule, s = min(rules.items(), key=lambda item: item[1]["dev_aer"])
            h = s["held_out"]
            lines.append(f"| {name} | {rule} | {s['dev_aer']:.1f} | {h['aer']:.1f} | {h['precision']:.1f} | "
                         f"{h['recall']:.1f} |")
    return "\n".join(lines)


def cpu_label(info: dict) -> str:
    """A machine() record in a few words: its CPU and what it computes bf16 with."""
    flags = info.get("flags", [])
    isa = "AMX" if "amx_bf16" in flags else "AVX-512-BF16" if "avx512_bf16" in flags else \
        "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    return f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores" + (f", {isa}" if isa else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "eflomal", "train", "align", "by-epoch", "explore", "demo", "all",
                                         "table", "split"],
                        help="table: print the tables of what --json holds (every session's models); split: add "
                        "the first-100 / other-347 split of the gold to its figures")
    parser.add_argument("--corpus", choices=list(WORKS), default="multi30k", help="the training text (the gold "
                        "is the same): multi30k (another domain) or hansards (the gold's own)")
    parser.add_argument("--multi30k", type=Path, default=REPO.parent / "shared" / "data" / "multi30k")
    parser.add_argument("--hansards", type=Path, default=REPO.parent / "shared" / "data" / "hansards")
    parser.add_argument("--gold", type=Path, default=REPO.parent / "shared" / "data" / "alignments" / "en-fr-hansards")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--backward", nargs="*", default=["bahdanau"], choices=list(VARIANTS),
                        help="variants also trained French->English, for grow-diag-final-and")
    parser.add_argument("--seconds", type=float, default=240, help="training budget of each RNN (wall clock; "
                        "0: none, then --epochs and --patience end it)")
    parser.add_argument("--transformer-seconds", type=float, default=1200)
    parser.add_argument("--epochs", type=int, default=1000, help="train: most epochs of each model")
    parser.add_argument("--patience", type=int, default=0, help="train: stop a model after this many validations "
                        "without a better BLEU (0: never)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="train: auto is bf16 where the CPU computes it natively")
    parser.add_argument("--demo", type=Path, default=REPO / "data" / "demo", help="the demo corpus (mt train "
                        "data=demo writes it)")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once (threads shared)")
    parser.add_argument("--demo-epochs", type=int, default=8, help="most epochs of each demo model")
    parser.add_argument("--demo-patience", type=int, default=2, help="validations without a better BLEU "
                        "before a demo model stops")
    parser.add_argument("--demo-seconds", type=float, default=0, help="a time limit on each demo model (0: none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--retrain", action="store_true", help="train again models that exist")
    parser.add_argument("--keep-checkpoints", type=int, default=0, help="train: keep the model of each of the last N "
                        "validations (train.keep_checkpoints), for the by-epoch step")
    parser.add_argument("--eflomal-version", default="2.0.0")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--sentences", type=int, default=50, help="explore: the first N gold pairs")
    parser.add_argument("--out", type=Path, help="explore: the page to write (default under the corpus's folder)")
    ns = parser.parse_args()
    ns.jobs = max(1, min(ns.jobs, ns.threads))
    if not (ns.gold / "enfr.gold").is_file():
        raise SystemExit(f"missing {ns.gold / 'enfr.gold'}: pass --gold DIR (the en-fr-hansards folder)")
    if ns.corpus == "hansards" and ns.step == "demo":
        raise SystemExit("the demo step trains on the demo corpus: run it without --corpus hansards")
    if ns.step in ("table", "split"):
        if not (ns.json and ns.json.is_file()):
            raise SystemExit(f"the {ns.step} step reads --json FILE: pass the JSON an align step wrote")
        report = json.loads(ns.json.read_text())
        if ns.step == "split":
            use_corpus(report.get("corpus", "multi30k"))
            ns.json.write_text(json.dumps(rescore(ns, report), indent=2))
        print(table(report))
        return
    use_corpus(ns.corpus)
    report: dict = {"corpus": ns.corpus}
    if ns.step in ("prepare", "all") or not (WORK / "data" / "train.en").is_file():
        prepare(ns)
    if ns.step in ("eflomal", "all"):
        report["eflomal"] = eflomal(ns)
    if ns.step in ("train", "all"):
        train(ns)
    if ns.step in ("align", "all"):
        report["attention"] = align(ns)
    if ns.step == "by-epoch":
        report["by_epoch"] = by_epoch(ns)
    if ns.step == "explore":
        explore(ns)
    if ns.step in ("demo", "all") and ns.corpus == "multi30k":
        demo_corpus(ns.demo)  # a fresh checkout has none yet; eflomal reads it before any model trains
        report["demo_eflomal"] = demo_eflomal(ns)
        report["demo"] = demo(ns)
    if set(report) - {"corpus"}:
        print(table(report))
    if ns.json:  # merged into what the file holds, each step's settings kept beside its figures
        previous = json.loads(ns.json.read_text()) if ns.json.is_file() else {}
        for key, value in report.items():  # a step run for some variants keeps the others' figures
            if key in ("attention", "demo", "by_epoch") and isinstance(previous.get(key), dict):
                previous[key].update(value)
            else:
                previous[key] = value
        settings = {"train": {"seconds": ns.seconds, "transformer_seconds": ns.transformer_seconds, "epochs": ns.epochs,
                              "patience": ns.patience, "precision": ns.precision, "jobs": ns.jobs},
                    "demo": {"demo_epochs": ns.demo_epochs, "demo_patience": ns.demo_patience,
                             "demo_seconds": ns.demo_seconds, "jobs": ns.jobs}}
        own = settings["train"] | settings["demo"] if ns.step == "all" else settings.get(ns.step, {})
        previous.setdefault("steps", {})[ns.step] = {
            "command": " ".join(["studies/hansards_alignment/hansards_aer.py", *sys.argv[1:]]), "date": time.strftime("%Y-%m-%d"),
            "threads": ns.threads, "seed": ns.seed, **own}
        from mt.api import machine

        previous["steps"][ns.step]["machine"] = previous["machine"] = machine()  # sessions may differ in machine
        ns.json.write_text(json.dumps(previous, indent=2))


if __name__ == "__main__":
    main()
