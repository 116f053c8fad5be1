"""What the commands may write to, checked before they do any work.

A file a command writes (``mt translate -o``, ``mt align --pharaoh``, a page, a JSON) is
written whole or not at all (``mt.files.output_file``); it is never one of the
command's inputs, never two outputs at once, never a file inside a model directory.

A folder a command fills with several files is one of three kinds, each told by what mt wrote:

* ``compare report`` (``mt compare --out``): its tables, plots, translations and results, sealed
  with ``manifest.json`` (``mt.files.write_manifest``) once complete; a folder an mt before
  manifests wrote is told by its tables, translations and ``results.json`` (LEGACY_REPORT).
* ``set of heatmaps`` (``mt align --out-dir``): ``NNNNN.png`` / ``.svg`` / ``.pdf``, sealed with its
  manifest; a folder of such names without one may be anyone's frames and is never written into.
* ``set of records`` (``mt compare --save-systems``): ``*.system.json.gz`` records, which it
  gathers run after run (each written whole; a record is replaced only by one of the same model).

A command writes into a new or empty folder, or an earlier output of its own kind; ``--force``
also into a report mt wrote of the other kind (its files of the same names replaced, the rest
kept); never into a folder mt did not write, a model, an export, or records of another kind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from mt.errors import MTError
from mt.files import check_out_dir, is_stream, output_kind

COMPARE_REPORT = "compare report"
HEATMAPS = "set of heatmaps"
RECORDS = "set of records"
REPORT_KINDS = {COMPARE_REPORT, HEATMAPS}  # what --force lets one report command write into

# Everything write_comparison writes; a rerun removes those an earlier run wrote and this one did not.
REPORT_FILES = ("scores.csv", "scores.md", "bleu_by_length.csv", "bleu_by_length.png", "bleu_by_length.svg",
                "attention_side_by_side.png", "attention_side_by_side.svg", "scores_by_variant.csv",
                "translations.txt", "results.json")
LEGACY_REPORT = ("scores.csv", "bleu_by_length.csv", "translations.txt", "results.json")  # every mt compare's
HEATMAP_NAME = re.compile(r"\d{5}\.(png|svg|pdf)")
RECORD_SUFFIX = ".system.json.gz"


def _visible(folder: Path) -> list[Path]:
    """What a user put or mt left in ``folder``, less hidden names (a temporary file of a write
    cut short, ``.DS_Store``)."""
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def report_kind(folder: Path) -> str | None:
    """Which of mt's report folders ``folder`` is, told by its files: a folder without a
    manifest (mt.files.output_kind's ``legacy``); None for any other folder."""
    if not folder.is_dir():
        return None
    if all((folder / name).is_file() for name in LEGACY_REPORT) and _is_results(folder / "results.json"):
        return COMPARE_REPORT
    entries = _visible(folder)
    if any(p.is_file() and p.name.endswith(RECORD_SUFFIX) for p in entries):
        return RECORDS
    return None


def _is_results(path: Path) -> bool:
    """``results.json`` as mt compare writes it (not a file of that name of the user's)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and {"baseline", "scores", "by_length"} <= set(data)


def kind_of(folder: Path) -> str | None:
    """What mt wrote ``folder`` as: its manifest's kind, else what ``report_kind`` tells."""
    return output_kind(folder, report_kind)


def heatmap_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and HEATMAP_NAME.fullmatch(p.name)] if folder.is_dir() else []


def _within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or path.is_relative_to(folder)


def check_not_in_models(path: str | Path, flag: str, model_dirs: Iterable[str | Path]) -> None:
    """One line where ``path`` is a model directory the command reads, or inside one: a model
    directory holds only what mt wrote it with (and its manifest lists)."""
    for model in model_dirs:
        if _within(Path(path), Path(model)):
            where = "is" if Path(path).resolve() == Path(model).resolve() else "is inside"
            raise MTError(f"{flag} {path} {where} the model directory {model} the command reads: write it elsewhere "
                          "(mt never writes into a model directory)")


def check_report_dir(out: str | Path, kind: str, force: bool, flag: str, model_dirs: Iterable[str | Path] = ()) -> None:
    """Before a command does any work: ``out`` is a new or empty folder or an earlier output of
    ``kind``; with ``force``, also a report mt wrote of another kind (REPORT_KINDS); never a
    folder mt did not write, nor a model directory the command reads or a folder inside one.
    Anything else is one line naming the folder and what to do."""
    out = Path(out)
    check_not_in_models(out, flag, model_dirs)
    replaceable = (REPORT_KINDS - {kind}) if kind in REPORT_KINDS else set()
    check_out_dir(out, kind, force, replaceable, legacy=report_kind, flag=flag, whole=False)  # others' files stay


def check_output_files(outputs: Sequence[tuple[str, str | Path | None]],
                       inputs: Sequence[tuple[str, str | Path | None]] = (),
                       model_dirs: Iterable[str | Path] = ()) -> None:
    """Before a command does any work: each output file (flag, path) is not a folder, not one
    of the ``inputs`` (flag, path) under any name (a link, a hard link), not another output,
    and not inside a model directory the command reads. A device, a pipe or a descriptor
    (``/dev/stdout``) is written as it is and not compared."""
    given = [(flag, Path(path)) for flag, path in outputs if path]
    models = list(model_dirs)
    for flag, path in given:
        if path.is_dir():
            raise MTError(f"{flag} {path} is a folder: name a file to write")
        if is_stream(path):
            continue
        for source_flag, source in inputs:
            if source and same_file(path, Path(source)):
                raise MTError(f"{flag} {path} is the file {source_flag} reads: write to another file "
                              "(mt never overwrites its input)")
        check_not_in_models(path, flag, models)
    for i, (flag, path) in enumerate(given):
        for other_flag, other in given[i + 1:]:
            if not is_stream(path) and same_file(path, other):
                raise MTError(f"{flag} and {other_flag} name the same file ({path}): give each its own")


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file, by any name (a symbolic or a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def remove_stale(folder: Path, stale: Iterable[Path]) -> None:
    """Files an earlier run of the same command wrote into its own folder and this run did not
    (a heatmap past the new count, a table the new comparison has no rows for)."""
    for path in stale:
        if path.parent == folder:
            path.unlink(missing_ok=True)


