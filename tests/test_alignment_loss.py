"""train.alignment_loss: attention supervised by word alignments (Garg et al., 2019)."""

import shutil

import numpy as np
import pytest
import torch

from mt.data.batching import collate, gold_attention
from mt.decoding.attention_alignment import align_pairs
from mt.errors import ConfigError, DataError
from mt.evaluation.aer import alignment_error_rate, read_pharaoh
from mt.export import open_translator
from mt.presets import compose
from mt.training.alignment_loss import alignment_loss, piece_links
from mt.training.pipeline import prepare_data, run_training

from .conftest import TINY_TRAIN


def test_word_links_become_piece_links():
    # source words: "un" "believ|able" "story"; target words: "une" "histoire" "in|croy|able"
    links = piece_links({(0, 0), (1, 2), (2, 1)}, [0, 1, 1, 2], [0, 1, 2, 2, 2])
    expected = {(0, 0), (1, 3), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1), (4, 2)}
    assert {tuple(p) for p in links.tolist()} == expected
    assert piece_links(set(), [0], [0]).shape == (0, 2)


def test_gold_rows_are_distributions_and_the_loss_is_least_at_the_gold():
    links = [np.array([[0, 0], [1, 1], [1, 2]], dtype=np.int32), np.zeros((0, 2), dtype=np.int32)]
    gold = gold_attention(links, tgt_len=3, src_len=4)
    assert gold.shape == (2, 3, 4)
    assert gold[0, 0].tolist() == [1, 0, 0, 0] and gold[0, 1].tolist() == [0, 0.5, 0.5, 0]
    assert gold[0, 2].sum() == 0 and gold[1].sum() == 0  # unlinked rows (EOS, no links) are not supervised
    uniform = torch.full((2, 3, 4), 0.25, requires_grad=True)
    at_gold = gold.clone()
    at_gold[0, 1] = torch.tensor([1e-6, 0.5, 0.5, 1e-6])
    assert alignment_loss(at_gold, gold) < alignment_loss(uniform, gold)
    alignment_loss(uniform, gold).backward()
    assert uniform.grad[0, 0, 0] < 0 and uniform.grad[1].abs().sum() == 0
    batch = collate([[5, 6, 7, 8], [5]], [[9, 9], [9]], links)
    assert batch.align.shape == (2, 3, 4) and torch.equal(batch.align, gold)


def test_shifted_supervision_moves_each_pieces_links_to_the_step_that_reads_it():
    links = [np.array([[0, 0], [1, 1], [1, 2]], dtype=np.int32)]
    gold = gold_attention(links, tgt_len=3, src_len=4)
    shifted = gold_attention(links, tgt_len=3, src_len=4, shift=True)
    assert shifted[0, 0].sum() == 0  # the step that reads BOS predicts piece 0: nothing to align yet
    assert torch.equal(shifted[0, 1:], gold[0, :2])  # piece t's row is the step whose input it is
    batch = collate([[5, 6, 7, 8]], [[9, 9]], links, shift_links=True)
    assert torch.equal(batch.align, shifted)
    with pytest.raises(ConfigError, match="train.alignment_shift=true .* needs train.alignment_loss"):
        compose(["train.alignment_shift=true"])


def _aer(model_dir, corpus_dir, shift_att: bool = False) -> float:
    translator = open_translator(model_dir, "cpu")
    src = (corpus_dir / "test.en").read_text().splitlines()
    ref = (corpus_dir / "test.de").read_text().splitlines()
    pairs = align_pairs(translator, src, ref, shift_att=shift_att)
    return alignment_error_rate(read_pharaoh(corpus_dir / "test.align"), [p.links for p in pairs]).aer


def test_supervised_attention_aligns_better_than_unsupervised(corpus_dir, tmp_path):
    # 132 updates: long enough for supervision to show (about 93 -> 79 AER), a few seconds each.
    settings = [*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.max_steps=0",
                "train.epochs=6", "train.max_tokens=500", "train.lr=1e-2"]
    aer = {}
    for weight in (0.0, 3.0):
        run_training(compose([*settings, f"train.alignment_loss={weight}"]), tmp_path / str(weight), progress="off")
        aer[weight] = _aer(tmp_path / str(weight) / "model", corpus_dir)
    assert aer[3.0] < aer[0.0] - 8, aer
    # Luong general supervised on the step that reads word j (which attends after reading it),
    # read back with Shift-Att, beats the same supervision on the step that predicts word j
    # (about 33 against 58 AER): that step has to guess which word comes before placing it.
    luong = [*settings, "model=rnn_luong_general", "train.alignment_loss=3.0"]
    run_training(compose([*luong, "train.alignment_shift=true"]), tmp_path / "shift", progress="off")
    run_training(compose(luong), tmp_path / "luong", progress="off")
    shifted = _aer(tmp_path / "shift" / "model", corpus_dir, shift_att=True)
    assert shifted < _aer(tmp_path / "luong" / "model", corpus_dir) - 8, shifted


def test_alignment_loss_errors_name_the_problem(corpus_dir, tmp_path):
    base = [*TINY_TRAIN, f"cache_dir={tmp_path / 'cache'}", "train.alignment_loss=1"]
    with pytest.raises(ConfigError, match="does not have"):
        compose([*base, f"data.dir={corpus_dir}", "model=rnn_noattn"])
    bare = tmp_path / "bare"  # a corpus without train.align
    shutil.copytree(corpus_dir, bare, ignore=shutil.ignore_patterns("*.align"))
    with pytest.raises(DataError, match="data.train_alignments=FILE"):
        prepare_data(compose([*base, f"data.dir={bare}", "data.source=files"]))
    short = tmp_path / "short.align"
    short.write_text("0-0\n")
    with pytest.raises(DataError, match="1 lines but the training corpus has"):
        prepare_data(compose([*base, f"data.dir={bare}", "data.source=files", f"data.train_alignments={short}"]))
    n = len((bare / "train.en").read_text().splitlines())
    wrong = tmp_path / "wrong.align"
    wrong.write_text("0-0\n" * (n - 1) + "0-400\n")
    with pytest.raises(DataError, match=f"line {n}: link 0-400"):
        prepare_data(compose([*base, f"data.dir={bare}", "data.source=files", f"data.train_alignments={wrong}"]))


@pytest.mark.parametrize("head", [[], ["model.attention_reduction=one_head", "model.dec_layers=2"]],
                         ids=["last-layer-mean", "one-head"])
def test_a_transformer_trains_with_supervised_attention(corpus_dir, tmp_path, head):
    cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "model=transformer",
                   "model.hidden_dim=24", "model.enc_layers=1", "model.dec_layers=1", "train.max_steps=3",
                   "train.alignment_loss=1", *head])
    plain = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "model=transformer",
                     "model.hidden_dim=24", "model.enc_layers=1", "model.dec_layers=1", "train.max_steps=3"])
    supervised = run_training(cfg, tmp_path / "a", progress="off").history[-1]
    unsupervised = run_training(plain, tmp_path / "b", progress="off").history[-1]
    # The training loss carries the weighted attention term on top of the translation loss.
    assert supervised["train_loss"] > unsupervised["train_loss"] + 0.5
