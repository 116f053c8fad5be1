"""Precision chosen by the hardware: auto, fp32, bf16 (native or emulated), fp16 (CUDA only)."""

import json
import logging
import os
import warnings

import pytest
import torch
from omegaconf import OmegaConf

from mt import precision as precision_module
from mt.config import ExperimentConfig, load_yaml
from mt.data.batching import collate
from mt.errors import ConfigError
from mt.export import open_translator
from mt.models import build_model
from mt.precision import cpu_bf16_support, kernel_cache_capacity, resolve_precision
from mt.presets import compose
from mt.training.pipeline import run_training
from mt.training.trainer import sequence_loss

from .conftest import TINY_TRAIN, tiny_model_config

CPU = torch.device("cpu")


def _pretend(monkeypatch, native: bool) -> None:
    """Replaces the hardware detection, so both answers are tested on any machine (and lifts
    the suite's MT_PRECISION=fp32, so that auto decides)."""
    monkeypatch.delenv("MT_PRECISION", raising=False)
    monkeypatch.setattr(precision_module, "bf16_support",
                        lambda device: (native, "pretend native bf16" if native else "pretend no native bf16"))


def test_auto_picks_bf16_only_where_the_hardware_computes_it(monkeypatch):
    _pretend(monkeypatch, native=False)
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == "fp32" and chosen.dtype is None
    assert "pretend no native bf16" in chosen.reason
    _pretend(monkeypatch, native=True)
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == "bf16" and chosen.dtype is torch.bfloat16 and chosen.native
    assert "auto" in chosen.describe()


def test_explicit_choices(monkeypatch):
    _pretend(monkeypatch, native=False)
    assert resolve_precision("fp32", CPU).name == "fp32"
    with pytest.warns(UserWarning, match="many times slower"):
        emulated = resolve_precision("bf16", CPU)
    assert emulated.name == "bf16" and not emulated.native
    _pretend(monkeypatch, native=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CPU).native
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("fp8", CPU)


def test_cpu_detection_uses_torch_and_answers_with_a_reason():
    native, reason = cpu_bf16_support()
    assert isinstance(native, bool)
    has_feature = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert native == (has_feature and precision_module.onednn_isa_cap() is None)
    assert ("AMX" in reason) or ("AVX-512-BF16" in reason)


@pytest.mark.parametrize("cap, native", [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
                                         ("AVX512_CORE_AMX", True), ("", True)])
def test_a_onednn_isa_cap_below_bf16_makes_bf16_emulated(monkeypatch, cap, native):
    """ONEDNN_MAX_CPU_ISA=AVX2 on a CPU with AVX-512-BF16 runs bf16 products emulated, hundreds
    of times slower: auto must not pick bf16 there."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    cpu_bf16_support.cache_clear()
    try:
        answer, reason = cpu_bf16_support()
    finally:
        cpu_bf16_support.cache_clear()
    assert answer is native
    assert (f"ONEDNN_MAX_CPU_ISA={cap.upper()}" in reason) is not native


def test_mt_precision_in_the_environment_stands_in_for_auto(monkeypatch):
    _pretend(monkeypatch, native=False)
    monkeypatch.setenv("MT_PRECISION", "bf16")
    with pytest.warns(UserWarning, match="many times slower"):
        chosen = resolve_precision("auto", CPU)
    assert chosen.name == "bf16" and not chosen.native and "MT_PRECISION=bf16" in chosen.reason
    assert resolve_precision("fp32", CPU).name == "fp32"  # an explicit choice wins
    _pretend(monkeypatch, native=True)
    monkeypatch.setenv("MT_PRECISION", "FP32")
    assert resolve_precision("auto", CPU).name == "fp32"
    monkeypatch.setenv("MT_PRECISION", "fast")
    with pytest.raises(ConfigError, match="MT_PRECISION='fast' in the environment: it must be one of fp32, bf16"):
        resolve_precision("auto", CPU)


def _available_precisions() -> list[str]:
    """Every precision this machine can train in (bf16 runs everywhere on the CPU: natively or emulated)."""
    return ["fp32", "bf16"] + (["fp16"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("name", _available_precisions())
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_an_lstm_model_trains_under_every_precision_the_machine_offers(tokenizers, name, attention):
    """On a CPU without native bf16, oneDNN has no bf16 LSTM ("could not create a primitive
    descriptor"); the documented fall-back runs the LSTM's recurrence in fp32 there."""
    src_tok, tgt_tok = tokenizers
    torch.manual_seed(0)
    model = build_model(tiny_model_config(attention=attention, cell="lstm"), len(src_tok), len(tgt_tok)).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emulated bf16 warns; that is tested above
        chosen = resolve_precision(name, CPU)
    src = src_tok.encode(["The man calls the woman.", "A dog sleeps in the house today."])
    tgt = tgt_tok.encode(["Der Mann ruft die Frau an.", "Ein Hund schläft heute im Haus."])
    batch = collate(src, tgt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(4):
        loss = sequence_loss(model, batch, 0.0, chosen)
        optimizer.zero_grad()
        (loss / batch.n_tgt_tokens).backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_a_run_says_and_records_its_precision(corpus_dir, tmp_path, monkeypatch, caplog):
    _pretend(monkeypatch, native=False)
    cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}"])
    assert cfg.train.precision.value == "auto"  # the one default, in mt/config.py
    with caplog.at_level(logging.INFO, logger="mt.train"):
        run_training(cfg, tmp_path / "run", progress="off")
    assert "precision fp32: auto: pretend no native bf16" in caplog.text
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["precision"] == "fp32" for r in records)
    saved = OmegaConf.load(tmp_path / "run" / "model" / "config.yaml")
    assert saved.train.precision == "auto"  # a moved model decides again on its new hardware


def test_bad_precision_values_stop_at_start():
    with pytest.raises(ConfigError, match="precision"):
        compose(["train.precision=fp8"])
    with pytest.raises(ConfigError, match="train.bf16 was replaced by train.precision"):
        compose(["train.bf16=true"])  # the old key is gone; the message names its replacement


def test_model_dirs_saved_with_the_old_bf16_key_still_load(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  bf16: true\n  epochs: 3\n")
    config = load_yaml(path, ExperimentConfig)
    assert config.train.precision.value == "auto" and config.train.epochs == 3


def test_translation_follows_the_precision(trained_model_dir, monkeypatch):
    _pretend(monkeypatch, native=True)
    translator = open_translator(str(trained_model_dir), precision="auto")
    assert translator.precision.name == "bf16"
    out = translator.translate(["The man calls the woman.", ""], beam=2)
    assert len(out) == 2 and out[1].text == ""
    assert out[0].attention is not None and out[0].attention.dtype.name == "float32"
    _pretend(monkeypatch, native=False)
    assert open_translator(str(trained_model_dir)).precision.name == "fp32"


def test_bf16_on_the_cpu_bounds_onednn_kernel_caches_unless_the_user_did(monkeypatch):
    """oneDNN and ideep keep 1,024 kernels each, made per shape: in bf16 a training process grew
    by 1 GB over fp32 in 60 Transformer updates. bf16 on the CPU caps both at 64."""
    for name in precision_module.KERNEL_CACHE_ENV:
        monkeypatch.delenv(name, raising=False)
    _pretend(monkeypatch, native=False)
    resolve_precision("auto", CPU)  # fp32 here: nothing to bound
    assert not any(name in os.environ for name in precision_module.KERNEL_CACHE_ENV)
    _pretend(monkeypatch, native=True)
    assert resolve_precision("auto", CPU).name == "bf16"
    assert [os.environ[n] for n in precision_module.KERNEL_CACHE_ENV] == ["64", "64"]
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")
    resolve_precision("bf16", CPU)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "512"  # the user's own value stays


class _Resolved(Exception):
    pass


@pytest.mark.parametrize("model, bound", [("transformer", "16"), ("rnn_bahdanau", "64")])
def test_training_bounds_the_kernel_caches_by_architecture(corpus_dir, tmp_path, monkeypatch, model, bound):
    """The Transformer trains no slower with 16 kernels per cache and 220 MiB less; the
    RNNs lose 9% there (studies/time_to_quality), so they keep 64. The bound is set when training
    resolves its precision, before the first bf16 kernel."""
    for name in precision_module.KERNEL_CACHE_ENV:
        monkeypatch.delenv(name, raising=False)
    _pretend(monkeypatch, native=True)
    resolved = []

    def resolve_and_stop(requested, device, kernel_cache=precision_module.KERNEL_CACHE_CAPACITY):
        resolved.append(resolve_precision(requested, device, kernel_cache))
        raise _Resolved

    monkeypatch.setattr("mt.training.pipeline.resolve_precision", resolve_and_stop)
    cfg = compose([f"model={model}", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(_Resolved):
        run_training(cfg, tmp_path / "run", progress="off")
    assert resolved[0].name == "bf16"
    assert [os.environ[n] for n in precision_module.KERNEL_CACHE_ENV] == [bound, bound]
    assert kernel_cache_capacity(cfg.model.arch.value) == int(bound)

