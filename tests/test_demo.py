"""The demo: its sizing to the machine, and a tiny run end to end as a user starts it."""

import pytest
import torch

from mt.models import build_model
from mt.training.budget import (
    EVAL_TOKEN_EQUIVALENT,
    FIXED_OVERHEAD_S,
    MIN_TRAIN_S,
    measure_tokens_per_s,
    plan_training,
)

from .conftest import TINY_SIZES, run_mt, tiny_model_config

EPOCH_TOKENS = 505_480  # target tokens of the demo corpus's training split


def _expected_total(plan, speed: float, elapsed: float) -> float:
    training = min(plan.epochs * EPOCH_TOKENS / speed, plan.train_seconds)
    return elapsed + training + EVAL_TOKEN_EQUIVALENT / speed + FIXED_OVERHEAD_S


@pytest.mark.parametrize("speed", [2_500, 4_800, 9_000, 40_000, 200_000])
def test_the_plan_keeps_the_demo_within_its_budget_slow_or_fast(speed):
    budget, elapsed = 220.0, 15.0
    plan = plan_training(budget, elapsed, speed, EPOCH_TOKENS, max_epochs=5)
    assert _expected_total(plan, speed, elapsed) <= budget + 1e-6
    assert plan.train_seconds >= MIN_TRAIN_S and 1 <= plan.epochs <= 5
    assert plan.fits or plan.epochs * EPOCH_TOKENS / speed >= plan.train_seconds  # no time left unused


def test_a_slow_machine_gets_a_time_box_and_a_fast_one_whole_epochs():
    slow = plan_training(220, 15, 2_500, EPOCH_TOKENS, max_epochs=5)
    assert not slow.fits and slow.expected_epochs < 1 and slow.epochs == 1
    assert "each model trains for" in slow.describe(EPOCH_TOKENS)
    fast = plan_training(220, 15, 200_000, EPOCH_TOKENS, max_epochs=5)
    assert fast.fits and fast.epochs == 5  # capped: the result no longer depends on the speed
    assert "5 epochs" in fast.describe(EPOCH_TOKENS)
    middle = plan_training(220, 15, 9_000, EPOCH_TOKENS, max_epochs=5)
    assert not middle.fits and 2 <= middle.epochs < 5  # the whole box, stopping inside the last epoch
    assert middle.epochs - 1 < middle.expected_epochs <= middle.epochs


def test_measuring_the_speed_leaves_the_model_as_it_was(tokenizers):
    from mt.data.batching import encode_pairs

    src_tok, tgt_tok = tokenizers
    torch.manual_seed(0)
    model = build_model(tiny_model_config(), len(src_tok), len(tgt_tok))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sentences = ["The man calls the woman.", "A dog sleeps in the house today."] * 20
    targets = ["Der Mann ruft die Frau an.", "Ein Hund schläft heute im Haus."] * 20
    data = encode_pairs(src_tok.encode(sentences), tgt_tok.encode(targets))
    speed = measure_tokens_per_s(model, data, max_tokens=60, steps=3)
    assert 0 < speed < float("inf")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_tiny_demo_runs_end_to_end_with_progress_and_no_leaked_semaphores(tmp_path):
    sizes = ",".join(map(str, TINY_SIZES))
    result = run_mt("demo", "--out", str(tmp_path / "out"), "--budget", "60", "--beam", "2",
                    f"data.dir={tmp_path / 'demo'}", f"data.demo_sizes=[{sizes}]", f"cache_dir={tmp_path / 'cache'}",
                    "data.tokenizer.src_vocab_size=300", "data.tokenizer.tgt_vocab_size=300", "model.emb_dim=16",
                    "model.hidden_dim=24", "model.enc_hidden_dim=12", "model.attention.dim=16",
                    "train.valid_max_sentences=5", "train.log_seconds=0.01", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "fitting the demo to 60 s: this machine trains at about" in out
    # a progress line per model while it trains, and one per validation
    for name in ("rnn_noattn", "rnn_bahdanau"):
        assert f"[{name}] epoch 1  batch" in out and "tok/s" in out
        assert f"[{name}] epoch 1  step" in out
    assert "BLEU by source length" in out and "31-40" in out
    assert "leaked semaphore" not in out and "resource_tracker" not in out
    assert (tmp_path / "out" / "bleu_by_length.csv").is_file()
    # AER of the attention model against the corpus's gold alignments, beside BLEU; none without attention.
    # The files are mt compare's: the no-attention model is the baseline of the bootstrap.
    import csv

    rows = {r["model"]: r for r in csv.DictReader((tmp_path / "out" / "scores.csv").open())}
    assert list(rows) == ["rnn_noattn", "rnn_bahdanau"]
    assert rows["rnn_noattn"]["aer"] == "" and 0 <= float(rows["rnn_bahdanau"]["aer"]) <= 100
    assert 0 < float(rows["rnn_bahdanau"]["p_value_vs_baseline"]) <= 1
    assert (tmp_path / "out" / "attention_side_by_side.png").is_file()
    assert "AER: alignment error rate of the attention" in out
    assert (tmp_path / "out" / "rnn_bahdanau" / "model" / "model.safetensors").is_file()
