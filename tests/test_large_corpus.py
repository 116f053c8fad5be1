"""Corpora of millions of pairs: read in chunks, SentencePiece on a sample, encoded once into a
memory-mapped cache that later runs (and every DDP rank) reuse. Tried here on small corpora
with small chunks, so every boundary is crossed."""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from mt.data import encoded as encoded_module
from mt.data import streams
from mt.data.batching import encode_pairs, token_batches
from mt.data.encoded import META, encoded_corpus
from mt.data.streams import TextPairs, iter_lines
from mt.errors import DataError
from mt.presets import compose
from mt.training.pipeline import prepare_data, run_training

from .conftest import TINY_TRAIN

WORDS = ["the", "a", "old", "man", "woman", "dog", "calls", "sees", "sleeps", "in", "house", "today", "small", "red", "car"]


def _write_corpus(folder: Path, pairs: int, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", pairs), ("valid", 20), ("test", 20)):
        src = [" ".join(rng.choice(WORDS, size=rng.integers(1, 12))) for _ in range(n)]
        src[3] = ""  # an empty pair is skipped, and counted
        tgt = [s.upper() for s in src]
        for lang, lines in (("en", src), ("de", tgt)):
            text = "".join(line + "\n" for line in lines)
            if gz and split == "train":
                (folder / f"{split}.{lang}.gz").write_bytes(gzip.compress(text.encode()))
            else:
                (folder / f"{split}.{lang}").write_text(text, encoding="utf-8")
    return folder


def _cfg(corpus: Path, cache: Path, *more: str):
    return compose([*TINY_TRAIN, "data=files", f"data.dir={corpus}", "data.src_lang=en", "data.tgt_lang=de",
                    f"cache_dir={cache}", "data.tokenizer.type=bpe", "data.tokenizer.src_vocab_size=60",
                    "data.tokenizer.tgt_vocab_size=60", "data.max_len=10", *more])


def test_the_corpus_is_encoded_once_and_mapped_after(tmp_path, counted, caplog):
    corpus = _write_corpus(tmp_path / "c", 300)
    cfg = _cfg(corpus, tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="mt.train"):
        first = prepare_data(cfg)
        second = prepare_data(cfg)
    assert len(counted) == 1 and "encoded corpus: reusing" in caplog.text
    assert isinstance(second.train.src.ids, np.memmap) and second.train.src.ids.dtype == np.uint16
    assert second.train.src == first.train.src and second.train.tgt == first.train.tgt
    for stage in ("read", "tokenizer", "encode"):
        assert f"stage {stage}: " in caplog.text
    folders = list((tmp_path / "cache" / "encoded").iterdir())
    assert len(folders) == 1 and (folders[0] / META).is_file()


def test_the_cache_is_encoded_afresh_when_the_text_or_the_tokenizer_changes(tmp_path, counted):
    corpus = _write_corpus(tmp_path / "c", 300)
    prepare_data(_cfg(corpus, tmp_path / "cache"))
    prepare_data(_cfg(corpus, tmp_path / "cache", "data.tokenizer.tgt_vocab_size=50"))  # another tokenizer
    lines = (corpus / "train.de").read_text().splitlines()
    lines[100] = "EIN ANDERER SATZ"
    (corpus / "train.de").write_text("\n".join(lines) + "\n")
    prepare_data(_cfg(corpus, tmp_path / "cache", "data.tokenizer.tgt_vocab_size=50"))  # other text
    prepare_data(_cfg(corpus, tmp_path / "cache", "data.max_len=6"))                    # other filter
    assert len(counted) == 4 and len(list((tmp_path / "cache" / "encoded").iterdir())) == 4


def test_a_run_killed_while_encoding_leaves_nothing_a_later_run_trusts(tmp_path, monkeypatch):
    corpus = _write_corpus(tmp_path / "c", 300)
    cfg = _cfg(corpus, tmp_path / "cache")
    real = TextPairs.chunks

    def dies_after_one_chunk(self, size=streams.CHUNK):
        chunks = real(self, 100)
        yield next(chunks)
        raise KeyboardInterrupt  # as a kill: the encoding stops half way

    monkeypatch.setattr(TextPairs, "chunks", dies_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(cfg)
    assert not list((tmp_path / "cache" / "encoded").iterdir())  # no half cache left behind
    monkeypatch.setattr(TextPairs, "chunks", real)
    # A folder under the final name without meta.json (a kill the cleanup never saw) is not trusted either.
    data = prepare_data(cfg)
    folder = next((tmp_path / "cache" / "encoded").iterdir())
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "src.bin").write_bytes(b"\x01\x02")
    again = prepare_data(cfg)
    assert (folder / META).is_file() and again.train.src == data.train.src


def test_streamed_and_cached_pairs_are_the_pairs_of_the_in_memory_path(tmp_path):
    """The same ids, kept pairs, skips, batches and losses as encoding the whole text at once."""
    corpus = _write_corpus(tmp_path / "c", 300, gz=True)
    cfg = _cfg(corpus, tmp_path / "cache")
    data = prepare_data(cfg)
    src = gzip.decompress((corpus / "train.en.gz").read_bytes()).decode().splitlines()
    tgt = gzip.decompress((corpus / "train.de.gz").read_bytes()).decode().splitlines()
    whole = encode_pairs(data.src_tokenizer.encode(src), data.tgt_tokenizer.encode(tgt), 10, cfg.data.max_ratio)
    assert data.train.src == whole.src and data.train.tgt == whole.tgt
    assert np.array_equal(data.train.kept, whole.kept)
    assert (data.train.skipped_empty, data.train.skipped_long) == (whole.skipped_empty, whole.skipped_long) != (0, 0)
    assert token_batches(data.train.src.lengths, data.train.tgt.lengths, 200, seed=3) == \
        token_batches(whole.src.lengths, whole.tgt.lengths, 200, seed=3)


def test_training_on_the_cache_gives_the_losses_of_the_in_memory_corpus(tmp_path, monkeypatch):
    from mt.training import pipeline

    corpus = _write_corpus(tmp_path / "c", 300)
    cfg = _cfg(corpus, tmp_path / "cache", "train.max_steps=5", "train.max_tokens=200")
    cached = [r["train_loss"] for r in run_training(cfg, tmp_path / "a", progress="off").history]

    def in_memory(source, src_tok, tgt_tok, cache_dir, max_len=None, max_ratio=0.0, **_):
        src, tgt = [], []
        for s, t in source.chunks():
            src += s
            tgt += t
        return encode_pairs(src_tok.encode(src), tgt_tok.encode(tgt), max_len, max_ratio)

    monkeypatch.setattr(pipeline, "encoded_corpus", in_memory)
    assert [r["train_loss"] for r in run_training(cfg, tmp_path / "b", progress="off").history] == cached


def test_errors_past_the_first_chunk_name_the_right_line(tmp_path, monkeypatch):
    monkeypatch.setattr(streams, "BLOCK", 64)  # many reads, lines split across them
    lines = [f"line number {i} of the file" for i in range(1, 51)]
    path = tmp_path / "big.en"
    path.write_bytes(("\n".join(lines[:49]) + "\n").encode() + b"bad \xff byte\n")
    with pytest.raises(DataError, match=r"big.en, line 50: invalid UTF-8"):
        list(iter_lines(path, chunk=7))
    path.write_text("\n".join(lines) + "\n")
    assert [line for chunk in iter_lines(path, chunk=7) for line in chunk] == lines
    (tmp_path / "big.de").write_text("\n".join(lines[:49]) + "\n")
    with pytest.raises(DataError, match=r"big.en has 50 lines but .*big.de has 49.*after line 49"):
        list(TextPairs(path, tmp_path / "big.de").chunks(7))
    (tmp_path / "big.de").write_text("\n".join(lines + ["one more"]) + "\n")
    with pytest.raises(DataError, match=r"has 50 lines but .*big.de has 51"):
        list(TextPairs(path, tmp_path / "big.de").chunks(7))


def test_sentencepiece_trains_on_a_stream_never_a_list_of_the_corpus(tmp_path, monkeypatch):
    """A joint vocabulary streams both sides in one pass: the trainer never sees a list."""
    import sentencepiece as spm

    seen = {}
    real = spm.SentencePieceTrainer.train

    def spy(**kwargs):
        seen["iterator"] = kwargs["sentence_iterator"]
        seen["sample"] = kwargs["input_sentence_size"]
        return real(**kwargs)

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", spy)
    corpus = _write_corpus(tmp_path / "c", 300)
    data = prepare_data(_cfg(corpus, tmp_path / "cache", "data.tokenizer.joint=true"))
    assert not isinstance(seen["iterator"], list | tuple) and seen["sample"] == 2_000_000
    assert data.src_tokenizer is data.tgt_tokenizer and data.src_tokenizer.encode(["THE DOG"])[0]


def test_a_saved_dataset_goes_through_the_same_cache(tmp_path, counted):
    """A hub corpus (data.source=hub) arrives as a datasets.Dataset: here one saved to disk."""
    rows = {"en": [" ".join(WORDS[i % 7: i % 7 + 4]) for i in range(200)]}
    rows["de"] = [s.upper() for s in rows["en"]]
    datasets.DatasetDict({name: datasets.Dataset.from_dict(rows) for name in ("train", "validation", "test")}) \
        .save_to_disk(str(tmp_path / "saved"))
    cfg = compose([*TINY_TRAIN, "data.source=disk", f"data.dir={tmp_path / 'saved'}", f"cache_dir={tmp_path / 'cache'}",
                   "data.tokenizer.type=bpe", "data.tokenizer.src_vocab_size=60", "data.tokenizer.tgt_vocab_size=60"])
    first, second = prepare_data(cfg), prepare_data(cfg)
    assert len(counted) == 1 and len(first.train) == 200 and second.train.tgt == first.train.tgt
    assert isinstance(second.train.src.ids, np.memmap)


def test_the_cache_takes_the_vocabulary_width(tmp_path):
    """uint16 ids where the vocabulary fits, int32 beyond 65,536 pieces."""
    assert encoded_module._dtype(65_536) == np.uint16 and encoded_module._dtype(65_537) == np.int32
    corpus = _write_corpus(tmp_path / "c", 120)
    data = prepare_data(_cfg(corpus, tmp_path / "cache"))
    again = encoded_corpus(TextPairs(corpus / "train.en", corpus / "train.de"), data.src_tokenizer,
                           data.tgt_tokenizer, tmp_path / "cache", 10, 3.0)
    assert again.src == data.train.src  # the same key: read back
