"""Parallel corpora as Hugging Face ``datasets``.

A corpus split is a ``datasets.Dataset`` with the columns ``src`` and ``tgt`` (raw
text, one sentence each) and, where gold alignments exist, ``align`` (Pharaoh links).
Reading checks what users get wrong most often: a missing file, sides of unequal
length, invalid UTF-8; each becomes a one-line ``DataError`` naming file and fix.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import datasets

from mt.config import CorpusSource, DataConfig
from mt.data.demo_corpus import ensure_demo_corpus
from mt.errors import DataError

datasets.disable_progress_bars()


def resolve_text_file(base: Path) -> Path:
    """``base`` itself or ``base.gz``, whichever exists."""
    for candidate in (base, base.with_name(base.name + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"missing file {base} (or {base.name}.gz): check data.dir and the split and language names")


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file (``.gz`` accepted), without line ends; empty lines kept."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}: check the path")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: invalid UTF-8; convert the file to UTF-8 (e.g. with iconv)") from err
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def load_parallel_files(src_path: str | Path, tgt_path: str | Path, align_path: str | Path | None = None) -> datasets.Dataset:
    """A parallel corpus from two line-aligned text files (``.gz`` accepted)."""
    src = read_lines(src_path)
    tgt = read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "line N of the source must translate line N of the target"
        )
    columns = {"src": src, "tgt": tgt}
    if align_path is not None and Path(align_path).is_file():
        align = read_lines(align_path)
        if len(align) != len(src):
            raise DataError(f"{align_path} has {len(align)} lines but {src_path} has {len(src)}")
        columns["align"] = align
    return datasets.Dataset.from_dict(columns)


def load_corpus(cfg: DataConfig) -> datasets.DatasetDict:
    """Train, validation and test splits of the configured corpus."""
    if not cfg.dir:
        raise DataError("data.dir is not set: point it at the corpus folder, e.g. data.dir=path/to/corpus")
    directory = Path(cfg.dir)
    if cfg.source is CorpusSource.demo:
        ensure_demo_corpus(directory, tuple(cfg.demo_sizes), cfg.demo_seed)
    elif not directory.is_dir():
        raise DataError(f"data.dir {directory} is not a directory: point data.dir at the corpus folder")
    splits = {}
    for split, prefix in (("train", cfg.train), ("validation", cfg.valid), ("test", cfg.test)):
        src = resolve_text_file(directory / f"{prefix}.{cfg.src_lang}")
        tgt = resolve_text_file(directory / f"{prefix}.{cfg.tgt_lang}")
        splits[split] = load_parallel_files(src, tgt, directory / f"{prefix}.align")
    return datasets.DatasetDict(splits)
