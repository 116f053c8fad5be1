"""A model's translations of a test set, kept as data after the model is gone.

A study of ten variants with three seeds each trains for longer than one session on a small
machine, and its model directories (tens of MB each) do not belong in a repository. What a
comparison needs of a model is small: its translations of the test set, what its run
recorded (settings, parameters, training time), its attention statistics, and its attention
on the example sentence of the side-by-side figure. ``mt compare --save-systems DIR`` writes
that as one gzipped JSON file per model; ``mt compare --systems DIR`` sets such files beside
models it translates now, so the bootstrap, the length buckets and the seed statistics are
computed over all of them. A record holds a fingerprint of the test set and the search
settings it was made with, and is refused on any other.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from mt.analysis.compare.entries import ModelEntry, settings_key
from mt.config import ExperimentConfig, load_yaml
from mt.decoding.translator import Translation
from mt.errors import MTError
from mt.files import output_file
from mt.hardware import machine

SUFFIX = ".system.json.gz"
FORMAT = 1


@dataclass
class SavedSystem:
    """One model's record (see the module's docstring)."""

    entry: ModelEntry
    path: str                      # the file it was read from ("" before it is written)
    test_set: str                  # test_set_fingerprint of the sources and references
    search: dict                   # beam and the other search settings
    hypotheses: list[str]
    sentences_per_s: float
    entropy: float | None          # mean entropy of the attention rows (nats), None without attention
    aer: float | None
    example: dict | None           # index, src_pieces, tgt_pieces, attention [tgt, src] of one sentence
    config: str                    # the model's config.yaml, so a record alone can name its data


def test_set_fingerprint(sources: Sequence[str], references: Sequence[str]) -> str:
    """Changes when any sentence of either side changes."""
    return hashlib.sha256(json.dumps([list(sources), list(references)], ensure_ascii=False).encode()).hexdigest()


def _file_name(entry) -> str:
    """The run folder's name (unique in a study: variant and seed), else the model's name."""
    stem = Path(entry.model_dir).parent.name if Path(entry.model_dir).name == "model" else entry.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "model"


def save_systems(systems: Sequence[SavedSystem], folder: str | Path) -> list[Path]:
    """One file per system. A file of the same name is replaced only if it holds the same model
    (the same model directory); another model's record is kept and the new one numbered."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for system in systems:
        stem = _file_name(system.entry)
        path, n = folder / f"{stem}{SUFFIX}", 1
        while path.exists() and _read(path).get("entry", {}).get("model_dir") != system.entry.model_dir:
            n += 1
            path = folder / f"{stem}-{n}{SUFFIX}"
        data = {"format": FORMAT, "written": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                **{f.name: getattr(system, f.name) for f in fields(SavedSystem) if f.name not in ("entry", "path")},
                "entry": asdict(system.entry)}
        # a record is never left half written: a temporary file renamed over the old record once complete
        with output_file(path, "wb") as raw, gzip.GzipFile(path.name, "wb", fileobj=raw) as packed, \
                io.TextIOWrapper(packed, encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False)
        system.path = str(path)
        written.append(path)
    return written


def _read(path: Path) -> dict:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MTError(f"{path} is not a record written by mt compare --save-systems ({err}): "
                      "delete it, or write it again from its model") from None
    if not isinstance(data, dict) or "hypotheses" not in data or "entry" not in data:
        raise MTError(f"{path} is not a record written by mt compare --save-systems (no hypotheses or entry): "
                      "delete it, or write it again from its model")
    if data.get("format", 0) > FORMAT:
        raise MTError(f"{path} was written by a newer mt (record format {data['format']}, this one reads "
                      f"{FORMAT}): update mt")
    return data


def load_systems(paths: Sequence[str | Path]) -> list[SavedSystem]:
    """Records from files or folders (every ``*.system.json.gz`` below, sorted by name)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MTError(f"--systems {path} does not exist: pass a folder written by mt compare --save-systems, "
                          f"or one of its {SUFFIX} files")
        found = [path] if path.is_file() else sorted(path.rglob(f"*{SUFFIX}"))
        if not found:
            raise MTError(f"--systems {path} holds no {SUFFIX} file: write some with mt compare --save-systems")
        files += found
    systems = []
    known = {f.name for f in fields(ModelEntry)}
    for path in dict.fromkeys(p.resolve() for p in files):
        data = _read(path)
        entry = ModelEntry(**{k: v for k, v in data["entry"].items() if k in known})
        if not entry.settings and data.get("config"):  # records written before settings were kept
            entry.settings = _settings_of(path, data["config"])
        example = data.get("example")
        systems.append(SavedSystem(entry, str(path), data["test_set"], data["search"], data["hypotheses"],
                                   data["sentences_per_s"], data.get("entropy"), data.get("aer"), example,
                                   data.get("config", "")))
    return systems


def _settings_of(path: Path, config: str) -> str:
    return settings_key(load_yaml(path, ExperimentConfig, text=config))


def check_fits(system: SavedSystem, fingerprint: str, sentences: int, search: dict) -> None:
    """A record is only comparable on its own test set, with its own search settings."""
    if system.test_set != fingerprint or len(system.hypotheses) != sentences:
        raise MTError(f"{system.path} holds translations of another test set ({len(system.hypotheses)} sentences; "
                      f"this one has {sentences}): compare it on the test set it was made with, or translate "
                      "again with its model")
    if system.search != search:
        differ = sorted(k for k in set(system.search) | set(search) if system.search.get(k) != search.get(k))
        said = ", ".join(f"{k}={system.search.get(k)!r} there, {search.get(k)!r} here" for k in differ)
        raise MTError(f"{system.path} was translated with other search settings ({said}): "
                      "compare with the same settings")


def translations_of(system: SavedSystem, sources: Sequence[str]) -> list:
    """Translation objects as mt compare's own, the attention only on the recorded example."""
    out = [Translation(source=s, text=h, src_pieces=[], tgt_pieces=[], tgt_ids=[], attention=None,
                       score=float("nan")) for s, h in zip(sources, system.hypotheses)]
    ex = system.example
    if ex and 0 <= ex["index"] < len(out):
        t = out[ex["index"]]
        t.src_pieces, t.tgt_pieces = list(ex["src_pieces"]), list(ex["tgt_pieces"])
        t.attention = np.asarray(ex["attention"], dtype=np.float32)
    return out


def example_of(translations: Sequence, index: int) -> dict | None:
    t = translations[index]
    if t.attention is None:
        return None
    return {"index": index, "src_pieces": list(t.src_pieces), "tgt_pieces": list(t.tgt_pieces),
            "attention": np.round(np.asarray(t.attention, dtype=np.float64), 4).tolist()}
