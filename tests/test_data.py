import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from mt.config import CorpusSource, DataConfig, TokenizerType
from mt.data.batching import _greedy_starts, collate, encode_pairs, token_batches
from mt.data.corpus import load_corpus, load_parallel_files, read_lines
from mt.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, cached_tokenizer
from mt.errors import DataError


def test_read_lines_keeps_empty_lines_and_reads_gzip(tmp_path: Path):
    plain = tmp_path / "a.txt"
    plain.write_text("one\n\nthree\n", encoding="utf-8")
    packed = tmp_path / "a.txt.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        handle.write("one\n\nthree\n")
    assert read_lines(plain) == ["one", "", "three"] == read_lines(packed)


def test_invalid_utf8_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(DataError, match=r"bad.txt, line 3: invalid UTF-8"):
        read_lines(bad)


def test_missing_file_and_unequal_lengths_are_clear_errors(tmp_path: Path):
    (tmp_path / "a.en").write_text("a\nb\n")
    (tmp_path / "a.de").write_text("a\n")
    with pytest.raises(DataError, match="has 2 lines but .* has 1"):
        load_parallel_files(tmp_path / "a.en", tmp_path / "a.de")
    with pytest.raises(DataError, match="missing file"):
        load_parallel_files(tmp_path / "a.en", tmp_path / "nope.de")
    with pytest.raises(DataError, match="missing file .*train.en"):
        load_corpus(DataConfig(source=CorpusSource.files, dir=str(tmp_path)))


def test_load_corpus_from_plain_and_gzip_files(tmp_path: Path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.en").write_text("hello\nworld\n")
        with gzip.open(tmp_path / f"{split}.de.gz", "wt") as handle:
            handle.write("hallo\nwelt\n")
    corpus = load_corpus(DataConfig(source=CorpusSource.files, dir=str(tmp_path)))
    assert corpus["train"]["src"] == ["hello", "world"] and corpus["test"]["tgt"] == ["hallo", "welt"]


def test_demo_corpus_loads_with_gold_alignments(corpus_dir):
    corpus = load_corpus(DataConfig(dir=str(corpus_dir), demo_sizes=[200, 20, 20], demo_seed=7))
    assert len(corpus["train"]) == 200 and "align" in corpus["train"].column_names


def test_tokenizer_special_ids_round_trip_and_cache(corpus_dir, tmp_path: Path):
    texts = read_lines(corpus_dir / "train.de")
    tok = cached_tokenizer(texts, tmp_path, 300, TokenizerType.bpe)
    assert (tok.sp.pad_id(), tok.sp.unk_id(), tok.sp.bos_id(), tok.sp.eos_id()) == (PAD, UNK, BOS, EOS)
    ids = tok.encode(texts[:5])
    assert all(min(seq) > EOS for seq in ids)
    assert tok.decode(ids) == texts[:5]
    stamp = tok.path.stat().st_mtime_ns
    again = cached_tokenizer(texts, tmp_path, 300, TokenizerType.bpe)
    assert again.path == tok.path and again.path.stat().st_mtime_ns == stamp
    other = cached_tokenizer(texts[:-1], tmp_path, 300, TokenizerType.bpe)
    assert other.path != tok.path


def test_decode_shows_unknown_pieces_and_drops_only_pad_bos_eos(tokenizers):
    src, _ = tokenizers
    ids = src.encode(["The dog sleeps."])[0]
    assert src.decode([[BOS, *ids[:2], UNK, *ids[2:], EOS, PAD]]) == [src.decode([ids[:2]])[0] + " \u2047 " +
                                                                         src.decode([ids[2:]])[0]]


def test_tokenizer_normalizes_whitespace_the_same_on_every_path(tokenizers):
    src, _ = tokenizers
    assert src.encode(["  The dog   sleeps. \t"]) == src.encode(["The dog sleeps."])
    assert Tokenizer(src.path).encode(["The dog sleeps."]) == src.encode(["The dog sleeps."])


def test_token_batches_cover_every_index_once_within_budget():
    src_lens = [3, 17, 5, 40, 8, 8, 22, 1, 13, 30] * 7
    tgt_lens = [4, 15, 6, 44, 9, 7, 20, 2, 12, 33] * 7
    batches = token_batches(src_lens, tgt_lens, max_tokens=120, seed=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(src_lens)))
    for b in batches:
        longest = max(max(src_lens[i], tgt_lens[i] + 1) for i in b)
        assert longest * len(b) <= 120 or len(b) == 1
    assert batches == token_batches(src_lens, tgt_lens, max_tokens=120, seed=1)
    assert batches != token_batches(src_lens, tgt_lens, max_tokens=120, seed=2)


def _row_by_row_starts(sizes, max_tokens):  # the greedy cut, one row at a time: the specification
    starts, count, longest = [], 0, 0
    for position, size in enumerate(sizes):
        if count and max(longest, size) * (count + 1) > max_tokens:
            starts.append(position - count)
            count = longest = 0
        count += 1
        longest = max(longest, size)
    if count:
        starts.append(len(sizes) - count)
    return starts


@pytest.mark.parametrize("max_tokens", [1, 7, 64, 300, 5000])
def test_batch_cuts_walked_by_runs_equal_the_row_by_row_greedy_cut(max_tokens):
    rng = np.random.default_rng(max_tokens)
    src = rng.integers(1, 60, size=3000)
    tgt = np.where(rng.random(3000) < 0.3, rng.integers(1, 200, size=3000), src)  # long runs and outliers
    order = np.lexsort((rng.random(3000), tgt, src))
    sizes = np.maximum(src, tgt + 1)[order]
    assert _greedy_starts(sizes, max_tokens) == _row_by_row_starts(sizes.tolist(), max_tokens)
    assert _greedy_starts(np.zeros(0, dtype=np.int64), max_tokens) == []


def test_token_batches_shard_disjointly_across_ranks():
    lens = list(range(1, 50))
    shards = [token_batches(lens, lens, 100, seed=3, rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    seen = [i for shard in shards for b in shard for i in b]
    assert len(seen) == len(set(seen))


def test_collate_pads_and_adds_bos_eos():
    batch = collate([[5, 6, 7], [8]], [[9], [10, 11]])
    assert batch.src.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert batch.src_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.tgt_in.tolist() == [[BOS, 9, PAD], [BOS, 10, 11]]
    assert batch.tgt_out.tolist() == [[9, EOS, PAD], [10, 11, EOS]]
    assert batch.n_tgt_tokens == 5 and batch.src.dtype == torch.long


def test_encode_pairs_skips_empty_and_long_pairs():
    kept = encode_pairs([[5], [], [5] * 10, [6]], [[7], [8], [9], []], max_len=5)
    assert kept.src == [[5]] and kept.skipped_empty == 2 and kept.skipped_long == 1


def test_tokenizer_samples_a_large_sorted_corpus_instead_of_reading_its_first_lines(tmp_path: Path):
    from mt.data.tokenizer import train_tokenizer

    # Sorted: 300 lines of one vocabulary, then 300 of words that appear nowhere before.
    head = [f"alpha beta gamma delta {i % 7}" for i in range(300)]
    tail = ["zebra quokka xylophone wombat"] * 300
    path = train_tokenizer(head + tail, tmp_path / "a.model", 60, TokenizerType.bpe, max_sentences=200)
    assert UNK not in Tokenizer(path).encode(["zebra quokka"])[0]
    again = train_tokenizer(head + tail, tmp_path / "b.model", 60, TokenizerType.bpe, max_sentences=200)
    assert again.read_bytes() == path.read_bytes()  # seeded: the same sample every time


def test_a_vocabulary_smaller_than_asked_is_said_once_per_side(corpus_dir, tmp_path, caplog):
    """SentencePiece stops where a small corpus runs out of pieces; the user who asked for 5,000
    hears that the tiny corpus gave fewer, and by which setting to ask for less."""
    import logging

    from mt.presets import compose
    from mt.training.pipeline import prepare_data

    from .conftest import TINY_TRAIN

    cfg = compose([*TINY_TRAIN, "data=files", f"data.dir={corpus_dir}", "data.src_lang=en", "data.tgt_lang=de",
                   f"cache_dir={tmp_path}", "data.tokenizer.src_vocab_size=5000"])
    with caplog.at_level(logging.WARNING, logger="mt"):
        data = prepare_data(cfg)
    said = [r.getMessage() for r in caplog.records if "vocab_size" in r.getMessage()]
    assert len(said) == 1, said  # the target side got the 300 it asked for
    assert f"data.tokenizer.src_vocab_size=5000 asked, but the training text gave {len(data.src_tokenizer)} pieces (en)" \
        in said[0]
    assert len(data.src_tokenizer) < 5000


def test_a_missing_split_file_names_the_setting_and_what_the_folder_holds(tmp_path: Path):
    for name in ("train.en", "train.de", "val.en", "test.en", "test.de"):  # Multi30k's names
        (tmp_path / name).write_text("a\n")
    with gzip.open(tmp_path / "val.de.gz", "wt") as handle:
        handle.write("a\n")
    with pytest.raises(DataError) as missing:
        load_corpus(DataConfig(source=CorpusSource.files, dir=str(tmp_path)))
    assert str(missing.value) == (
        f"missing file {tmp_path / 'valid.en'} (or .gz) (the folder has test.en, train.en, val.en): name the valid "
        "split with data.valid=NAME (NAME.en), the language with data.src_lang, the folder with data.dir")
    assert len(load_corpus(DataConfig(source=CorpusSource.files, dir=str(tmp_path), valid="val"))["validation"]) == 1
