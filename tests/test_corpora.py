"""Corpus sources: hub datasets (through a local stand-in), Multi30k's raw layout."""

import json
from pathlib import Path

import pytest

from mt.config import CorpusSource, DataConfig
from mt.data.corpus import load_corpus
from mt.errors import DataError
from mt.presets import compose

MULTI30K = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"


def _hub_stand_in(root: Path, nested: bool) -> Path:
    """A folder that datasets.load_dataset reads the way it reads a hub repository."""
    root.mkdir()
    for split, n in (("train", 6), ("validation", 2), ("test", 3)):
        rows = [{"en": f"sentence {i} of {split}", "de": f"Satz {i} von {split}"} for i in range(n)]
        if nested:
            rows = [{"translation": row, "id": i} for i, row in enumerate(rows)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.parametrize("nested", [False, True], ids=["column-per-language", "translation-dicts"])
def test_hub_datasets_load_in_both_layouts(tmp_path, nested):
    root = _hub_stand_in(tmp_path / "hub", nested)
    cfg = DataConfig(source=CorpusSource.hub, hub_id=str(root), hub_field="translation" if nested else "")
    corpus = load_corpus(cfg)
    assert [len(corpus[s]) for s in ("train", "validation", "test")] == [6, 2, 3]
    assert corpus["test"][1] == {"src": "sentence 1 of test", "tgt": "Satz 1 von test"}
    flipped = load_corpus(DataConfig(source=CorpusSource.hub, hub_id=str(root), src_lang="de", tgt_lang="en",
                                     hub_field="translation" if nested else ""))
    assert flipped["train"][0] == {"src": "Satz 0 von train", "tgt": "sentence 0 of train"}


def test_hub_errors_name_what_is_missing(tmp_path):
    root = _hub_stand_in(tmp_path / "hub", nested=False)
    with pytest.raises(DataError, match="no column 'fr'.*data.src_lang"):
        load_corpus(DataConfig(source=CorpusSource.hub, hub_id=str(root), src_lang="fr"))
    with pytest.raises(DataError, match="no split 'dev'"):
        load_corpus(DataConfig(source=CorpusSource.hub, hub_id=str(root), hub_splits=["train", "dev", "test"]))
    with pytest.raises(DataError, match="no column 'translation'"):
        load_corpus(DataConfig(source=CorpusSource.hub, hub_id=str(root), hub_field="translation"))
    with pytest.raises(DataError, match="needs data.hub_id"):
        load_corpus(DataConfig(source=CorpusSource.hub))


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")
@pytest.mark.parametrize("src, tgt", [("en", "de"), ("fr", "cs")])
def test_multi30k_config_reads_the_raw_layout_offline(src, tgt):
    cfg = compose(["data=multi30k", f"data.dir={MULTI30K}", f"data.src_lang={src}", f"data.tgt_lang={tgt}"])
    assert cfg.data.hub_id == "bentrevett/multi30k"  # online users get the hub by default
    corpus = load_corpus(cfg.data)
    assert [len(corpus[s]) for s in ("train", "validation", "test")] == [29000, 1014, 1000]
    assert all(corpus["test"][i]["src"] and corpus["test"][i]["tgt"] for i in range(5))


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")
def test_unknown_language_code_names_the_missing_file():
    cfg = compose(["data=multi30k", f"data.dir={MULTI30K}", "data.tgt_lang=xx"])
    with pytest.raises(DataError, match=r"missing file .*train\.xx"):
        load_corpus(cfg.data)


def _rows(split: str, n: int) -> list[dict]:
    return [{"en": f"sentence {i} of {split}", "de": f"Satz {i} von {split}"} for i in range(n)]


def test_tsv_jsonl_and_save_to_disk_load_the_same_pairs(tmp_path):
    import datasets

    sizes = {"train": 5, "valid": 2, "test": 3}
    tsv, jsonl, disk = tmp_path / "tsv", tmp_path / "jsonl", tmp_path / "disk"
    tsv.mkdir()
    jsonl.mkdir()
    for split, n in sizes.items():
        (tsv / f"{split}.tsv").write_text("".join(f"{r['en']}\t{r['de']}\n" for r in _rows(split, n)))
        (jsonl / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(split, n)))
    datasets.DatasetDict({name: datasets.Dataset.from_list(_rows(split, sizes[split]))
                          for name, split in (("train", "train"), ("validation", "valid"), ("test", "test"))}
                         ).save_to_disk(str(disk))
    loaded = [load_corpus(DataConfig(source=source, dir=str(d))) for source, d in
              ((CorpusSource.tsv, tsv), (CorpusSource.jsonl, jsonl), (CorpusSource.disk, disk))]
    for corpus in loaded:
        assert [len(corpus[s]) for s in ("train", "validation", "test")] == [5, 2, 3]
        assert corpus["validation"][1] == {"src": "sentence 1 of valid", "tgt": "Satz 1 von valid"}


def test_bad_tsv_and_jsonl_lines_are_named(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.tsv").write_text("a\tb\nonly one field\n")
        (tmp_path / f"{split}.jsonl").write_text('{"en": "a", "de": "b"}\n{"en": "a"\n')
    with pytest.raises(DataError, match=r"train.tsv, line 2: expected 2 tab-separated fields"):
        load_corpus(DataConfig(source=CorpusSource.tsv, dir=str(tmp_path)))
    with pytest.raises(DataError, match="cannot read the JSONL files"):
        load_corpus(DataConfig(source=CorpusSource.jsonl, dir=str(tmp_path)))


def test_length_ratio_filter_counts_what_it_drops():
    from mt.data.batching import encode_pairs

    kept = encode_pairs([[5] * 2, [5] * 10, [5] * 10, [5]], [[6] * 3, [6] * 2, [6] * 9, [6] * 3], max_ratio=3.0)
    assert kept.src == [[5] * 2, [5] * 10, [5]] and kept.skipped_ratio == 1
    assert encode_pairs([[5] * 10], [[6] * 2]).skipped_ratio == 0  # off by default in the function
