"""Every failure a user can cause gets one clear line (and exit status 2), nothing is lost, and
no input can stall translation: damaged model files, a full disk, a runaway line."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mt.cli.main import main
from mt.decoding.search import SearchConfig
from mt.errors import WriteError
from mt.export import open_translator
from mt.presets import compose
from mt.training import checkpoint as checkpoint_module
from mt.training.pipeline import run_training

from .conftest import TINY_TRAIN


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _broken_copy(model_dir: Path, tmp_path: Path, name: str, damage) -> Path:
    copy = tmp_path / f"model_{name.replace('.', '_')}"
    shutil.copytree(model_dir, copy)
    (copy / "manifest.json").unlink()  # as a folder written before manifests: the checks behind them still hold
    damage(copy / name)
    return copy


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize("name, damage, needles", [
    ("config.yaml", _truncate, ["config.yaml is damaged: "]),
    ("config.yaml", lambda p: p.write_text(p.read_text()[:p.read_text().index("\ntrain:") + 1]),  # still parses
     ["config.yaml is damaged: cut short"]),
    ("config.yaml", lambda p: p.write_text(p.read_text().replace("model:\n", "model: [\n", 1)),
     ["config.yaml is damaged: not valid YAML (line"]),
    ("config.yaml", lambda p: p.write_text(""), ["config.yaml is damaged: it holds no settings"]),
    ("config.yaml", lambda p: p.write_text(p.read_text().replace("model:\n", "model:\n  future_setting: 3\n")),
     ["config.yaml does not fit the ExperimentConfig schema", "future_setting", "another version of mt"]),
    ("config.yaml", lambda p: p.write_text("- just\n- a list\n"), ["config.yaml is damaged: it holds no settings"]),
    ("src.model", _truncate, ["src.model is damaged: not a SentencePiece model"]),
    ("model.safetensors", _truncate, ["model.safetensors is damaged: not a safetensors file"]),
    ("config.yaml", lambda p: p.write_text(p.read_text().replace("hidden_dim: 24", "hidden_dim: 32")),
     ["model.safetensors does not match config.yaml:", "in the weights but", "different models"]),
])
def test_a_damaged_model_directory_is_one_line_naming_the_file(trained_model_dir, tmp_path, capsys, name, damage,
                                                               needles):
    broken = _broken_copy(trained_model_dir, tmp_path, name, damage)
    (tmp_path / "in.txt").write_text("The dog sleeps.\n")
    assert main(["translate", str(broken), "--input", str(tmp_path / "in.txt")]) == 2
    _one_line(capsys, *needles)


def _longer(corpus_dir: Path, tmp_path: Path, *more: str):
    return compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.max_steps=0",
                    "train.epochs=1", "train.max_tokens=200", "train.checkpoint_every=2", "train.valid_max_sentences=3",
                    "model.dropout=0", *more])


def test_a_full_disk_while_checkpointing_says_what_is_kept_and_the_run_resumes(corpus_dir, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    run_training(_longer(corpus_dir, tmp_path), straight, progress="off")
    real, calls = torch.save, {"n": 0}

    def disk_fills(obj, path, *args, **kwargs):  # what torch raised on a 6 MB filesystem
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4054")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_fills)
    run = tmp_path / "run"
    with pytest.raises(WriteError) as caught:
        run_training(_longer(corpus_dir, tmp_path), run, progress="off")
    message = str(caught.value)
    assert "could not write the checkpoint of step 4" in message and "a full disk" in message
    assert "the last good checkpoint (step 2) is intact" in message and f"mt train train.resume={run}" in message
    assert not list((run / "checkpoints").glob(".last.mt-tmp-*"))  # the half-written folder is gone
    assert json.loads((run / "checkpoints" / "last" / "progress.json").read_text())["step"] == 2
    monkeypatch.setattr(checkpoint_module.torch, "save", real)  # space freed
    resumed = _longer(corpus_dir, tmp_path, f"train.resume={run}")
    run_training(resumed, tmp_path / "log", progress="off")
    a, b = (load_file(str(d / "checkpoints" / "last" / "model.safetensors")) for d in (straight, run))
    assert all(torch.equal(a[k], b[k]) for k in a)  # as if nothing had happened


def test_a_full_disk_anywhere_else_is_one_line_too(corpus_dir, tmp_path, monkeypatch, capsys):
    from mt import model_dir

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_dir, "save_model", no_space)  # the best model's weights
    args = ["train", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}"]
    with pytest.raises(SystemExit) as leaving:
        main(args)
    assert leaving.value.code == 2
    _one_line(capsys, "could not write the model directory to", "no space left on device")
    assert not list((tmp_path / "run").glob(".model.mt-tmp-*"))  # the half-written folder is gone
    monkeypatch.undo()
    from mt.data import tokenizer

    monkeypatch.setattr(tokenizer, "atomic_write_bytes", no_space)
    with pytest.raises(SystemExit):
        main([*args[:-2], f"cache_dir={tmp_path / 'other_cache'}", f"hydra.run.dir={tmp_path / 'run2'}"])
    _one_line(capsys, "could not write the tokenizer model", "cache_dir")


def _long_line(words: int) -> str:
    return " ".join(["the old man sees a small red car"] * (words // 8))


@pytest.mark.parametrize("beam", [1, 3])
def test_a_runaway_line_is_cut_to_the_input_limit_and_the_rest_translated(trained_model_dir, tmp_path, caplog, beam):
    """A 10,000-word line took 27 s and 2 GB with no limit; cut to --max-input-len pieces it is quick."""
    translator = open_translator(str(trained_model_dir), "cpu", "fp32")
    lines = ["The dog sleeps.", _long_line(4000), "A man calls."]
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="mt.translate"):
        out = translator.translate(lines, SearchConfig(beam=beam, max_input_len=40))
    assert time.perf_counter() - start < 30
    assert len(out) == 3 and len(out[1].src_pieces) == 40
    assert "line 2:" in caplog.text and "more than --max-input-len=40; translating its first 40" in caplog.text
    assert out[0].text == translator.translate([lines[0]], SearchConfig(beam=beam))[0].text  # the others as usual
    # The default limit: 1,024 pieces.
    assert len(translator.translate([_long_line(3000)], SearchConfig(beam=beam))[0].src_pieces) == 1024


def test_the_input_limit_applies_to_mt_translate_and_mt_align(trained_model_dir, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text(f"The dog sleeps.\n{_long_line(2000)}\n")
    assert main(["translate", str(trained_model_dir), "--input", str(src), "--output", str(tmp_path / "out.txt"),
                 "--max-input-len", "30"]) == 0
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 2
    ref = tmp_path / "ref.txt"
    ref.write_text(f"Der Hund schläft.\n{_long_line(2000)}\n")
    assert main(["align", str(trained_model_dir), "--src-file", str(src), "--ref-file", str(ref),
                 "--pharaoh", str(tmp_path / "links.txt"), "--max-input-len", "30"]) == 0
    links = (tmp_path / "links.txt").read_text().split("\n")
    assert links[0] and not links[1]  # the long pair is left unaligned, the short one aligned
    assert main(["translate", str(trained_model_dir), "--max-input-len", "0", "--input", str(src)]) == 2
    _one_line(capsys, "--max-input-len must be at least 1")


def test_attention_is_kept_only_where_it_is_used(trained_model_dir):
    translator = open_translator(str(trained_model_dir), "cpu", "fp32")
    lines = ["The old man has seen the dog.", "A small red car waits."]
    for beam in (1, 3):
        kept = translator.translate(lines, SearchConfig(beam=beam))
        dropped = translator.translate(lines, SearchConfig(beam=beam, keep_attention=False))
        assert [t.text for t in kept] == [t.text for t in dropped]
        assert all(t.attention is not None for t in kept) and all(t.attention is None for t in dropped)


def test_a_full_disk_while_encoding_the_corpus_is_one_line_and_leaves_no_cache(tmp_path, monkeypatch):
    from mt.data import encoded as encoded_module
    from mt.errors import MTError
    from mt.training.pipeline import prepare_data

    from .test_large_corpus import _cfg, _write_corpus

    corpus = _write_corpus(tmp_path / "c", 200)
    real_save = encoded_module.np.save

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(encoded_module.np, "save", no_space)
    with pytest.raises(MTError) as caught:
        prepare_data(_cfg(corpus, tmp_path / "cache"))
    message = str(caught.value)
    assert "could not write the encoded corpus to" in message and "no space left on device" in message
    assert "cache_dir=" in message and "\n" not in message
    assert not list((tmp_path / "cache" / "encoded").iterdir())  # nothing half-written is left to be trusted
    monkeypatch.setattr(encoded_module.np, "save", real_save)  # space freed
    assert len(prepare_data(_cfg(corpus, tmp_path / "cache")).train) > 0
