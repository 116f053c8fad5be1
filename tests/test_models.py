import re
from dataclasses import fields, is_dataclass
from enum import Enum

import pytest
import torch

from mt.config import Arch
from mt.data.batching import collate
from mt.data.tokenizer import EOS
from mt.decoding.search import greedy_search
from mt.models import build_model, select_rows
from mt.models.attention import masked_softmax

from .conftest import ALL_VARIANTS, GATED_VARIANTS, assert_steps_match_forward, variant_config

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
    assert_steps_match_forward(model, collate(SRC, TGT))


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


def _another(value):
    """A value of the same type that is not ``value``."""
    if isinstance(value, Enum):
        return next(member for member in type(value) if member is not value)
    return (not value) if isinstance(value, bool) else value + 1


def _model_keys():
    """Every key of ModelConfig (``attention.score`` for the nested ones) with its default."""
    from mt.config import ModelConfig

    default = ModelConfig()
    for f in fields(ModelConfig):
        value = getattr(default, f.name)
        if is_dataclass(value):
            yield from ((f"{f.name}.{g.name}", getattr(value, g.name)) for g in fields(value))
        else:
            yield f.name, value


def test_each_architecture_has_its_config_and_builder_in_one_table():
    from mt.config import ARCH_CONFIGS, ModelConfig
    from mt.models import ARCHITECTURES

    assert list(ARCHITECTURES) == list(ARCH_CONFIGS) == list(Arch)
    assert {arch: config for arch, (config, _) in ARCHITECTURES.items()} == ARCH_CONFIGS
    flat = {f.name: f.type for f in fields(ModelConfig)}
    for config in ARCH_CONFIGS.values():  # each reads keys of the flat schema, typed alike
        assert {f.name: f.type for f in fields(config)}.items() <= flat.items(), config
    read = {f.name for config in ARCH_CONFIGS.values() for f in fields(config)}
    assert set(flat) - read == {"name", "arch"}  # every other key is some architecture's
    for config in ARCH_CONFIGS.values():  # what one ignores is another's size
        assert all(not config.reads(key) and any(o.reads(key) for o in ARCH_CONFIGS.values())
                   for key in config.ignores), config


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_each_architecture_refuses_every_key_of_another_naming_it(arch):
    from mt.config import ARCH_CONFIGS, AttentionConfig, ModelConfig
    from mt.errors import ConfigError

    config = ARCH_CONFIGS[Arch(arch)]
    refused = [(key, default) for key, default in _model_keys() if config.refuses(key)]
    if arch == "rnn":  # every Transformer key is shared by a sweep over both (model.heads=8), as ever
        assert refused == []
        return
    assert {key for key, _ in refused} == {"attention.score", "attention.normalizer", "attention.top_k",
                                           "attention.hard"}
    for key, default in refused:
        value = _another(default)
        group, _, leaf = key.rpartition(".")
        setting = {group: AttentionConfig(**{leaf: value})} if group else {key: value}
        shown = value.value if isinstance(value, Enum) else str(value).lower()
        owner = "model=transformer" if arch == "rnn" else "an rnn_* model"
        with pytest.raises(ConfigError, match=rf"^model\.{key}={shown} shapes .*: drop it or pick {re.escape(owner)}$"):
            ModelConfig(arch=Arch(arch), **setting)
        if group == "attention" and arch == "transformer":  # the wording of attention keys
            with pytest.raises(ConfigError, match=re.escape(
                    f"model.{key}={shown} shapes the RNN decoders' attention; the Transformer's is scaled dot-product "
                    "softmax over heads: drop it or pick an rnn_* model")):
                ModelConfig(arch=Arch(arch), **setting)
    kept = [key for key, _ in _model_keys() if not config.refuses(key)]
    assert "hidden_dim" in kept and "dropout" in kept and "name" in kept


def test_the_other_architectures_keys_are_refused_on_the_command_line_and_shared_sizes_are_not():
    from mt.errors import ConfigError
    from mt.presets import compose

    with pytest.raises(ConfigError, match=re.escape(
            "model.attention.score=dot shapes the RNN decoders' attention; the Transformer's is scaled dot-product "
            "softmax over heads: drop it or pick an rnn_* model")):
        compose(["model=transformer", "model.attention.score=dot"])
    # A sweep over both architectures shares the other's keys (-m model=rnn_bahdanau,transformer model.heads=8).
    assert compose(["model=rnn_bahdanau", "model.heads=8"]).model.heads == 8
    assert compose(["model=transformer", "model.cell=lstm", "model.attention.type=none"]).model.typed().heads == 4
    # One list of sizes serves a sweep over architectures (tests' TINY_TRAIN, docs/lab/benchmarks.md).
    sizes = ["model.emb_dim=16", "model.hidden_dim=24", "model.enc_hidden_dim=12", "model.attention.dim=16",
             "model.ff_dim=32"]
    assert compose(["model=transformer", *sizes]).model.ff_dim == 32
    assert compose(["model=rnn_bahdanau", *sizes]).model.emb_dim == 16


def test_every_preset_composes_under_its_architecture():
    from mt.presets import CONF_DIR, compose

    presets = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    assert "transformer" in presets and "rnn_bahdanau" in presets
    for preset in presets:
        model = compose([f"model={preset}"]).model
        assert model.name == preset and model.typed() is not None


def test_a_saved_config_with_a_key_its_architecture_never_read_still_loads(tmp_path):
    """A Transformer's config may hold an RNN's value (a sweep shared it): it loads, unread."""
    from mt.config import Cell, ExperimentConfig, ModelConfig, load_yaml, to_yaml
    from mt.errors import ConfigError

    text = to_yaml(ExperimentConfig(model=ModelConfig(name="t", arch=Arch.transformer, emb_dim=64)))
    old = text.replace("cell: gru", "cell: lstm").replace("window: 10", "window: 3")
    assert old != text and "emb_dim: 64" in old
    (tmp_path / "config.yaml").write_text(old)
    model = load_yaml(tmp_path / "config.yaml", ExperimentConfig).model
    assert model.cell is Cell.lstm and model.attention.window == 3 and model.emb_dim == 64  # kept, unread
    (tmp_path / "config.yaml").write_text(old.replace("cell: lstm", "cel: lstm"))
    with pytest.raises(ConfigError, match="cel"):  # a misspelt key is still refused
        load_yaml(tmp_path / "config.yaml", ExperimentConfig)
