"""mt export --to int8: every model, RNNs included, as int8 weights in safetensors, run with
int8 products; what it cannot honour is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mt.cli.main import main
from mt.config import ExperimentConfig
from mt.export import open_translator
from mt.export.int8 import export_int8, int8_compute
from mt.model_dir import INT8_WEIGHTS, load_int8_dir, load_model_dir, save_model_dir
from mt.models import build_model

from .conftest import ALL_VARIANTS, run_mt, variant_config

SENTENCES = ["The dog sleeps.", "A man calls the woman.", "The old man has seen the small dog today."]


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_variant_exports_to_int8_and_translates_with_int8_products(variant, tokenizers, tmp_path):
    src_tok, tgt_tok = tokenizers
    torch.manual_seed(0)
    config = ExperimentConfig(model=variant_config(variant))
    model = build_model(config.model, len(src_tok), len(tgt_tok)).eval()
    saved = save_model_dir(tmp_path / "model", model, config, src_tok, tgt_tok)
    out = export_int8(saved, tmp_path / "int8")
    info = json.loads((out / "export.json").read_text())
    loaded = load_int8_dir(out, info["aliases"])
    by_itself = load_int8_dir(out)  # the aliases read from export.json
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                 by_itself.model.state_dict().values()))
    # The stored matrices are the originals to within half a step of their row's scale.
    for (name, original), (_, restored) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        if original.dim() == 2 and original.is_floating_point():
            step = original.abs().amax(dim=1, keepdim=True) / 127
            assert bool(((original - restored).abs() <= step / 2 + 1e-7).all()), name
        else:
            assert torch.equal(original, restored), name
    translator = open_translator(str(out))
    assert translator.precision.name == "int8" and translator.model.num_parameters() == model.num_parameters()
    kinds = {type(m).__module__ for m in translator.model.modules()}
    assert any("quantized.dynamic" in k for k in kinds)  # int8 products, not fp32 ones
    for beam in (1, 3):
        result = translator.translate(SENTENCES, beam=beam)
        assert len(result) == 3
        if config.model.attention.type.value != "none":
            assert all(r.attention.shape == (len(r.tgt_pieces), len(r.src_pieces)) for r in result)


def test_int8_is_a_third_of_the_weights_and_keeps_the_probabilities_close(trained_model_dir, corpus_dir, tmp_path):
    out = tmp_path / "int8"
    assert main(["export", str(trained_model_dir), "--to", "int8", "--out", str(out)]) == 0
    full = (trained_model_dir / "model.safetensors").stat().st_size
    assert (out / INT8_WEIGHTS).stat().st_size < 0.4 * full
    lines = (corpus_dir / "test.en").read_text()
    plain = run_mt("translate", str(trained_model_dir), "--precision", "fp32", cwd=tmp_path, stdin=lines)
    int8 = run_mt("translate", str(out), cwd=tmp_path, stdin=lines)
    assert plain.returncode == int8.returncode == 0, int8.stderr
    assert len(int8.stdout.splitlines()) == len(lines.splitlines())  # (a 4-update model's argmax is a coin toss:
    # the quality of int8 is BLEU on Multi30k, docs/lab/benchmarks.md; here, the probabilities it gives a sentence)
    forced = open_translator(str(out)).force_decode(SENTENCES[0], "Der Hund schläft.")
    reference = open_translator(str(trained_model_dir), "cpu", "fp32").force_decode(SENTENCES[0],
                                                                                          "Der Hund schläft.")
    assert forced.score == pytest.approx(reference.score, rel=0.1)
    np.testing.assert_allclose(forced.attention, reference.attention, atol=0.1)


def test_what_int8_cannot_do_is_one_line(trained_model_dir, tmp_path, capsys):
    out = export_int8(trained_model_dir, tmp_path / "int8")

    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
        return err

    (tmp_path / "in.txt").write_text("The dog sleeps.\n")
    assert "runs on the CPU" in error(["translate", str(out), "--input", str(tmp_path / "in.txt"), "--device", "cuda"])
    assert "--precision bf16 does not apply" in error(
        ["translate", str(out), "--input", str(tmp_path / "in.txt"), "--precision", "bf16"])
    assert "needs the model directory it was exported from" in error(
        ["export", str(out), "--to", "int8", "--out", str(tmp_path / "again")])
    assert "is for --to ctranslate2" in error(
        ["export", str(trained_model_dir), "--to", "int8", "--quantization", "float32", "--out", str(tmp_path / "q")])
    (out / INT8_WEIGHTS).write_bytes(b"not safetensors")
    assert "is damaged" in error(["translate", str(out), "--input", str(tmp_path / "in.txt")])
    assert load_model_dir(trained_model_dir).model is not None  # the source is untouched


def test_int8_compute_leaves_the_fp32_model_alone(tokenizers):
    src_tok, tgt_tok = tokenizers
    config = ExperimentConfig(model=variant_config("bahdanau-gru"))
    model = build_model(config.model, len(src_tok), len(tgt_tok)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = int8_compute(model)
    assert quantized is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _quantized_layers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every int8 weight the runner computes with, by its state-dict name (dynamic Linear:
    NAME.weight; dynamic GRU/LSTM: NAME.weight_ih_l0 ...)."""
    from torch.ao.nn.quantized import dynamic as nnqd

    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, nnqd.Linear):
            layers[f"{name}.weight"] = module.weight()
        elif isinstance(module, (nnqd.GRU, nnqd.LSTM)):
            layers.update({f"{name}.{k}": w for k, w in module.get_weight().items()})
    return layers


@pytest.mark.parametrize("variant", ["bahdanau-gru", "luong-cosine-lstm", "transformer"])
def test_the_int8_runner_computes_with_the_stored_integers_and_row_scales(variant, tokenizers, tmp_path):
    """Every quantized layer of a loaded int8 export holds exactly the integers and per-row
    scales the export stored (not torch's own re-quantization of int8 x scale), and
    int8_compute of the fp32 model quantizes to those same integers and scales."""
    from safetensors.torch import load_file
    from torch.ao.nn.quantized import dynamic as nnqd

    src_tok, tgt_tok = tokenizers
    torch.manual_seed(0)
    config = ExperimentConfig(model=variant_config(variant))
    model = build_model(config.model, len(src_tok), len(tgt_tok)).eval()
    out = export_int8(save_model_dir(tmp_path / "model", model, config, src_tok, tgt_tok), tmp_path / "int8")
    aliases = json.loads((out / "export.json").read_text())["aliases"]
    stored = load_file(str(out / INT8_WEIGHTS))
    runner = open_translator(str(out)).model
    assert not any(type(m) in (torch.nn.Linear, torch.nn.GRU, torch.nn.LSTM) for m in runner.modules())
    kinds = {type(m) for m in runner.modules()}
    assert nnqd.Linear in kinds and (nnqd.GRU in kinds or nnqd.LSTM in kinds or variant == "transformer")
    for what, quantized in (("runner", runner), ("int8_compute", int8_compute(model))):
        layers = _quantized_layers(quantized)
        assert len(layers) >= 5, what
        for name, weight in layers.items():
            base = aliases.get(name, name)
            assert torch.equal(weight.int_repr(), stored[f"{base}.int8"]), (what, name)
            assert weight.qscheme() == torch.per_channel_affine and weight.q_per_channel_axis() == 0, (what, name)
            assert torch.equal(weight.q_per_channel_scales().float(), stored[f"{base}.scale"]), (what, name)
            assert not weight.q_per_channel_zero_points().any(), (what, name)
