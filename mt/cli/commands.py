"""The table of mt's commands: ``mt --help`` lists it, ``mt NAME`` runs its module.

Each module under ``mt.cli`` has ``parser()`` (its command line) and ``run(args) -> int`` (parses
``args`` and calls the library). Adding a command is its module and a row here. Plain tuples, so
that ``mt --help`` imports nothing."""

from __future__ import annotations

# name, the line mt --help shows, the module with parser() and run(args)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("train", "train a model (Hydra overrides, e.g. model=rnn_noattn; -m for sweeps)", "mt.cli.train"),
    ("translate", "translate sentences from stdin or --input with a model directory", "mt.cli.translate"),
    ("evaluate", "BLEU and chrF of a model directory on a source/reference file pair", "mt.cli.evaluate"),
    ("compare", "several models on one test set: BLEU with significance, by length, attention", "mt.cli.compare"),
    ("align", "draw the attention heatmap of one sentence pair, or align whole files", "mt.cli.align"),
    ("explore", "one HTML page to browse every sentence, model and head in a browser", "mt.cli.explore"),
    ("export", "a model for deployment: CTranslate2 (Transformers) or int8 (any model)", "mt.cli.export"),
    ("serve", "a translation server (LibreTranslate's API) with a page that shows the attention", "mt.cli.serve"),
    ("aer", "alignment error rate of word alignments against human gold", "mt.cli.aer"),
    ("average", "average the weights of several checkpoints of a run", "mt.cli.average"),
    ("demo", "train with and without attention on the demo corpus and compare", "mt.cli.demo"),
)
