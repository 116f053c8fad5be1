"""``mt``: one command, a subcommand per thing a user does (the table: ``mt.cli.commands``).

``mt train`` hands its arguments to Hydra (overrides, ``-m`` sweeps); the others are
plain argparse commands. A ``MTError`` anywhere ends the command with one line on stderr
and exit status 2. A command's module is imported only when it runs, so ``mt --help`` and
``mt --version`` start in a blink.
"""

from __future__ import annotations

import sys
from importlib import import_module

from mt.cli.commands import COMMANDS


def usage() -> str:
    """What ``mt`` and ``mt --help`` print: every command of the table with its line."""
    rows = "\n".join(f"  {name:<12}{summary}" for name, summary, _ in COMMANDS)
    return (f"usage: mt <command> [arguments]      (mt --version: the version)\n\ncommands:\n{rows}\n\n"
            "'mt <command> --help' describes each one.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    if argv[0] in {"-V", "--version", "version"}:
        print(version_line())
        return 0
    command, rest = argv[0], argv[1:]
    modules = {name: module for name, _, module in COMMANDS}
    if command not in modules:
        print(f"error: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    from mt.errors import MTError

    try:
        return import_module(modules[command]).run(rest)
    except MTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


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
