import pytest
import torch

from mt.config import AttentionReduction, DataConfig, ExperimentConfig, TokenizerConfig
from mt.data.batching import collate
from mt.errors import ConfigError
from mt.model_dir import load_model_dir, save_model_dir
from mt.models import build_model
from mt.presets import compose

from .conftest import tiny_transformer_config

SRC = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
TGT = [[20, 21, 22], [23, 24, 25, 26], [27]]


def _model(**kw):
    torch.manual_seed(0)
    return build_model(tiny_transformer_config(**kw), 40, 50).eval()


def test_weight_returning_path_equals_the_fast_sdpa_path():
    model = _model()
    batch = collate(SRC, TGT)
    fast, none = model(batch.src, batch.src_mask, batch.tgt_in, return_attention=False)
    slow, attn = model(batch.src, batch.src_mask, batch.tgt_in, return_attention=True)
    assert none is None and attn is not None
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_every_layer_and_head_comes_out_and_reductions_are_means():
    batch = collate(SRC, TGT)
    for reduction in AttentionReduction:
        model = _model(attention_reduction=reduction)
        maps = model.attention_maps(batch.src, batch.src_mask, batch.tgt_in)
        assert maps.shape == (3, 2, 4, 5, 5)  # [batch, layers, heads, tgt, src]
        torch.testing.assert_close(maps.sum(-1), torch.ones(3, 2, 4, 5))
        assert torch.all(maps[1, ..., 2:] == 0)
        _, reduced = model(batch.src, batch.src_mask, batch.tgt_in)
        expected = {AttentionReduction.last_layer: maps[:, -1].mean(1), AttentionReduction.all_layers: maps.mean((1, 2)),
                    AttentionReduction.one_head: maps[:, 0, 0]}[reduction]  # one_head: head 0 of the penultimate
        torch.testing.assert_close(reduced, expected)


@pytest.mark.parametrize("layer, head", [(-2, 0), (1, 3), (-1, 2)])
def test_one_head_is_that_head_in_training_and_in_each_decoder_step(layer, head):
    """The supervised head (Garg et al.) is the map forward returns, and incremental decoding
    returns the same rows, so translate, align and the heatmaps read the head that was trained."""
    model = _model(attention_reduction=AttentionReduction.one_head, alignment_layer=layer, alignment_head=head)
    batch = collate(SRC, TGT)
    maps = model.attention_maps(batch.src, batch.src_mask, batch.tgt_in)
    _, reduced = model(batch.src, batch.src_mask, batch.tgt_in)
    torch.testing.assert_close(reduced, maps[:, layer, head])
    memory = model.encode(batch.src, batch.src_mask)
    state = model.init_state(memory)
    for step in range(batch.tgt_in.size(1)):
        _, state, attn = model.decode_step(memory, state, batch.tgt_in[:, step])
        torch.testing.assert_close(attn, reduced[:, step], atol=1e-5, rtol=1e-5)


def test_one_head_names_a_layer_and_head_that_exist():
    with pytest.raises(ConfigError, match="model.alignment_layer=2 does not exist: the decoder has 2 layers"):
        tiny_transformer_config(attention_reduction=AttentionReduction.one_head, alignment_layer=2)
    with pytest.raises(ConfigError, match="model.alignment_head=4 does not exist: each layer has 4 heads"):
        tiny_transformer_config(attention_reduction=AttentionReduction.one_head, alignment_head=4)
    tiny_transformer_config(alignment_head=9)  # read only by one_head


def test_ctranslate2_export_refuses_maps_it_cannot_return():
    from mt.errors import MTError
    from mt.export.ctranslate2 import exportable

    for reduction, head in ((AttentionReduction.all_layers, 0), (AttentionReduction.one_head, 1)):
        with pytest.raises(MTError, match="CTranslate2 can only return the mean of the first heads of one layer"):
            exportable(ExperimentConfig(model=tiny_transformer_config(attention_reduction=reduction, alignment_head=head)))
    for reduction in (AttentionReduction.last_layer, AttentionReduction.one_head):
        exportable(ExperimentConfig(model=tiny_transformer_config(attention_reduction=reduction)))


def test_tied_and_shared_embeddings_are_one_tensor_and_survive_saving(tmp_path, tokenizers):
    src_tok, _ = tokenizers
    torch.manual_seed(0)
    config = ExperimentConfig(data=DataConfig(tokenizer=TokenizerConfig(joint=True)),
                              model=tiny_transformer_config(share_embeddings=True, tie_output=True))
    model = build_model(config.model, len(src_tok), len(src_tok)).eval()
    assert model.src_embed.tokens.weight is model.tgt_embed.tokens.weight is model.output.weight
    path = save_model_dir(tmp_path / "model", model, config, src_tok, src_tok)
    loaded = load_model_dir(path).model
    assert loaded.src_embed.tokens.weight is loaded.output.weight
    batch = collate([[5, 6, 7]], [[8, 9]])
    torch.testing.assert_close(model(batch.src, batch.src_mask, batch.tgt_in)[0],
                               loaded(batch.src, batch.src_mask, batch.tgt_in)[0])


def test_shared_embeddings_need_a_joint_vocabulary():
    with pytest.raises(ConfigError, match="data.tokenizer.joint=true"):
        compose(["model=transformer", "model.share_embeddings=true"])
    assert compose(["model=transformer", "model.share_embeddings=true", "data.tokenizer.joint=true"])


def test_heads_must_divide_the_model_size():
    with pytest.raises(ConfigError, match="multiple of model.heads"):
        compose(["model=transformer", "model.heads=5"])


def test_positions_beyond_the_table_are_a_clear_error():
    model = _model(max_positions=8)
    batch = collate([list(range(5, 15))])
    with pytest.raises(ValueError, match="max_positions"):
        model.encode(batch.src, batch.src_mask)


def test_padding_row_of_the_embeddings_is_zero_so_a_tied_output_gives_pad_no_logit():
    from mt.data.tokenizer import PAD

    for kw in ({}, {"share_embeddings": True}):
        torch.manual_seed(0)
        model = build_model(tiny_transformer_config(**kw), 40, 40)
        assert model.src_embed.tokens.weight[PAD].abs().max() == 0
        assert model.tgt_embed.tokens.weight[PAD].abs().max() == 0


def test_a_line_longer_than_max_positions_is_cut_with_a_warning_and_the_rest_translated(tokenizers, caplog):
    from mt.decoding.translator import Translator

    src_tok, tgt_tok = tokenizers
    torch.manual_seed(0)
    model = build_model(tiny_transformer_config(max_positions=16), len(src_tok), len(tgt_tok)).eval()
    translator = Translator(model, src_tok, tgt_tok)
    long = " ".join(["the dog sleeps"] * 20)
    assert len(src_tok.encode([long])[0]) > 16
    lines = ["The dog sleeps.", long, "A child laughs."]
    for beam in (1, 3):
        with caplog.at_level("WARNING", logger="mt.translate"):
            out = translator.translate(lines, beam=beam)
        assert len(out) == 3 and len(out[1].src_pieces) == 16
        assert all(len(t.tgt_ids) <= 16 for t in out)
        assert "line 2:" in caplog.text and "model.max_positions=16" in caplog.text
        caplog.clear()
    # Forced decoding (mt align) leaves a pair it cannot read unaligned instead of failing.
    forced = translator.force_decode_ids(src_tok.encode(lines), tgt_tok.encode(["Der Hund schläft."] * 3))
    assert forced[1] == (0.0, None) and forced[0][1] is not None


def test_activation_checkpointing_gives_the_same_loss_and_gradients_and_keeps_less():
    """Recomputed layers reuse the first pass's dropout masks: same numbers, fewer saved tensors."""
    from mt.training.trainer import sequence_loss

    batch = collate(SRC, TGT)
    results = []
    for on in (False, True):
        model = _model(dropout=0.3).train()
        model.set_activation_checkpointing(on)
        torch.manual_seed(5)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t.numel()) or t, lambda t: t):
            loss = sequence_loss(model, batch, 0.1)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()], sum(saved)))
    (loss_off, grads_off, saved_off), (loss_on, grads_on, saved_on) = results
    torch.testing.assert_close(loss_on, loss_off)
    for on, off in zip(grads_on, grads_off):
        torch.testing.assert_close(on, off, rtol=1e-5, atol=1e-6)
    assert saved_on < saved_off / 2


def test_activation_checkpointing_is_for_the_transformer_only():
    with pytest.raises(ConfigError, match="train.activation_checkpointing is for the Transformer"):
        compose(["model=rnn_bahdanau", "train.activation_checkpointing=true"])
    assert compose(["model=transformer", "train.activation_checkpointing=true"]).train.activation_checkpointing


def test_attention_and_activation_dropout_fall_where_they_say_and_default_to_model_dropout():
    from mt.models.transformer import FeedForward, MultiHeadAttention

    def rates(model):
        attention = {m.dropout for m in model.modules() if isinstance(m, MultiHeadAttention)}
        activation = {m[2].p for m in model.modules() if isinstance(m, FeedForward)}
        return attention, activation, {model.src_embed.dropout.p, model.encoder[0].dropout.p}

    split = build_model(tiny_transformer_config(dropout=0.3, attention_dropout=0.1, activation_dropout=0.0), 40, 40)
    assert rates(split) == ({0.1}, {0.0}, {0.3})
    assert rates(build_model(tiny_transformer_config(dropout=0.3), 40, 40)) == ({0.3}, {0.3}, {0.3})
    batch = collate([[5, 6, 7, 8, 9]], [[5, 6, 7]])
    for kw, random in (({"attention_dropout": 0.5}, True), ({"activation_dropout": 0.5}, True), ({}, False)):
        model = build_model(tiny_transformer_config(dropout=0.0, **kw), 40, 40).train()
        first, second = (model(batch.src, batch.src_mask, batch.tgt_in)[0] for _ in range(2))
        assert (not torch.equal(first, second)) is random, kw


def test_attention_and_activation_dropout_are_checked_and_left_to_the_transformer():
    with pytest.raises(ConfigError, match=r"model.attention_dropout must be in \[0, 1\)"):
        compose(["model=transformer", "model.attention_dropout=1.0"])
    assert compose(["model=transformer", "model.activation_dropout=0.2"]).model.activation_dropout == 0.2
    rnn = compose(["model=rnn_bahdanau", "model.attention_dropout=0.2"]).model  # a sweep over both shares it
    assert rnn.unread() == ["model.attention_dropout=0.2"]
