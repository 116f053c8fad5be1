"""``mt``: one command, a subcommand per thing a user does.

``mt train`` hands its arguments to Hydra (overrides, ``-m`` sweeps); the others are
plain argparse commands that load a model directory. A ``MTError`` anywhere ends the
command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys

USAGE = """usage: mt <command> [arguments]      (mt --version: the version)

commands:
  train       train a model (Hydra overrides, e.g. model=rnn_noattn; -m for sweeps)
  translate   translate sentences from stdin or --input with a model directory
  evaluate    BLEU and chrF of a model directory on a source/reference file pair
  compare     several models on one test set: BLEU with significance, by length, attention
  align       draw the attention heatmap of one sentence pair, or align whole files
  explore     one HTML page to browse every sentence, model and head in a browser
  export      a model for deployment: CTranslate2 (Transformers) or int8 (any model)
  serve       a translation server (LibreTranslate's API) with a page that shows the attention
  aer         alignment error rate of word alignments against human gold
  average     average the weights of several checkpoints of a run
  demo        train with and without attention on the demo corpus and compare

'mt <command> --help' describes each one."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    if argv[0] in {"-V", "--version", "version"}:
        print(version_line())
        return 0
    command, rest = argv[0], argv[1:]
    from mt.errors import MTError

    try:
        if command == "train":
            from mt.cli.train import train_main

            return train_main(rest)
        if command in {"translate", "evaluate", "align", "aer", "average", "compare", "explore", "serve",
                       "export"}:
            from mt.cli import commands

            return getattr(commands, command)(rest)
        if command == "demo":
            from mt.cli.demo import demo_main

            return demo_main(rest)
    except MTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"error: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
    return 2


def version_line() -> str:
    """``mt 0.2.0 (torch 2.13.0+cpu, Python 3.11.7)``: what a bug report needs first."""
    import platform

    from mt import __version__

    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except ImportError:  # importlib.metadata.PackageNotFoundError: torch has no metadata here
        torch_version = "not found"
    return f"mt {__version__} (torch {torch_version}, Python {platform.python_version()})"


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
