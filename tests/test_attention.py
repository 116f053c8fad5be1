"""The attention family: normalisers, scores, local windows, config checks."""

import pytest
import torch

from mt.config import AttentionConfig, AttentionType, ModelConfig, Score
from mt.errors import ConfigError
from mt.models.attention import Attention, masked_softmax, sparsemax
from mt.presets import compose


def test_sparsemax_matches_the_closed_form_and_has_exact_zeros():
    z = torch.tensor([[2.0, 1.0, -1.0, 0.5]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    # support {0, 1}: tau = (2 + 1 - 1) / 2 = 1 -> [1, 0, 0, 0]; with 1.8: tau = 0.9 -> [0.9+.., ...]
    assert sparsemax(z, mask).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    z = torch.tensor([[1.0, 0.8, 0.1]])
    p = sparsemax(z, torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(p, torch.tensor([[0.6, 0.4, 0.0]]))


def test_sparsemax_respects_the_mask_and_sums_to_one():
    z = torch.randn(5, 3, 7)
    mask = torch.rand(5, 7) > 0.3
    mask[:, 0] = True
    p = sparsemax(z, mask)
    torch.testing.assert_close(p.sum(-1), torch.ones(5, 3))
    assert torch.all(p.masked_select(~mask.unsqueeze(1).expand_as(p)) == 0)
    assert (p == 0).any() and torch.all(p >= 0)


def test_sparsemax_gradient_is_the_sparsemax_jacobian():
    z = torch.randn(3, 6, dtype=torch.double, requires_grad=True)
    mask = torch.ones(3, 6, dtype=torch.bool)
    torch.autograd.gradcheck(lambda x: sparsemax(x, mask), (z,))


def test_sparsemax_equals_softmax_limit_behaviour_on_ties():
    z = torch.zeros(2, 4)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    torch.testing.assert_close(sparsemax(z, mask), masked_softmax(z, mask))


@pytest.mark.parametrize("score", ["additive", "concat", "dot", "general", "scaled_dot", "cosine"])
def test_every_score_gives_weights_over_real_tokens_only(score):
    torch.manual_seed(0)
    attention = Attention(8, 8, score=score, attn_dim=5)
    values = torch.randn(2, 6, 8)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    context, weights = attention(torch.randn(2, 4, 8), values, attention.precompute(values), mask)
    assert context.shape == (2, 4, 8) and weights.shape == (2, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    assert torch.all(weights[1, :, 3:] == 0)
    # One query per sentence gives the same as the first of several.
    single_context, single = attention(torch.randn(2, 8), values, None, mask)
    assert single.shape == (2, 6) and single_context.shape == (2, 8)


def test_local_p_puts_all_mass_inside_the_window_around_its_position():
    torch.manual_seed(1)
    window = 2
    attention = Attention(8, 8, score="general", attn_dim=5, window=window)
    values = torch.randn(3, 30, 8)
    mask = torch.ones(3, 30, dtype=torch.bool)
    mask[2, 12:] = False
    query = torch.randn(3, 5, 8) * 3
    _, weights = attention(query, values, None, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    lengths = mask.sum(-1, keepdim=True).float()
    centre = (lengths - 1) * torch.sigmoid(attention.position(query).squeeze(-1))  # [3, 5]
    positions = torch.arange(30).view(1, 1, -1).float()
    outside = (positions - centre.unsqueeze(-1)).abs() > window
    assert torch.all(weights.masked_select(outside) == 0)
    assert torch.all((weights > 0).sum(-1) <= 2 * window + 1)
    assert torch.all(weights[2, :, 12:] == 0)


def test_dot_scores_need_matching_sizes_and_say_how_to_fix_it():
    with pytest.raises(ConfigError, match="model.enc_hidden_dim=128"):
        ModelConfig(hidden_dim=256, bidirectional=True,
                    attention=AttentionConfig(type=AttentionType.luong, score=Score.dot))
    ModelConfig(hidden_dim=256, enc_hidden_dim=128, attention=AttentionConfig(type=AttentionType.luong, score=Score.dot))


@pytest.mark.parametrize("overrides, message", [
    (["model=rnn_luong", "model.attention.score=generall"], "Invalid value 'generall'"),
    (["model=rnn_bahdanau", "model.attention.normaliser=sparsemax"], "normaliser"),
    (["model=rnn_luong_local", "model.attention.window=0"], "model.attention.window must be at least 1"),
])
def test_misspelt_attention_settings_fail_at_config_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


@pytest.mark.parametrize("preset", ["rnn_noattn", "rnn_bahdanau", "rnn_luong", "rnn_luong_dot", "rnn_luong_general",
                                    "rnn_luong_concat", "rnn_luong_local"])
def test_every_preset_composes_and_the_documented_overrides_work(preset):
    cfg = compose([f"model={preset}"])
    assert cfg.model.name == preset
    assert compose(["model=rnn_luong", "model.attention.score=general"]).model.attention.score is Score.general
    sparse = compose(["model=rnn_bahdanau", "model.attention.normalizer=sparsemax"]).model.attention
    assert sparse.normalizer.value == "sparsemax"
