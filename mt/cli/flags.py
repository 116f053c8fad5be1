"""The flags several commands take, defined once: the search settings (made from SearchConfig's
fields, so a new search setting is one field there), the device and precision a model runs
with, and the output files every command checks before it works. ``new_parser`` gives every
command the same help layout, each flag's default shown.

Library imports stay inside the functions: a command that searches pays for torch when it
builds its parser, ``mt --help`` and ``mt aer`` never do."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataclasses import Field

    from mt.decoding.search import SearchConfig
    from mt.decoding.translator import Translator


class ShowDefaults(argparse.HelpFormatter):
    """Each flag's help ends with its default, unless the help says it already or there is none
    to say (no value, off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default is None or default is False
                or default == "" or default == [] or default is argparse.SUPPRESS):
            return text
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        return f"{text} (default {shown.replace('%', '%%')})"


def new_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``mt COMMAND``."""
    return argparse.ArgumentParser(prog=f"mt {command}", description=description, formatter_class=ShowDefaults)


def model_parser(command: str, description: str) -> argparse.ArgumentParser:
    """``mt COMMAND MODEL_DIR``, with the search and model flags: translate, evaluate, align."""
    parser = new_parser(command, description)
    parser.add_argument("model_dir", help="a training run's folder (runs/NAME), its model folder (runs/NAME/model), "
                        "or an export of one (mt export)")
    add_search_flags(parser)
    add_model_flags(parser)
    add_language_flag(parser)
    return parser


def add_language_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force-language", action="store_true", help="read a file whose name says another language "
                        "than the model's side (test.de given as the English source) as it is; refused otherwise")


def check_file_languages(ns: argparse.Namespace, translator: Translator,
                         files: Sequence[tuple[str | None, str]]) -> None:
    """Each (file, ``source`` or ``reference``) whose name says another language than the model
    reads or writes on that side is refused (``mt.data.corpus.check_file_language``), unless
    ``--force-language``."""
    from mt.data.corpus import check_file_language

    src, tgt = translator.languages
    for path, side in files:
        if path and not ns.force_language:
            check_file_language(path, src if side == "source" else tgt, side, f"{src}-{tgt}", "model's",
                                "--force-language")


# The model: where it computes and in what.

def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision``."""
    from mt.config import Precision

    group = parser.add_argument_group("model")
    group.add_argument("--device", default="auto", help="auto (default: the GPU when there is one), cpu, cuda or "
                       "cuda:N")
    group.add_argument("--precision", default="auto", choices=[p.value for p in Precision],
                       help="auto (default): bf16 where the hardware computes it natively, else fp32")


def open_model(ns: argparse.Namespace, path: str | None = None) -> Translator:
    """The model directory (or export) ``path``, else the command's ``model_dir``, on the command
    line's device and precision."""
    from mt.export import open_translator

    return open_translator(path or ns.model_dir, ns.device, ns.precision)


# The search: one flag per SearchConfig field whose metadata names one, with SearchConfig's default
# except the beam (mt.decoding.search.DEFAULT_BEAM).
class _Default(int):
    """The default beam as the parser leaves it when --beam is not given (a given one is a plain
    int): --nbest wider than it widens the beam rather than being refused."""


def command_defaults() -> dict[str, Any]:
    from mt.decoding.search import DEFAULT_BEAM

    return {"beam": _Default(DEFAULT_BEAM)}

def search_fields() -> list[Field]:
    """The fields of SearchConfig that are flags (their metadata holds ``flag`` and ``help``)."""
    from dataclasses import fields

    from mt.decoding.search import SearchConfig

    return [f for f in fields(SearchConfig) if "flag" in f.metadata]


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """``--beam``, ``--length-penalty`` and the rest, each with SearchConfig's default: an enum is
    a choice of its values, a bool a ``--x`` / ``--no-x`` pair."""
    group = parser.add_argument_group("search", "how translations are searched for")
    defaults = command_defaults()
    for field in search_fields():
        meta, default = field.metadata, defaults.get(field.name, field.default)
        options: dict[str, Any] = {"dest": field.name, "help": meta["help"]}
        if "metavar" in meta:
            options["metavar"] = meta["metavar"]
        if isinstance(default, Enum):
            options.update(default=default.value, choices=[member.value for member in type(default)])
        elif isinstance(default, bool):
            options.update(default=default, action=argparse.BooleanOptionalAction)
        else:
            options.update(default=default, type=int if isinstance(default, _Default) else type(default))
        group.add_argument(meta["flag"], **options)


def search_config(ns: argparse.Namespace, **settings: Any) -> SearchConfig:
    """The command line's search settings with the command's own (``nbest``, ``keep_attention``),
    checked once: a bad value is one line and exit status 2."""
    from mt.decoding.search import SearchConfig

    given = {f.name: getattr(ns, f.name) for f in search_fields()}
    if isinstance(given["beam"], _Default):  # not given: as wide as --nbest asks, else the default
        given["beam"] = max(int(given["beam"]), settings.get("nbest", 1))
    return SearchConfig(**given, **settings)


# Output files.

def add_json_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "the scores") -> None:
    parser.add_argument("--json", help=f"also write {what} here as JSON")


def add_explore_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, of: str) -> None:
    parser.add_argument("--explore", metavar="PAGE.html", help=f"also write the mt explore page of {of}")


def check_files(ns: argparse.Namespace, outputs: Iterable[str], inputs: Iterable[str] = (),
                models: Sequence[str] = ()) -> None:
    """Before any work: the output files named by the flags ``outputs`` can be written and are
    none of the inputs (the files of ``inputs``, the ``models``' directories), each problem one
    line naming its flag (``mt.analysis.outputs``)."""
    from mt.analysis.outputs import check_output_files
    from mt.model_dir import readable_dir

    models = [str(readable_dir(m)) for m in models if m]  # a run folder: its model/, which nothing may write into

    def named(flags: Iterable[str]) -> list[tuple[str, str | None]]:
        return [(flag, getattr(ns, flag.lstrip("-").replace("-", "_"))) for flag in flags]

    check_output_files(named(outputs), named(inputs), list(models))
