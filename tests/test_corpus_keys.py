"""A JSONL, TSV or saved (save_to_disk) corpus is keyed by its bytes, as plain text files are:
the key of the training split (it names the tokenizer and encoded-corpus caches) changes when
a row does, even one rewritten in place with the file's size and modification time kept, and
stays when nothing did; and the rows read are the new ones, never a stale Arrow conversion."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from mt.config import CorpusSource, DataConfig
from mt.data.batching import encode_pairs
from mt.data.corpus import open_corpus
from mt.presets import compose
from mt.training.pipeline import prepare_data

from .conftest import TINY_TRAIN

WORDS = ["the", "a", "old", "man", "woman", "dog", "calls", "sees", "sleeps", "in", "house", "today", "small", "red", "car"]
SIZES = {"train": 120, "valid": 10, "test": 10}
SPLITS = {"train": "train", "valid": "validation", "test": "test"}  # file prefix: saved split name
CHANGED = 7  # the training row rewritten in place
SOURCES = ["jsonl", "tsv", "disk", "disk-translation-dicts"]


@pytest.fixture(autouse=True)
def own_datasets_cache(tmp_path, monkeypatch):
    """datasets' Arrow conversions (JSONL) and map caches go to this test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))


def _pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    src = [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(n)]
    return src, [s.upper() for s in src]


def _corpus() -> dict[str, tuple[list[str], list[str]]]:
    return {split: _pairs(n, seed) for seed, (split, n) in enumerate(SIZES.items())}


def _rewritten(corpus: dict) -> dict:
    """The corpus with one training target in another word order: other text, the same bytes long."""
    src, tgt = corpus["train"]
    words = tgt[CHANGED].split()
    new = " ".join(words[1:] + words[:1])
    assert new != tgt[CHANGED] and len(new) == len(tgt[CHANGED])
    return {**corpus, "train": (src, tgt[:CHANGED] + [new] + tgt[CHANGED + 1:])}


def _write(folder: Path, kind: str, corpus: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if kind.startswith("disk"):
        def row(s: str, t: str) -> dict:
            return {"translation": {"en": s, "de": t}} if kind == "disk-translation-dicts" else {"en": s, "de": t}

        datasets.DatasetDict({SPLITS[split]: datasets.Dataset.from_list([row(s, t) for s, t in zip(*pairs)])
                              for split, pairs in corpus.items()}).save_to_disk(str(folder))
        return
    for split, (src, tgt) in corpus.items():
        if kind == "tsv":
            text = "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt))
        else:
            text = "".join(json.dumps({"en": s, "de": t}) + "\n" for s, t in zip(src, tgt))
        (folder / f"{split}.{kind}").write_text(text, encoding="utf-8")


def _rewrite_in_place(folder: Path, kind: str, corpus: dict) -> None:
    """``corpus`` written over ``folder``'s training split, every file keeping its size and times.
    A saved dataset keeps its state.json too (and so the fingerprint datasets recorded there), as
    one whose library fingerprint does not follow its rows would (one rebuilt from a JSONL file
    of the same path and mtime, say)."""
    rewritten = folder.with_name("rewritten")
    _write(rewritten, kind, corpus)
    if kind.startswith("disk"):
        files = sorted((rewritten / "train").glob("*.arrow"))
        targets = [folder / "train" / f.name for f in files]
    else:
        files, targets = [rewritten / f"train.{kind}"], [folder / f"train.{kind}"]
    for new, old in zip(files, targets):
        before = os.stat(old)
        shutil.copyfile(new, old)
        os.utime(old, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(old)
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _data_config(folder: Path, kind: str) -> DataConfig:
    return DataConfig(source=CorpusSource("disk" if kind.startswith("disk") else kind), dir=str(folder),
                      hub_field="translation" if kind == "disk-translation-dicts" else "")


def _train_rows(folder: Path, kind: str) -> tuple[str, list[str]]:
    train = open_corpus(_data_config(folder, kind)).train
    return train.fingerprint(), [t for _, tgt in train.chunks(50) for t in tgt]


@pytest.mark.parametrize("kind", SOURCES)
def test_a_row_rewritten_in_place_changes_the_key_and_is_read(tmp_path, kind):
    folder = tmp_path / "corpus"
    corpus = _corpus()
    _write(folder, kind, corpus)
    key, rows = _train_rows(folder, kind)
    assert rows == corpus["train"][1]
    changed = _rewritten(corpus)
    _rewrite_in_place(folder, kind, changed)
    new_key, new_rows = _train_rows(folder, kind)
    assert new_rows == changed["train"][1]  # the new row, not a stale Arrow conversion
    assert new_key != key


@pytest.mark.parametrize("kind", SOURCES)
def test_the_same_bytes_give_the_same_key_wherever_and_whenever_they_are(tmp_path, kind):
    """Two opens agree (the caches hit); so do a copy elsewhere and files touched with a new
    mtime, as for plain text files: the key follows the bytes, not the path or the clock."""
    folder = tmp_path / "corpus"
    _write(folder, kind, _corpus())
    key, rows = _train_rows(folder, kind)
    assert _train_rows(folder, kind) == (key, rows)
    copy = shutil.copytree(folder, tmp_path / "elsewhere" / "corpus")
    for path in copy.rglob("*"):
        if path.is_file():
            os.utime(path, (path.stat().st_atime + 100, path.stat().st_mtime + 100))
    assert _train_rows(copy, kind) == (key, rows)


@pytest.mark.parametrize("kind", SOURCES)
def test_the_columns_picked_are_part_of_the_key(tmp_path, kind):
    """Source and target swapped: other training text, another key (TSV's columns are fixed)."""
    folder = tmp_path / "corpus"
    _write(folder, kind, _corpus())
    key = open_corpus(_data_config(folder, kind)).train.fingerprint()
    flipped = DataConfig(**{**vars(_data_config(folder, kind)), "src_lang": "de", "tgt_lang": "en"})
    assert (open_corpus(flipped).train.fingerprint() == key) == (kind == "tsv")


@pytest.mark.parametrize("kind", ["jsonl", "tsv", "disk"])
def test_a_training_run_after_a_row_is_rewritten_in_place_encodes_the_new_text(tmp_path, kind, counted):
    folder = tmp_path / "corpus"
    corpus = _corpus()
    _write(folder, kind, corpus)
    cfg = compose([*TINY_TRAIN, f"data.source={kind}", f"data.dir={folder}", f"cache_dir={tmp_path / 'cache'}",
                   "data.tokenizer.type=bpe", "data.tokenizer.src_vocab_size=60", "data.tokenizer.tgt_vocab_size=60"])
    prepare_data(cfg)
    prepare_data(cfg)
    assert len(counted) == 1  # unchanged: the cache hits
    changed = _rewritten(corpus)
    _rewrite_in_place(folder, kind, changed)
    data = prepare_data(cfg)
    assert len(counted) == 2
    whole = encode_pairs(data.src_tokenizer.encode(changed["train"][0]), data.tgt_tokenizer.encode(changed["train"][1]),
                         cfg.data.max_len, cfg.data.max_ratio)
    assert data.train.src == whole.src and data.train.tgt == whole.tgt
