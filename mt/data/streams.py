"""A training split read in chunks, never held whole: two line-aligned text files, or the
``src`` / ``tgt`` columns of a ``datasets.Dataset`` (Arrow, memory-mapped).

A corpus of millions of pairs passes through here twice at most (a sample for SentencePiece,
then the encoding into mt.data.encoded's cache), a chunk at a time. Text files keep the
checks ``read_lines`` makes (invalid UTF-8 and sides of unequal length are one-line errors
naming the file and the line), counted across chunks. Each source has a fingerprint that keys
the caches built from it: a hash of the bytes its rows are read from (text, JSONL or TSV
files, a saved dataset's Arrow files), or for a hub dataset the library's own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import datasets

from mt.errors import DataError

BLOCK = 16 * 2**20  # bytes read at a time
CHUNK = 100_000     # pairs per chunk


def _open(path: Path) -> BinaryIO:
    if not path.is_file():
        raise DataError(f"missing file {path}: check the path")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def iter_lines(path: Path, chunk: int = CHUNK) -> Iterator[list[str]]:
    """The file's lines in lists of up to ``chunk``, split on ``\\n`` only with a final ``\\r``
    dropped, as ``mt.data.corpus.read_lines`` splits them; invalid UTF-8 is an error naming
    the line."""
    done, tail, lines = 0, b"", []
    try:
        with _open(path) as handle:
            while True:
                block = handle.read(BLOCK)
                if not block:
                    break
                parts = (tail + block).split(b"\n")
                tail = parts.pop()
                lines += _decode(parts, path, done + len(lines))
                while len(lines) >= chunk:
                    yield lines[:chunk]
                    lines = lines[chunk:]
                    done += chunk
            if tail:
                lines += _decode([tail], path, done + len(lines))
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if lines:
        yield lines


def _decode(raw: list[bytes], path: Path, before: int) -> list[str]:
    try:
        text = b"\n".join(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        line = before + b"\n".join(raw)[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: invalid UTF-8; convert the file to UTF-8 (e.g. with iconv)") from err
    return [line.rstrip("\r") for line in text.split("\n")] if raw else []


def count_lines(path: Path) -> int:
    """Lines as ``iter_lines`` counts them (a last line without its newline counts too)."""
    n, last = 0, b"\n"
    with _open(path) as handle:
        while block := handle.read(BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def files_digest(*paths: Path) -> str:
    """A hash of the files' bytes (compressed or not) and names: it changes when the text does."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
    return digest.hexdigest()


def saved_split_digest(folder: Path) -> str:
    """A hash of what defines the rows of a split that ``save_to_disk`` wrote into ``folder``:
    the bytes of the Arrow files its state.json lists, in its order, and that state (format,
    split) without the fingerprint datasets recorded, which need not follow the rows."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        files = [folder / entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"cannot read {folder / 'state.json'} (a split saved with save_to_disk): {err}") from err
    state.pop("_fingerprint", None)
    return hashlib.sha256(f"{json.dumps(state, sort_keys=True)}|{files_digest(*files)}".encode()).hexdigest()


class PairSource(Protocol):
    """Where a training split's pairs come from, a chunk at a time."""

    name: str  # says where, in messages and logs

    def fingerprint(self) -> str: ...

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[list[str], list[str]]]: ...

    def side(self, which: str, size: int = CHUNK) -> Iterator[list[str]]:
        """The ``src`` or ``tgt`` sentences alone (a vocabulary's training text)."""
        ...

    def sides(self, size: int = CHUNK) -> Iterator[list[str]]:
        """Source sentences, then target sentences (a joint vocabulary's training text)."""
        ...


class TextPairs:
    """Two line-aligned text files (``.gz`` accepted)."""

    def __init__(self, src: Path, tgt: Path) -> None:
        self.src, self.tgt = Path(src), Path(tgt)
        self.name = f"{self.src} / {self.tgt}"
        self._digest: str | None = None

    def fingerprint(self) -> str:
        if self._digest is None:
            self._digest = files_digest(self.src, self.tgt)
        return self._digest

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[list[str], list[str]]]:
        seen = 0
        src_chunks, tgt_chunks = iter_lines(self.src, size), iter_lines(self.tgt, size)
        for src in src_chunks:
            tgt = next(tgt_chunks, [])
            if len(tgt) != len(src):
                self._unequal(seen + min(len(src), len(tgt)))
            seen += len(src)
            yield src, tgt
        if next(tgt_chunks, None) is not None:
            self._unequal(seen)

    def side(self, which: str, size: int = CHUNK) -> Iterator[list[str]]:
        yield from iter_lines(self.src if which == "src" else self.tgt, size)

    def sides(self, size: int = CHUNK) -> Iterator[list[str]]:
        yield from self.side("src", size)
        yield from self.side("tgt", size)

    def _unequal(self, paired: int) -> None:
        """Sides of unequal length: the same message ``read_lines`` callers give, counted whole."""
        n_src, n_tgt = count_lines(self.src), count_lines(self.tgt)
        raise DataError(f"{self.src} has {n_src} lines but {self.tgt} has {n_tgt}: line N of the source must "
                        f"translate line N of the target (they part after line {paired})")


class DatasetPairs:
    """The ``src`` / ``tgt`` columns of a ``datasets.Dataset`` (hub, disk, JSONL, TSV).

    ``content`` says what the rows are made of, as a hash: the bytes of the local files they
    are read from and the settings that pick the columns (mt.data.corpus gives it for JSONL,
    TSV and saved datasets). It keys the caches as ``files_digest`` does for text files, and
    is called once, on the first ``fingerprint()``. Without it (a hub dataset: its files are
    behind a revision, not ours to hash in one cheap pass) the key is the library's
    ``_fingerprint``, which datasets derives from the repository revision, or for local data
    files from their path and modification time: a file rewritten with its mtime kept would
    keep that key."""

    def __init__(self, dataset: datasets.Dataset, name: str, content: Callable[[], str] | None = None) -> None:
        self.dataset, self.name, self._content = dataset, name, content
        self._digest: str | None = None

    def fingerprint(self) -> str:
        if self._digest is None:
            key = (f"{self.dataset._fingerprint}|{len(self.dataset)}" if self._content is None
                   else f"content|{self._content()}")
            self._digest = hashlib.sha256(key.encode()).hexdigest()
        return self._digest

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[list[str], list[str]]]:
        for start, batch in enumerate(self.dataset.iter(batch_size=size)):
            src, tgt = batch["src"], batch["tgt"]
            bad = next((i for i, (s, t) in enumerate(zip(src, tgt)) if not isinstance(s, str)
                        or not isinstance(t, str)), None)
            if bad is not None:
                raise DataError(f"{self.name}, row {start * size + bad + 1}: a sentence is not text "
                                f"({src[bad]!r}, {tgt[bad]!r})")
            yield list(src), list(tgt)

    def side(self, which: str, size: int = CHUNK) -> Iterator[list[str]]:
        for src, tgt in self.chunks(size):
            yield src if which == "src" else tgt

    def sides(self, size: int = CHUNK) -> Iterator[list[str]]:
        yield from self.side("src", size)
        yield from self.side("tgt", size)
