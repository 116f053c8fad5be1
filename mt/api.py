"""mt's Python API: the supported surface for code that uses mt.

A user's program, and every benchmark (``bench/``) and study (``studies/``) of this repository,
imports mt from here (``from mt.api import open_translator``) and from nowhere else in the
package (``tests/test_layers.py`` holds the repository's own scripts to it). The modules behind
these names may move or change; the names, and what their docstrings promise, are kept. A name is
imported from its module the first time it is used, so ``from mt.api import open_translator``
costs what translating needs and not the rest of mt.

Each command has its counterpart:

    mt translate   open_translator(path).translate(lines, beam=4)  -> [Translation]
    mt train       run_training(compose(["model=rnn_bahdanau", "train.epochs=5"]), "runs/x")
    mt evaluate    evaluate(open_translator(path), *read_test_set(src, ref), SearchConfig(beam=5))
    mt compare     run_compare(CompareRequest(out="cmp/", models=["runs/x/model"], split="test"))
    mt align       align_files(translator, sources, targets, AlignmentFiles(pharaoh="a.txt"),
                               SearchConfig(), AlignOptions())
    mt aer         alignment_error_rate(read_pharaoh(gold), [g.sure for g in read_pharaoh(pred)])
    mt explore     explore_models(["runs/x/model"], src_file, ref_file, gold_file, "explore.html")
    mt export      export_ctranslate2(model_dir, out), export_int8(model_dir, out)
    mt average     average_paths([Path("runs/x")], Path("runs/x/average"), last=3)
    mt demo        run_demo(DemoSettings())
    mt serve       serve(["ende=runs/x"], ServeSettings(port=5000)) (the serve extra); its parts:
                   StreamingTranslator (continuous batching), LanguageDetector (/detect)

and around them:

- translating: ``Translator`` (also built from a model and its tokenizers), ``Translation``,
  ``SearchConfig``; ``parse_html(html).render([AlignedSegment(words, links), ...])`` (HTML with
  its inline tags placed by word links, as ``mt serve`` does ``format: "html"``);
- attention read as word links: ``align_pairs``, ``AlignOptions``, ``AlignedPair``,
  ``links_by_rule``, ``grow_diag_final_and``; files of pairs: ``read_pairs``, ``prepare_pairs``,
  ``draw_sentence``; Pharaoh files and the alignment error rate: ``parse_pharaoh``,
  ``format_pharaoh``, ``read_pharaoh``, ``write_pharaoh``, ``read_gold_and_predicted``,
  ``aer_by_length``, ``GoldLinks``, ``AERScores``;
- measuring: ``corpus_scores`` and ``scores_by_length`` (sacreBLEU's BLEU and chrF, ``Scores``),
  ``Evaluation``; ``load_corpus`` (the splits of the corpus a config names), ``ExperimentConfig``;
- model directories and exports: ``load_model_dir`` (model, config and tokenizers: a
  ``LoadedModel``), ``load_int8_dir`` (an int8 export's model, its weights dequantized),
  ``int8_compute`` (a model computing in dynamic int8, as an int8 export runs);
- a training step's pieces, which benchmarks time on their own: ``prepare_data`` (a config's
  tokenizers and encoded splits), ``build_model``, ``token_batches`` and ``collate`` (the
  trainer's batches), ``sequence_loss`` (its loss), ``build_optimizer`` and
  ``learning_rate_factor`` (its optimizer and schedule), ``timed_updates`` (the timing loop of the
  demo's estimate), ``resolve_precision`` and ``cpu_bf16_support`` (the precision a run computes
  in, and why);
- ``machine()``, the CPU and software to write beside every figure; ``MTError``, the one error
  type whose message is meant for the user.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and readers; at run time each name is imported on first use (below)
    from mt.analysis.align_files import AlignmentFiles, align_files, draw_sentence, prepare_pairs, read_pairs
    from mt.analysis.compare.job import CompareRequest, run_compare
    from mt.analysis.demo import DemoSettings, run_demo
    from mt.analysis.evaluate import Evaluation, evaluate, read_test_set
    from mt.analysis.explore import explore_models
    from mt.config import ExperimentConfig
    from mt.data.batching import collate, token_batches
    from mt.data.corpus import load_corpus
    from mt.decoding.attention_alignment import (
        AlignedPair,
        AlignOptions,
        align_pairs,
        grow_diag_final_and,
        links_by_rule,
    )
    from mt.decoding.markup import AlignedSegment, parse_html
    from mt.decoding.search import SearchConfig
    from mt.decoding.streaming import StreamingTranslator
    from mt.decoding.translator import Translation, Translator
    from mt.errors import MTError
    from mt.evaluation.aer import (
        AERScores,
        GoldLinks,
        aer_by_length,
        alignment_error_rate,
        format_pharaoh,
        parse_pharaoh,
        read_gold_and_predicted,
        read_pharaoh,
        write_pharaoh,
    )
    from mt.evaluation.metrics import Scores, corpus_scores, scores_by_length
    from mt.export import open_translator
    from mt.export.ctranslate2 import export_ctranslate2
    from mt.export.int8 import export_int8, int8_compute
    from mt.hardware import machine
    from mt.model_dir import LoadedModel, load_int8_dir, load_model_dir
    from mt.models import build_model
    from mt.precision import cpu_bf16_support, resolve_precision
    from mt.presets import compose
    from mt.serving.detect import LanguageDetector
    from mt.serving.protocol import ServeSettings
    from mt.serving.server import serve
    from mt.training.averaging import average_paths
    from mt.training.budget import timed_updates
    from mt.training.pipeline import prepare_data, run_training
    from mt.training.schedule import learning_rate_factor
    from mt.training.trainer import build_optimizer, sequence_loss

__all__ = [
    "AERScores", "AlignOptions", "AlignedPair", "AlignedSegment", "AlignmentFiles", "CompareRequest", "DemoSettings",
    "Evaluation", "ExperimentConfig", "GoldLinks", "LanguageDetector", "LoadedModel", "MTError", "Scores",
    "SearchConfig", "ServeSettings", "StreamingTranslator", "Translation", "Translator", "aer_by_length", "align_files", "align_pairs",
    "alignment_error_rate", "average_paths", "build_model", "build_optimizer", "collate", "compose", "corpus_scores",
    "cpu_bf16_support", "draw_sentence", "evaluate", "explore_models", "export_ctranslate2", "export_int8",
    "format_pharaoh", "grow_diag_final_and", "int8_compute", "learning_rate_factor", "links_by_rule", "load_corpus",
    "load_int8_dir", "load_model_dir", "machine", "open_translator", "parse_html", "parse_pharaoh", "prepare_data",
    "prepare_pairs", "read_gold_and_predicted", "read_pairs", "read_pharaoh", "read_test_set", "resolve_precision",
    "run_compare", "run_demo", "run_training", "scores_by_length", "sequence_loss", "serve", "timed_updates",
    "token_batches",
    "write_pharaoh",
]

# Each module of the house and the names of it that are the API; a name is imported the first
# time it is asked for (__getattr__ below).
_MODULES = {
    "mt.analysis.align_files": ("AlignmentFiles", "align_files", "draw_sentence", "prepare_pairs", "read_pairs"),
    "mt.analysis.compare.job": ("CompareRequest", "run_compare"),
    "mt.analysis.demo": ("DemoSettings", "run_demo"),
    "mt.analysis.evaluate": ("Evaluation", "evaluate", "read_test_set"),
    "mt.analysis.explore": ("explore_models",),
    "mt.config": ("ExperimentConfig",),
    "mt.data.batching": ("collate", "token_batches"),
    "mt.data.corpus": ("load_corpus",),
    "mt.decoding.attention_alignment": ("AlignedPair", "AlignOptions", "align_pairs", "grow_diag_final_and",
        "links_by_rule"),
    "mt.decoding.markup": ("AlignedSegment", "parse_html"),
    "mt.decoding.search": ("SearchConfig",),
    "mt.decoding.streaming": ("StreamingTranslator",),
    "mt.decoding.translator": ("Translation", "Translator"),
    "mt.errors": ("MTError",),
    "mt.evaluation.aer": ("AERScores", "GoldLinks", "aer_by_length", "alignment_error_rate", "format_pharaoh",
        "parse_pharaoh", "read_gold_and_predicted", "read_pharaoh", "write_pharaoh"),
    "mt.evaluation.metrics": ("Scores", "corpus_scores", "scores_by_length"),
    "mt.export": ("open_translator",),
    "mt.export.ctranslate2": ("export_ctranslate2",),
    "mt.export.int8": ("export_int8", "int8_compute"),
    "mt.hardware": ("machine",),
    "mt.model_dir": ("LoadedModel", "load_int8_dir", "load_model_dir"),
    "mt.models": ("build_model",),
    "mt.precision": ("cpu_bf16_support", "resolve_precision"),
    "mt.presets": ("compose",),
    "mt.serving.detect": ("LanguageDetector",),
    "mt.serving.protocol": ("ServeSettings",),
    "mt.serving.server": ("serve",),
    "mt.training.averaging": ("average_paths",),
    "mt.training.budget": ("timed_updates",),
    "mt.training.pipeline": ("prepare_data", "run_training"),
    "mt.training.schedule": ("learning_rate_factor",),
    "mt.training.trainer": ("build_optimizer", "sequence_loss"),
}
_HOMES = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """``mt.api.NAME``, imported from its module the first time it is asked for: ``from mt.api
    import open_translator`` loads what translating needs and not the rest of mt (training's data
    sets, the plots, the comparisons), so a script's start-up time and memory are its own."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mt.api' has no attribute '{name}'")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
