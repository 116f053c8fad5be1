import pytest
import torch

from mt.data.batching import collate
from mt.data.tokenizer import EOS
from mt.decoding.search import greedy_search
from mt.models import build_model, select_rows
from mt.models.attention import masked_softmax

from .conftest import ALL_VARIANTS, GATED_VARIANTS, variant_config

SRC = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
TGT = [[20, 21, 22], [23, 24, 25, 26], [27]]


def test_masked_softmax_gives_exact_zeros_on_padding():
    scores = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    weights = masked_softmax(scores, mask)
    assert torch.all(weights[0, :, 2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))


def test_attention_rows_sum_to_one_with_zero_weight_on_padding(model, request):
    batch = collate(SRC, TGT)
    logits, attn = model(batch.src, batch.src_mask, batch.tgt_in)
    assert logits.shape == (3, 5, 50)
    assert (attn is None) == ("noattn" in request.node.callspec.id)
    if attn is None:
        return
    assert attn.shape == (3, 5, 5)  # [batch, tgt_len, src_len]
    if request.node.callspec.id in GATED_VARIANTS:  # gates in [0, 1], the strongest 1 under max
        assert torch.all((attn >= 0) & (attn <= 1))
    else:
        torch.testing.assert_close(attn.sum(-1), torch.ones(3, 5))
    if "hard" in request.node.callspec.id:  # one position per step
        assert torch.all((attn == 0) | (attn == 1)) and torch.all(attn.sum(-1) == 1)
    assert torch.all(attn.masked_select(~batch.src_mask.unsqueeze(1).expand_as(attn)) == 0)


def test_step_by_step_decoding_equals_teacher_forced_forward(model):
    batch = collate(SRC, TGT)
    logits, attn = model(batch.src, batch.src_mask, batch.tgt_in)
    memory = model.encode(batch.src, batch.src_mask)
    state = model.init_state(memory)
    for t in range(batch.tgt_in.size(1)):
        step_logits, state, step_attn = model.decode_step(memory, state, batch.tgt_in[:, t])
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-5)
        if attn is not None:
            torch.testing.assert_close(step_attn, attn[:, t], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_sentence_translation(model):
    alone = collate(SRC[1:2], TGT[1:2])
    padded = collate(SRC, TGT)
    logits_alone, _ = model(alone.src, alone.src_mask, alone.tgt_in)
    logits_padded, _ = model(padded.src, padded.src_mask, padded.tgt_in)
    torch.testing.assert_close(logits_padded[1, :5], logits_alone[0], atol=1e-5, rtol=1e-5)


def test_state_rows_can_be_selected_for_beam_search(model):
    batch = collate(SRC)
    memory = model.encode(batch.src, batch.src_mask)
    index = torch.tensor([2, 2, 0])
    picked = select_rows(memory, index)
    assert all(v.size(0) == 3 for v in picked.values())
    torch.testing.assert_close(picked["states"][0], memory["states"][2])


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_each_model_overfits_a_handful_of_pairs(variant):
    torch.manual_seed(0)
    model = build_model(variant_config(variant), 40, 50)
    batch = collate(SRC, TGT)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(120):
        logits, _ = model(batch.src, batch.src_mask, batch.tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), batch.tgt_out.reshape(-1), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    hyps = greedy_search(model, batch.src, batch.src_mask, max_len=10)
    assert [h.tokens for h in hyps] == TGT
    assert loss.item() < 0.05


def test_unknown_variant_fails_at_config_not_at_build():
    from mt.config import AttentionConfig, ModelConfig
    from mt.errors import ConfigError

    with pytest.raises(ConfigError, match="model.dropout"):
        ModelConfig(dropout=1.5)
    with pytest.raises(ConfigError, match="attention.dim"):
        AttentionConfig(dim=0)


def test_greedy_output_stops_at_eos_and_has_one_attention_row_per_token(model):
    batch = collate(SRC)
    for hyp, src in zip(greedy_search(model, batch.src, batch.src_mask, max_len=6), SRC):
        assert EOS not in hyp.tokens and len(hyp.tokens) <= 6
        if hyp.attention is not None:
            assert hyp.attention.shape[1] == len(src)
            assert hyp.attention.shape[0] == len(hyp.tokens) + hyp.finished


def test_every_attention_type_has_a_decoder_placement_and_an_unknown_one_fails():
    from mt.config import AttentionType
    from mt.models.rnn import Placement

    assert {t: Placement.of(t) for t in AttentionType} == {
        AttentionType.none: Placement.none, AttentionType.bahdanau: Placement.bahdanau,
        AttentionType.luong: Placement.luong, AttentionType.luong_local: Placement.luong}
    with pytest.raises(ValueError, match="no decoder placement"):
        Placement.of("monotonic")
