"""mt export --to ctranslate2: a Transformer run by CTranslate2 gives what the PyTorch model
gives (lines, scores, attention), every command takes the export, and what cannot be exported
or honoured is refused in one line. Skipped where ctranslate2 is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install -e '.[deploy]')")

from mt.cli.main import main
from mt.errors import MTError
from mt.export import open_translator
from mt.export.ctranslate2 import CT2Translator, export_ctranslate2
from tests.conftest import train_tiny

STEPS = ["train.max_steps=40", "train.epochs=3", "train.warmup_steps=10"]  # the preset warms up over 300


@pytest.fixture(scope="module")
def transformer_dir(tmp_path_factory, corpus_dir) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tf"), corpus_dir, "model=transformer", "model.heads=2",
                      "model.enc_layers=2", "model.dec_layers=2", *STEPS) / "model"


@pytest.fixture(scope="module")
def exported(transformer_dir, tmp_path_factory) -> Path:
    return export_ctranslate2(transformer_dir, tmp_path_factory.mktemp("ct2") / "float32", "float32")


@pytest.fixture(scope="module")
def lines(corpus_dir) -> list[str]:
    return (corpus_dir / "test.en").read_text().splitlines()[:20]


@pytest.mark.parametrize("settings", [{"beam": 1}, {"beam": 3}, {"beam": 3, "nbest": 2, "length_penalty": 0.6},
                                      {"beam": 1, "max_len_a": 0.5, "max_len_b": 2}, {"beam": 1, "no_repeat_ngram": 2}])
def test_a_float32_export_translates_as_the_pytorch_model_does(transformer_dir, exported, lines, settings):
    torch_model = open_translator(str(transformer_dir), "cpu", "fp32")
    ct2 = open_translator(str(exported), "cpu")
    assert isinstance(ct2, CT2Translator)
    want, got = torch_model.translate_nbest(lines, **settings), ct2.translate_nbest(lines, **settings)
    assert [[h.text for h in hyps] for hyps in got] == [[h.text for h in hyps] for hyps in want]
    if settings.get("no_repeat_ngram"):
        return  # CTranslate2 renormalises after blocking (mt and fairseq do not): the same argmax, other scores
    for mine, theirs in zip(got, want):
        for a, b in zip(mine, theirs):
            assert a.tgt_pieces == b.tgt_pieces  # the same ending (</s> or cut at the limit)
            assert a.score == pytest.approx(b.score, abs=2e-3)
            assert a.normalized_score == pytest.approx(b.normalized_score, abs=2e-3)
            assert a.attention.shape == b.attention.shape
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-4)
    if settings == {"beam": 1, "max_len_a": 0.5, "max_len_b": 2}:
        assert any(not h[0].tgt_pieces or h[0].tgt_pieces[-1] != "</s>" for h in got)  # some cut at their limit


def test_forced_reading_and_the_attention_maps_match(transformer_dir, exported, corpus_dir):
    torch_model = open_translator(str(transformer_dir), "cpu", "fp32")
    ct2 = open_translator(str(exported), "cpu")
    src, ref = (corpus_dir / "test.en").read_text().splitlines()[3], (corpus_dir / "test.de").read_text().splitlines()[3]
    a, b = ct2.force_decode(src, ref), torch_model.force_decode(src, ref)
    assert a.score == pytest.approx(b.score, abs=2e-3)
    np.testing.assert_allclose(a.attention, b.attention, atol=1e-4)
    pairs = ct2.force_decode_ids([a.tgt_ids and ct2.src_tokenizer.encode([src])[0], []],
                                 [a.tgt_ids, a.tgt_ids])
    assert pairs[1] == (0.0, None) and pairs[0][1].shape == (len(a.tgt_ids) + 1, len(a.src_pieces))
    maps = ct2.attention_maps(src, a.tgt_ids)
    assert maps.shape == (1, 1, len(a.tgt_ids) + 1, len(a.src_pieces))
    reduced = torch_model.attention_maps(src, a.tgt_ids)[-1].mean(0)  # mt's view: the last layer's heads
    np.testing.assert_allclose(maps[0, 0], reduced, atol=1e-4)
    with pytest.raises(MTError, match="keeps one attention map"):
        ct2.force_decode_ids([[5]], [[6]], layer=0)


def test_one_supervised_head_comes_out_of_the_export(transformer_dir, corpus_dir, tmp_path):
    """attention_reduction=one_head (Garg et al.'s supervised head): the export returns that head."""
    import shutil

    one = tmp_path / "one_head"
    shutil.copytree(transformer_dir, one)
    config = (one / "config.yaml").read_text()
    assert "attention_reduction: last_layer" in config
    (one / "config.yaml").write_text(config.replace("attention_reduction: last_layer", "attention_reduction: one_head"))
    (one / "manifest.json").unlink()  # edited on purpose
    torch_model = open_translator(str(one), "cpu", "fp32")
    ct2 = open_translator(str(export_ctranslate2(one, tmp_path / "ct2", "float32")), "cpu")
    src, ref = (corpus_dir / "test.en").read_text().splitlines()[3], (corpus_dir / "test.de").read_text().splitlines()[3]
    a, b = ct2.force_decode(src, ref), torch_model.force_decode(src, ref)
    head = torch_model.attention_maps(src, b.tgt_ids)[0, 0]  # head 0 of the penultimate of 2 layers
    np.testing.assert_allclose(b.attention, head, atol=1e-6)
    np.testing.assert_allclose(a.attention, b.attention, atol=1e-4)
    assert not np.allclose(head, torch_model.attention_maps(src, b.tgt_ids)[-1].mean(0), atol=1e-3)


def test_every_command_takes_the_export(transformer_dir, exported, corpus_dir, tmp_path, capsys):
    """Each command reads an export as it reads a model (in-process; the export is what is tested here)."""
    src, ref = corpus_dir / "test.en", corpus_dir / "test.de"
    assert main(["translate", str(transformer_dir), "--input", str(src), "--beam", "2", "--precision", "fp32"]) == 0
    plain = capsys.readouterr().out
    assert main(["translate", str(exported), "--input", str(src), "--beam", "2"]) == 0
    assert capsys.readouterr().out == plain
    assert main(["evaluate", str(exported), "--src", str(src), "--ref", str(ref)]) == 0
    assert "BLEU" in capsys.readouterr().out
    assert main(["align", str(exported), "--src", "The dog sleeps.", "--out", str(tmp_path / "a.png"),
                 "--json", str(tmp_path / "a.json")]) == 0
    data = json.loads((tmp_path / "a.json").read_text())
    assert np.asarray(data["attention"]).shape == (len(data["tgt_tokens"]), len(data["src_tokens"]))
    assert main(["align", str(exported), "--src-file", str(src), "--ref-file", str(ref), "--pharaoh",
                 str(tmp_path / "links.txt")]) == 0
    assert len((tmp_path / "links.txt").read_text().splitlines()) == len(src.read_text().splitlines())
    assert main(["compare", str(transformer_dir), str(exported), "--src", str(src), "--ref", str(ref),
                 "--gold", str(corpus_dir / "test.align"), "--bootstrap", "50", "--no-progress",
                 "--out", str(tmp_path / "cmp")]) == 0
    lines = (tmp_path / "cmp" / "scores.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| model |")).split("|")
    rows = [line.split("|") for line in lines if line.startswith("| transformer")][:2]
    assert len(rows) == 2  # the model and its export, scored alike: the same BLEU, chrF, entropy and AER
    for column in ("test_bleu", "test_chrf", "attention_entropy", "aer"):
        k = [h.strip() for h in header].index(column)
        assert rows[0][k] == rows[1][k], column
    assert main(["explore", str(exported), "--src-file", str(src), "--ref-file", str(ref), "--out",
                 str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").stat().st_size > 10_000


def test_int8_is_smaller_and_still_translates(transformer_dir, exported, tmp_path, lines, capsys):
    assert main(["export", str(transformer_dir), "--to", "ctranslate2", "--out", str(tmp_path / "int8")]) == 0
    assert "int8" in capsys.readouterr().out
    info = json.loads((tmp_path / "int8" / "export.json").read_text())
    assert info["format"] == "ctranslate2" and info["quantization"] == "int8"
    assert (tmp_path / "int8" / "model.bin").stat().st_size < (exported / "model.bin").stat().st_size
    out = open_translator(str(tmp_path / "int8"), "cpu").translate(lines)
    assert len(out) == len(lines) and all(t.text for t in out)


def test_what_cannot_be_exported_or_honoured_is_one_line(trained_model_dir, transformer_dir, exported, tmp_path,
                                                         capsys):
    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
        return err

    assert "CTranslate2 runs Transformers only" in error(
        ["export", str(trained_model_dir), "--to", "ctranslate2", "--out", str(tmp_path / "rnn")])
    assert not (tmp_path / "rnn").exists()
    assert "--quantization int4 is not one" in error(
        ["export", str(transformer_dir), "--to", "ctranslate2", "--quantization", "int4", "--out", str(tmp_path / "q")])
    assert "needs the model directory it was exported from" in error(
        ["export", str(exported), "--to", "ctranslate2", "--out", str(tmp_path / "again")])
    (tmp_path / "in.txt").write_text("The dog sleeps.\n")
    assert "--length-penalty-type gnmt has no CTranslate2 counterpart" in error(
        ["translate", str(exported), "--input", str(tmp_path / "in.txt"), "--beam", "2", "--length-penalty-type", "gnmt"])
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in exported.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    (damaged / "export.json").write_text("{not json")
    assert "export.json is damaged" in error(["translate", str(damaged), "--input", str(tmp_path / "in.txt")])
    (damaged / "export.json").write_text((exported / "export.json").read_text())
    (damaged / "model.bin").write_bytes(b"garbage")
    assert "model.bin is damaged: 7 bytes where" in error(["translate", str(damaged), "--input", str(tmp_path / "in.txt")])
    (damaged / "manifest.json").unlink()  # as an export of an earlier mt: CTranslate2's own check still holds
    assert "CTranslate2 could not load" in error(["translate", str(damaged), "--input", str(tmp_path / "in.txt")])


def test_mt_serve_serves_the_export(exported, lines):
    httpx = pytest.importorskip("httpx", reason="the serve extra is not installed")
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from tests.serving import Server

    s = Server(f"fast={exported}")
    try:
        info = httpx.get(f"{s.url}/models").json()[0]
        assert info["engine"] == "ctranslate2" and info["arch"] == "transformer"
        assert info["batching"] == "window"  # continuous batching is mt's own search; the engine batches requests
        answer = httpx.post(f"{s.url}/translate", json={"q": lines[:3], "source": "en", "target": "de",
                                                       "attention": True}, timeout=60)
        assert answer.status_code == 200, answer.text
        want = open_translator(str(exported), "cpu").translate(lines[:3])
        assert answer.json()["translatedText"] == [t.text for t in want]
        assert len(answer.json()["attention"]) == 3
        # A search the engine cannot run is the client's to change: 400, not 503 with Retry-After forever.
        gnmt = httpx.post(f"{s.url}/translate", json={"q": lines[0], "source": "en", "target": "de",
                                                     "penalty": "gnmt", "length_penalty": 0.6}, timeout=60)
        assert gnmt.status_code == 400 and "retry-after" not in gnmt.headers
        assert "gnmt has no CTranslate2 counterpart" in gnmt.json()["error"]
        html = httpx.post(f"{s.url}/translate", json={"q": "<p>The dog <b>sleeps</b>.</p>", "source": "en",
                                                     "target": "de", "format": "html"}, timeout=60)
        assert html.status_code == 200 and html.headers["x-mt-markup"] == "attention"
        assert html.json()["translatedText"].count("<b>") == 1
    finally:
        assert s.stop() == 0
