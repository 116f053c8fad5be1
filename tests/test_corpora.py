"""Corpus sources: hub datasets (through a local stand-in), Multi30k's raw layout."""

import json
from pathlib import Path

import pytest

from mt.cli.demo import compose
from mt.config import CorpusSource, DataConfig
from mt.data.corpus import load_corpus
from mt.errors import DataError

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
