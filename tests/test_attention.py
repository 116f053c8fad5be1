"""The attention family: normalisers, scores, local windows, config checks."""

import pytest
import torch

from mt.config import EQUAL_SIZE_SCORES, AttentionConfig, AttentionType, ModelConfig, Score
from mt.data.batching import collate
from mt.errors import ConfigError
from mt.models.attention import SCORES, Attention, make_attention, masked_softmax, sparsemax
from mt.models.rnn import Placement, RNNDecoder, RNNEncoder, RNNSeq2Seq
from mt.presets import compose

from .conftest import assert_steps_match_forward


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


@pytest.mark.parametrize("score", sorted(SCORES))
def test_every_score_gives_weights_over_real_tokens_only(score):
    torch.manual_seed(0)
    attention = make_attention(8, 8, score=score, attn_dim=5)
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
    attention = make_attention(8, 8, score="general", attn_dim=5, window=window)
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


def test_the_schema_names_the_scores_of_the_table():
    """mt.config lists the score names (the schema may not import the models); the table decides the rest."""
    assert [s.value for s in Score] == list(SCORES)
    assert {s.value for s in EQUAL_SIZE_SCORES} == {name for name, kind in SCORES.items() if kind.equal_sizes}
    for name, kind in SCORES.items():  # the start-up check and the module agree on which need one size
        luong = AttentionConfig(type=AttentionType.luong, score=Score(name))
        if kind.equal_sizes:
            with pytest.raises(ConfigError, match=f"the {name} score compares decoder states"):
                ModelConfig(hidden_dim=16, enc_hidden_dim=16, attention=luong)
            with pytest.raises(ValueError, match=f"the {name} score needs query and source states of one size"):
                make_attention(16, 32, name)
        else:
            ModelConfig(hidden_dim=16, enc_hidden_dim=16, attention=luong)
            make_attention(16, 32, name)
    with pytest.raises(ValueError, match="unknown attention score 'toy'"):
        make_attention(8, 8, "toy")


class Toy(Attention):
    """A score written for this test: -|q - h|_1, precomputed nothing, a learned bias b."""

    equal_sizes = True

    def init_score(self, query_dim: int, value_dim: int, attn_dim: int) -> None:
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def score(self, query, values, keys):
        return -(query.unsqueeze(2) - values.unsqueeze(1)).abs().sum(-1) + self.bias


def test_a_new_score_is_one_class_and_one_entry_in_the_table():
    """Nothing but the table learns of the toy score, and attention, an RNN decoder and search take it."""
    scores = {**SCORES, "toy": Toy}
    torch.manual_seed(0)
    attention = make_attention(6, 6, "toy", attn_dim=5, top_k=2, scores=scores)
    assert isinstance(attention, Toy) and "toy" not in SCORES
    assert [name for name, _ in attention.named_parameters()] == ["bias"]
    values, query = torch.randn(2, 4, 6), torch.randn(2, 3, 6)
    mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    _, weights = attention(query, values, None, mask)
    expected = masked_softmax(-(query.unsqueeze(2) - values.unsqueeze(1)).abs().sum(-1), mask)
    assert torch.all((weights > 0).sum(-1) == 2) and torch.all(weights[1, :, 3] == 0)
    torch.testing.assert_close(weights.argmax(-1), expected.argmax(-1))
    with pytest.raises(ValueError, match="the toy score needs query and source states of one size"):
        make_attention(6, 12, "toy", scores=scores)
    # In a whole model: Luong attention with the toy score, trained forward equal to step-by-step decoding.
    encoder = RNNEncoder(30, 8, 3, 1, True, "gru", 0.0)
    decoder = RNNDecoder(40, 8, 6, 1, "gru", 0.0, encoder.out_dim, make_attention(6, 6, "toy", scores=scores),
                         Placement.luong)
    model = RNNSeq2Seq(encoder, decoder, 30, 40).eval()
    assert_steps_match_forward(model, collate([[5, 6, 7, 8], [9, 10]], [[11, 12], [13, 14, 15]]))


def test_parameter_names_are_those_saved_models_hold():
    """A saved model's state dict names each score's parameters at the attention's own level, in this order."""
    saved = ("additive", "concat", "dot", "general", "scaled_dot", "cosine", "euclidean", "pearson")  # a new one adds none
    names = {score: [name for name, _ in make_attention(8, 8, score, window=2).named_parameters()] for score in saved}
    position = ["position.0.weight", "position.0.bias", "position.2.weight", "position.2.bias"]
    additive = ["key_proj.weight", "query_proj.weight", "query_proj.bias", "energy.weight", *position]
    assert names == {"additive": additive, "concat": additive, "dot": position, "general": ["key_proj.weight", *position],
                     "scaled_dot": position, "cosine": ["log_scale", *position], "euclidean": position,
                     "pearson": ["log_scale", *position]}


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
