"""The rest of the attention family (issue 33): Euclidean and Pearson scores, sigmoid and max
normalisers, top-k masks and hard attention; their definitions, gradients, masks and config
checks, then every user path (train, translate with beam, align, aer, compare, explore) on
tiny models trained through the CLI."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from mt.cli.main import main
from mt.config import AttentionConfig, Normalizer
from mt.decoding.attention_alignment import argmax_links
from mt.errors import ConfigError
from mt.evaluation.metrics import attention_entropy
from mt.models.attention import make_attention, masked_sigmoid, masked_softmax, max_normalize, top_k_mask
from mt.presets import compose

from .conftest import train_tiny

MASK = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, 8, generator=g, dtype=dtype), torch.randn(2, 6, 8, generator=g, dtype=dtype))


def test_euclidean_score_is_the_negative_squared_distance_over_two_root_d():
    query, values = _inputs()
    attention = make_attention(8, 8, score="euclidean")
    expected = -((query.unsqueeze(2) - values.unsqueeze(1)) ** 2).sum(-1) / (2 * math.sqrt(8))
    torch.testing.assert_close(attention.score(query, values, attention.precompute(values)), expected)
    # Under softmax the query's own norm cancels: the same weights as scaled_dot less |h|^2 / (2 sqrt d).
    _, weights = attention(query, values, attention.precompute(values), MASK)
    shifted = torch.bmm(query, values.transpose(1, 2)) / math.sqrt(8) - values.pow(2).sum(-1).unsqueeze(1) / (
        2 * math.sqrt(8))
    torch.testing.assert_close(weights, masked_softmax(shifted, MASK))


def test_pearson_score_is_the_scaled_correlation_of_the_components():
    query, values = _inputs()
    attention = make_attention(8, 8, score="pearson")
    scores = attention.score(query, values, attention.precompute(values))
    for b in range(2):
        for q in range(3):
            for s in range(6):
                r = np.corrcoef(query[b, q].numpy(), values[b, s].numpy())[0, 1]
                assert scores[b, q, s].item() == pytest.approx(10.0 * r, abs=1e-4)  # the scale starts at 10
    # Correlation ignores an offset and a positive factor of either vector.
    moved = attention.score(query * 3 + 2, values, attention.precompute(values - 1))
    torch.testing.assert_close(moved, scores, atol=1e-4, rtol=1e-4)


def test_sigmoid_gates_and_max_normalisation_give_exact_zeros_on_padding():
    scores = torch.randn(2, 3, 6) * 3
    gates = masked_sigmoid(scores, MASK)
    torch.testing.assert_close(gates[0], torch.sigmoid(scores[0]))
    assert torch.all(gates[1, :, 4:] == 0)
    weights = max_normalize(scores, MASK)
    assert torch.all(weights[1, :, 4:] == 0) and torch.all(weights > -1e-9) and torch.all(weights <= 1)
    assert torch.all(weights.max(-1).values == 1.0)  # the strongest position weighs exactly one
    # Its ranking is the scores' (softplus is increasing), so argmax alignments do not change.
    assert torch.equal(weights.argmax(-1), scores.masked_fill(~MASK.unsqueeze(1), -1e9).argmax(-1))


def test_top_k_keeps_the_k_best_real_positions_of_each_query():
    scores = torch.randn(2, 3, 6)
    mask = MASK.unsqueeze(1).expand(2, 3, 6)
    kept = top_k_mask(scores, mask, 2)
    assert torch.all(kept.sum(-1) == 2) and not torch.any(kept & ~mask)
    best = scores.masked_fill(~mask, -1e9).topk(2, dim=-1).indices
    assert torch.all(kept.gather(-1, best))
    assert torch.equal(top_k_mask(scores, mask, 6), mask)  # k at least the length: everything
    short = top_k_mask(scores, mask, 5)  # sentence 2 has 4 real positions: all 4, never padding
    assert torch.all(short[1].sum(-1) == 4) and torch.all(short[0].sum(-1) == 5)
    attention = make_attention(8, 8, score="dot", top_k=2)
    query, values = _inputs()
    _, weights = attention(query, values, None, MASK)
    assert torch.all((weights > 0).sum(-1) == 2)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))


@pytest.mark.parametrize("settings", [
    {"score": "euclidean"}, {"score": "pearson"}, {"score": "additive", "normalizer": "sigmoid"},
    {"score": "general", "normalizer": "max"}, {"score": "additive", "top_k": 2},
    {"score": "dot", "normalizer": "sparsemax", "top_k": 3}, {"score": "pearson", "normalizer": "sigmoid", "top_k": 4},
], ids=lambda s: "-".join(str(v) for v in s.values()))
def test_gradients_match_finite_differences(settings):
    torch.manual_seed(0)
    attention = make_attention(8, 8, attn_dim=5, **settings).double()
    query, values = _inputs(torch.double, seed=1)
    query.requires_grad_(True)
    values.requires_grad_(True)

    def run(q, v):
        return attention(q, v, None, MASK)

    assert torch.autograd.gradcheck(run, (query, values), eps=1e-6, atol=1e-5)
    _, weights = run(query, values)
    assert torch.all(weights[1, :, 4:] == 0)  # padding: exactly zero


def test_hard_attention_is_the_argmax_at_inference_and_a_gumbel_sample_in_training():
    torch.manual_seed(0)
    attention = make_attention(8, 8, score="general", hard=True)
    soft = make_attention(8, 8, score="general")
    soft.load_state_dict(attention.state_dict())
    query, values = _inputs()
    attention.eval()
    _, hard = attention(query, values, None, MASK)
    _, weights = soft(query, values, None, MASK)
    assert torch.equal(hard, torch.nn.functional.one_hot(weights.argmax(-1), 6).float())
    # Training: one-hot samples whose frequencies follow the softmax (the Gumbel-max trick).
    attention.train()
    q, v, m = query[:1, :1].expand(4000, 1, 8), values[:1].expand(4000, 6, 8), MASK[:1].expand(4000, 6)
    _, samples = attention(q, v, None, m)
    assert torch.all(samples.sum(-1) == 1) and torch.all((samples == 0) | (samples == 1))
    frequencies = samples[:, 0].mean(0)
    torch.testing.assert_close(frequencies, weights[0, 0], atol=0.03, rtol=0)


def test_hard_attention_passes_the_softmax_gradient_straight_through():
    torch.manual_seed(0)
    attention = make_attention(8, 8, score="dot", hard=True).train()
    query, values = _inputs()
    query.requires_grad_(True)
    torch.manual_seed(5)
    context, weights = attention(query, values, None, MASK)
    (context * torch.arange(8.0)).sum().backward()
    straight_through = query.grad.clone()
    # The same Gumbel noise by hand: the backward is that of softmax(scores + noise).
    query.grad = None
    torch.manual_seed(5)
    logits = torch.bmm(query, values.transpose(1, 2)).masked_fill(~MASK.unsqueeze(1), float("-inf"))
    noise = -torch.log(-torch.log(torch.rand_like(logits).clamp_(torch.finfo(torch.float32).tiny, 1.0)))
    soft = torch.softmax(logits + noise, dim=-1)
    assert torch.equal(weights, torch.nn.functional.one_hot(soft.argmax(-1), 6).float())
    (torch.bmm(soft, values) * torch.arange(8.0)).sum().backward()
    torch.testing.assert_close(straight_through, query.grad)


def test_entropy_reads_gated_rows_as_their_renormalised_distribution():
    assert attention_entropy([np.array([[0.5, 0.5]])]) == pytest.approx(math.log(2))
    assert attention_entropy([np.array([[0.2, 0.2]])]) == pytest.approx(math.log(2))  # gates: spread, not total
    assert attention_entropy([np.array([[1.0, 0.0], [0.0, 0.0]])]) == pytest.approx(0.0, abs=1e-9)  # zero row left out
    assert attention_entropy([np.zeros((2, 3))]) is None


def test_argmax_links_leave_a_row_with_no_weight_unlinked():
    words = torch.tensor([[0.1, 0.7, 0.2], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert argmax_links(words) == {(1, 0), (2, 2)}


@pytest.mark.parametrize("overrides, message", [
    (["model=rnn_bahdanau", "model.attention.top_k=-1"], "model.attention.top_k must be 0"),
    (["model=rnn_bahdanau", "model.attention.hard=true", "model.attention.normalizer=sparsemax"],
     "model.attention.hard=true samples one position from the softmax"),
    (["model=rnn_bahdanau", "model.attention.normalizer=softmaxx"], "Invalid value 'softmaxx'"),
    (["model=rnn_bahdanau", "model.attention.score=euclidean"], "model.enc_hidden_dim=128"),
    (["model=transformer", "model.attention.top_k=3"], "model.attention.top_k=3 shapes the RNN decoders"),
    (["model=transformer", "model.attention.normalizer=sparsemax"], "the Transformer's is scaled dot-product"),
    (["model=rnn_bahdanau", "model.attention.hard=true", "train.alignment_loss=1"], "drop model.attention.hard=true"),
    (["model=rnn_bahdanau", "model.attention.normalizer=sigmoid", "train.alignment_loss=1"],
     "rows that are distributions: drop model.attention.normalizer=sigmoid"),
])
def test_wrong_settings_fail_at_config_load_naming_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_the_documented_overrides_compose_on_every_rnn_preset():
    for preset in ("rnn_bahdanau", "rnn_luong", "rnn_luong_concat", "rnn_luong_local"):
        a = compose([f"model={preset}", "model.attention.normalizer=sigmoid", "model.attention.top_k=3"]).model.attention
        assert a.normalizer is Normalizer.sigmoid and a.top_k == 3
        assert compose([f"model={preset}", "model.attention.hard=true"]).model.attention.hard
    for score in ("euclidean", "pearson"):
        assert compose(["model=rnn_luong_dot", f"model.attention.score={score}"]).model.attention.score.value == score
    assert AttentionConfig().top_k == 0 and not AttentionConfig().hard


# Every new setting once, through the CLI: what a user trains, then uses.
FAMILY = {
    "euclidean_top3": ["model=rnn_luong", "model.attention.score=euclidean", "model.attention.top_k=3"],
    "pearson_max": ["model=rnn_luong", "model.attention.score=pearson", "model.attention.normalizer=max"],
    "sigmoid": ["model=rnn_bahdanau", "model.attention.normalizer=sigmoid"],
    "local_hard": ["model=rnn_luong_local", "model.attention.hard=true", "model.attention.window=3"],
}


@pytest.fixture(scope="module")
def family_models(tmp_path_factory, corpus_dir):
    return {name: train_tiny(tmp_path_factory.mktemp(name), corpus_dir, *overrides) / "model"
            for name, overrides in FAMILY.items()}


def test_every_new_variant_translates_with_beam_aligns_and_scores_aer(family_models, corpus_dir, tmp_path, capsys):
    src, ref, gold = corpus_dir / "test.en", corpus_dir / "test.de", corpus_dir / "test.align"
    n = len(src.read_text().splitlines())
    for name, model in family_models.items():
        out = tmp_path / f"{name}.txt"
        assert main(["translate", str(model), "--input", str(src), "--output", str(out), "--beam", "3"]) == 0, name
        assert len(out.read_text().splitlines()) == n
        pred = tmp_path / f"{name}.pharaoh"
        for rule in ([], ["--rule", "threshold", "--threshold", "0.3"]):
            assert main(["align", str(model), "--src-file", str(src), "--ref-file", str(ref), "--pharaoh", str(pred),
                         "--jsonl", str(tmp_path / f"{name}.jsonl"), *rule]) == 0, name
            assert len(pred.read_text().splitlines()) == n
            assert main(["aer", "--gold", str(gold), "--pred", str(pred), "--json", str(tmp_path / "aer.json")]) == 0
            scores = json.loads((tmp_path / "aer.json").read_text())
            assert 0 <= scores["aer"] <= 100 and scores["predicted"] > 0, name
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        attention = [np.array(r["attention"]) for r in rows if r.get("attention")]
        assert len(attention) == n
        if name == "local_hard":  # one-hot rows, also in the file a user reads
            assert all(np.all(np.isin(a, (0.0, 1.0))) and np.all(a.sum(1) == 1) for a in attention)
        if name == "sigmoid":  # gates: rows need not sum to one, weights in [0, 1]
            assert all(np.all((a >= 0) & (a <= 1)) for a in attention)
            assert any(not np.allclose(a.sum(1), 1.0, atol=1e-2) for a in attention)
    capsys.readouterr()


def test_compare_and_explore_take_every_new_variant(family_models, corpus_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, family_models.values()), "--src", str(corpus_dir / "test.en"),
                 "--ref", str(corpus_dir / "test.de"), "--gold", str(corpus_dir / "test.align"), "--out", str(out),
                 "--bootstrap", "20", "--beam", "2", "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    variants = sorted(r["variant"] for r in rows)
    assert variants == sorted(["gru 24, luong euclidean top-3", "gru 24, luong pearson max",
                               "gru 24, bahdanau additive sigmoid", "gru 24, luong_local general hard"])
    for r in rows:
        assert 0 <= float(r["aer"]) <= 100 and float(r["attention_entropy"]) >= 0, r["variant"]
    hard = next(r for r in rows if r["variant"].endswith("hard"))
    assert float(hard["attention_entropy"]) < 1e-6  # one-hot rows: no spread at all
    page = tmp_path / "explore.html"
    assert main(["explore", *map(str, family_models.values()), "--src-file", str(corpus_dir / "test.en"),
                 "--ref-file", str(corpus_dir / "test.de"), "--gold", str(corpus_dir / "test.align"),
                 "--out", str(page), "--max-sentences", "5"]) == 0
    html = page.read_text()
    start = html.index('<script id="mt-data" type="application/json">') + len(
        '<script id="mt-data" type="application/json">')
    data = json.loads(html[start:html.index("</script>", start)])
    assert len(data["models"]) == 4 and len(data["sentences"]) == 5
    capsys.readouterr()
