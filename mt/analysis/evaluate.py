"""``mt evaluate`` and the test set of ``mt compare`` as a library: one model's BLEU and chrF
on a test set, overall and by source length, and the test split of the corpus a model (or a
record) was trained on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mt.analysis.compare.entries import ModelEntry
from mt.analysis.compare.saved_systems import SavedSystem
from mt.config import ExperimentConfig, load_yaml
from mt.data.corpus import load_corpus, read_parallel
from mt.decoding.search import SearchConfig
from mt.decoding.translator import Translator
from mt.errors import DataError
from mt.evaluation.metrics import DEFAULT_BUCKETS, BucketScore, Scores, corpus_scores, scores_by_length
from mt.evaluation.report import format_table
from mt.model_dir import corpus_of_run


@dataclass
class Evaluation:
    scores: Scores
    by_length: list[BucketScore]
    hypotheses: list[str]
    beam: int

    def as_dict(self, model_dir: str = "") -> dict:
        return {"scores": self.scores.as_dict(), "by_length": [asdict(b) for b in self.by_length],
                "beam": self.beam, "model_dir": model_dir}

    def report(self) -> str:
        s = self.scores
        return (f"BLEU {s.bleu:.2f}   {s.bleu_signature}\nchrF {s.chrf:.2f}   {s.chrf_signature}\n"
                f"{s.sentences} sentences, beam {self.beam}\n\n"
                + format_table(["source words", "sentences", "BLEU", "chrF"],
                               [[b.bucket, b.sentences, f"{b.bleu:.2f}", f"{b.chrf:.2f}"] for b in self.by_length]))


def read_test_set(src_path: str, ref_path: str) -> tuple[list[str], list[str]]:
    """Sources and references, line by line (``.gz`` accepted)."""
    sources, references = read_parallel(src_path, ref_path)
    assert references is not None
    return sources, references


def evaluate(translator: Translator, sources: Sequence[str], references: Sequence[str], search: SearchConfig,
             buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS) -> Evaluation:
    hypotheses = [t.text for t in translator.translate(list(sources), search)]
    return Evaluation(corpus_scores(hypotheses, references), scores_by_length(sources, hypotheses, references, buckets),
                      hypotheses, search.beam)


def training_split(entries: Sequence[ModelEntry], saved: Sequence[SavedSystem],
                   split: str) -> tuple[list[str], list[str], str]:
    """The ``valid`` or ``test`` split of the corpus the first model (or record) was trained on:
    sources, references, and a phrase saying which."""
    if entries:
        where = Path(entries[0].model_dir) / "config.yaml"
        data = load_yaml(where, ExperimentConfig).data
    else:
        where = Path(saved[0].path)
        data = load_yaml(where, ExperimentConfig, text=saved[0].config).data
    data = corpus_of_run(data, where, f"the {split} split: give the test set with --src FILE --ref FILE instead "
                         f"of --split {split}, or run from the folder the run was trained in")
    try:
        test = load_corpus(data)["validation" if split == "valid" else "test"]
    except DataError as err:  # the training settings it names are not this command's to set
        raise DataError(f"the {split} split of the run's corpus: {err}; or give the test set with --src FILE "
                        "--ref FILE") from None
    return list(test["src"]), list(test["tgt"]), f"the {split} split of {data.name} ({data.src_lang}-{data.tgt_lang})"
