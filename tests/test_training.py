"""The training loop people can trust: determinism, kill and resume, divergence, unsafe state."""

import json
import logging
import os
import pickle
import re
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mt.errors import MTError
from mt.presets import compose
from mt.training import trainer as trainer_module
from mt.training.checkpoint import load_checkpoint
from mt.training.pipeline import run_training

from .conftest import TINY_TRAIN, kill_after_step, run_mt

LONGER = [*TINY_TRAIN, "train.max_steps=0", "train.epochs=2", "train.max_tokens=200", "train.checkpoint_every=2",
          "train.valid_max_sentences=3"]


def _weights(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


@pytest.mark.faults  # a kill and a resume: CI's fault-injection tier
def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(corpus_dir, tmp_path):
    common = [*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}"]
    straight = run_mt("train", *common, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    steps = json.loads((tmp_path / "a" / "checkpoints" / "last" / "progress.json").read_text())["step"]
    assert steps >= 12

    kill_after_step(["train", *common, f"hydra.run.dir={tmp_path / 'b'}"], tmp_path / "b", 4, tmp_path, timeout=120)
    killed_at = load_checkpoint(tmp_path / "b" / "checkpoints" / "last").progress
    assert killed_at.step < steps

    resumed = run_mt("train", f"train.resume={tmp_path / 'b'}", f"hydra.run.dir={tmp_path / 'b2'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "b" / "curves.png").is_file()
    # The run's training time adds the killed session's part to the resumed one's.
    assert killed_at.elapsed > 0
    last_row = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last_row["elapsed"] > killed_at.elapsed


def test_same_seed_same_losses_and_another_seed_differs(corpus_dir, tmp_path):
    def losses(seed: int, name: str) -> list[float]:
        cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}",
                       f"train.seed={seed}", "train.max_steps=6", "train.epochs=1"])
        return [r["train_loss"] for r in run_training(cfg, tmp_path / name, progress="off").history]

    first = losses(1, "x")
    assert first == losses(1, "y")
    assert first != losses(2, "z")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(corpus_dir, tmp_path, monkeypatch):
    real = trainer_module.sequence_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(trainer_module, "sequence_loss", poisoned)
    cfg = compose([*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(MTError, match="loss became nan at step 5.*last good checkpoint"):
        run_training(cfg, tmp_path / "run", progress="off")
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    assert kept.progress.step == 4
    assert all(torch.isfinite(p).all() for p in kept.loaded.model.parameters())


def test_a_pickle_in_place_of_the_training_state_is_refused(corpus_dir, tmp_path):
    cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.max_steps=2"])
    run_training(cfg, tmp_path / "run", progress="off")
    state = tmp_path / "run" / "checkpoints" / "last" / "optimizer.pt"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state.write_bytes(pickle.dumps({"optimizer": Evil()}))
    with pytest.raises(MTError, match="optimizer.pt is damaged"):  # the manifest's sizes catch it first
        load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    (state.parent / "manifest.json").unlink()  # and without one, torch.load(weights_only) still refuses
    with pytest.raises(MTError, match="unsafe"):
        load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    assert not marker.exists()


def test_resume_of_a_directory_without_checkpoint_is_a_clear_error(tmp_path):
    result = run_mt("train", f"train.resume={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert result.returncode == 2 and "no checkpoint at" in result.stderr


def test_schedules_warm_up_decay_and_halve_on_plateau():
    from mt.config import Schedule, TrainConfig

    noam = TrainConfig(schedule=Schedule.noam, warmup_steps=4)
    factors = [trainer_module.learning_rate_factor(s, noam, 1.0) for s in range(12)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[4] < 1.0 and factors[11] < factors[5]
    plateau = TrainConfig(schedule=Schedule.plateau)
    assert trainer_module.learning_rate_factor(10, plateau, 0.25) == 0.25
    assert trainer_module.learning_rate_factor(10, TrainConfig(), 0.25) == 1.0
    linear = TrainConfig(schedule=Schedule.linear, lr=1e-3, min_lr=1e-4, warmup_steps=2)
    assert trainer_module.learning_rate_factor(0, linear, 1.0, 0.0) == 0.5  # warm-up first
    assert trainer_module.learning_rate_factor(5, linear, 1.0, 0.0) == 1.0
    assert trainer_module.learning_rate_factor(5, linear, 1.0, 0.5) == pytest.approx(0.55)
    assert trainer_module.learning_rate_factor(5, linear, 1.0, 1.0) == pytest.approx(0.1)
    assert trainer_module.learning_rate_factor(5, linear, 1.0, 3.0) == pytest.approx(0.1)  # never below min_lr
    wsd = TrainConfig(schedule=Schedule.linear, lr=1e-3, min_lr=1e-4, decay_from=0.8)
    assert [trainer_module.learning_rate_factor(5, wsd, 1.0, f) for f in (0.0, 0.5, 0.8)] == [1.0, 1.0, 1.0]
    assert trainer_module.learning_rate_factor(5, wsd, 1.0, 0.9) == pytest.approx(0.55)  # halfway down its decay
    assert trainer_module.learning_rate_factor(5, wsd, 1.0, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize("overrides, said", [
    (["train.schedule=linear", "train.decay_from=1.0"], "train.decay_from must be in [0, 1)"),
    (["train.betas=[0.9]"], "train.betas must be two rates in [0, 1)"),
    (["train.betas=[0.9,1.0]"], "train.betas must be two rates in [0, 1)")])
def test_schedule_and_optimizer_settings_out_of_range_are_refused(overrides, said):
    with pytest.raises(MTError, match=re.escape(said)):
        compose(overrides)


def test_decay_from_with_another_schedule_is_said_not_refused():
    """model=transformer sets decay_from for its linear schedule; a user who picks another schedule
    has not asked for it, so it is named at the start (test_first_hour) rather than refused."""
    assert compose(["model=transformer"]).train.unread() == []
    cfg = compose(["model=transformer", "train.schedule=noam", "train.warmup_steps=4000"])
    assert cfg.train.unread() == ["train.decay_from=0.7"]


def test_linear_schedule_ends_the_run_at_min_lr(corpus_dir, tmp_path):
    cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.max_steps=8",
                   "train.schedule=linear", "train.lr=1e-3", "train.min_lr=1e-5"])
    trainer = run_training(cfg, tmp_path / "run", progress="off")
    assert trainer.history[-1]["lr"] == pytest.approx(1e-5, rel=0.05)


def test_validation_every_n_steps_keeps_snapshots_that_mt_average_combines(corpus_dir, tmp_path, capsys):
    from mt.cli.main import main
    from mt.model_dir import load_model_dir

    cfg = compose([*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.epochs=1",
                   "train.valid_every=3", "train.keep_checkpoints=2"])
    result = run_training(cfg, tmp_path / "run", progress="off")
    steps = [r["step"] for r in result.history]
    assert steps[:3] == [3, 6, 9] and len(steps) == len(set(steps))  # no second validation at epoch end
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert len(kept) == 2 and kept[-1] == f"step_{steps[-1]:08d}"
    assert main(["average", str(tmp_path / "run"), "--out", str(tmp_path / "avg")]) == 0
    a, b = (load_file(str(tmp_path / "run" / "checkpoints" / k / "model.safetensors")) for k in kept)
    avg = load_file(str(tmp_path / "avg" / "model.safetensors"))
    assert all(torch.allclose(avg[k], (a[k] + b[k]) / 2, atol=1e-6) for k in avg)
    load_model_dir(tmp_path / "avg")
    assert main(["average", str(tmp_path / "run" / "checkpoints" / kept[0]), "--out", str(tmp_path / "x")]) == 2
    assert "at least two models" in capsys.readouterr().err


@pytest.mark.parametrize("average_wins", [True, False])
def test_average_last_validates_the_mean_of_the_last_models_and_keeps_it_only_if_better(
        corpus_dir, tmp_path, monkeypatch, average_wins):
    bleus = iter([10.0, 20.0, 30.0, 40.0, 50.0 if average_wins else 5.0])  # four validations, then the mean
    monkeypatch.setattr(trainer_module.Trainer, "_valid_scores", lambda self: (next(bleus), 0.0))
    run = tmp_path / "run"
    cfg = compose([*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.epochs=1",
                   "train.valid_every=2", "train.max_steps=8", "train.average_last=3"])
    result = run_training(cfg, run, progress="off")
    kept = sorted((run / "checkpoints").glob("step_*"))
    assert [k.name for k in kept] == ["step_00000004", "step_00000006", "step_00000008"]  # kept for the mean
    states = [load_file(str(k / "model.safetensors")) for k in kept]
    model = load_file(str(run / "model" / "model.safetensors"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["averaged"] for r in rows] == [0, 0, 0, 0, 3] and rows[-1]["best"] is average_wins
    assert all(r["wall"] >= r["elapsed"] > 0 for r in rows)  # the command's clock includes data preparation
    for key, value in model.items():
        expected = sum(s[key] for s in states) / 3 if average_wins else states[-1][key]
        assert torch.allclose(value, expected, atol=1e-6), key
    assert abs(result.best_score) == (50.0 if average_wins else 40.0)
    saved = json.loads((run / "checkpoints" / "last" / "progress.json").read_text())
    assert saved["best_score"] == result.best_score  # a resume measures itself against the average too
    assert len(result.history) == 4  # the curves show training's validations only


def test_adam_takes_the_configured_betas():
    from mt.config import Optimizer, TrainConfig

    model = torch.nn.Linear(2, 2)
    for kind in Optimizer:
        optimizer = trainer_module.build_optimizer(model, TrainConfig(optimizer=kind, betas=[0.8, 0.98]))
        assert optimizer.param_groups[0]["betas"] == (0.8, 0.98)
    assert compose(["train.betas=[0.9,0.98]"]).train.betas == [0.9, 0.98]


@pytest.mark.faults  # a replaced folder and a resume: CI's second tier (the first is near its 5 minutes)
def test_average_last_averages_and_prunes_only_its_own_runs_snapshots(corpus_dir, tmp_path):
    run = tmp_path / "run"
    common = [*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.epochs=1",
              "train.valid_every=2"]
    run_training(compose([*common, "train.max_steps=8", "train.keep_checkpoints=4"]), run, progress="off")
    earlier = {k.name: load_file(str(k / "model.safetensors")) for k in (run / "checkpoints").glob("step_*")}
    assert sorted(earlier) == ["step_00000002", "step_00000004", "step_00000006", "step_00000008"]
    # A run that replaces it (as the demo's runs do) keeps its own two snapshots and averages those.
    run_training(compose([*common, "train.max_steps=4", "train.average_last=2", "train.seed=2"]), run,
                 progress="off", replace=True)
    kept = {k.name: load_file(str(k / "model.safetensors")) for k in (run / "checkpoints").glob("step_*")}
    assert sorted(kept) == sorted(earlier)  # its own step_2 and step_4 replaced the earlier run's; 6 and 8 left
    assert all(torch.equal(kept[n][k], earlier[n][k]) for n in ("step_00000006", "step_00000008") for k in kept[n])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["averaged"] == 2 and rows[-1]["step"] == 4
    # Resuming the finished run trains nothing and validates no second average.
    run_training(compose([*common, "train.max_steps=4", "train.average_last=2", "train.seed=2",
                          f"train.resume={run}"]), run, progress="off")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == len(rows)


def test_average_last_of_one_model_is_refused():
    with pytest.raises(MTError, match="average_last=1 averages one model with itself"):
        compose(["train.average_last=1"])


def test_early_stopping_ends_after_patience_validations_without_improvement(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module.Trainer, "_valid_scores", lambda self: (10.0, 20.0))
    cfg = compose([*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.epochs=5",
                   "train.valid_every=2", "train.patience=2"])
    result = run_training(cfg, tmp_path / "run", progress="off")
    assert result.stopped_early and [r["step"] for r in result.history] == [2, 4, 6]


def test_metrics_go_to_tensorboard_when_it_is_installed(corpus_dir, tmp_path, monkeypatch):
    import types

    written = []

    class FakeWriter:
        def __init__(self, path):
            written.append(("open", path))

        def add_scalar(self, key, value, step):
            written.append((key, value, step))

        def flush(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.max_steps=2"])
    run_training(cfg, tmp_path / "run", progress="off")
    assert written[0] == ("open", str(tmp_path / "run" / "tensorboard"))
    assert {k for k, *_ in written} >= {"train_loss", "valid_loss", "valid_bleu", "lr"}


def test_the_chosen_metric_picks_the_best_model(corpus_dir, tmp_path, monkeypatch):
    bleus = iter([30.0, 20.0, 10.0])
    monkeypatch.setattr(trainer_module.Trainer, "_valid_scores", lambda self: (next(bleus), 0.0))
    cfg = compose([*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.epochs=1",
                   "train.valid_every=2", "train.max_steps=6", "train.metric=loss"])
    result = run_training(cfg, tmp_path / "run", progress="off")
    losses = [r["valid_loss"] for r in result.history]
    assert [r["best"] for r in result.history] == [losses[i] < min(losses[:i], default=9e9) for i in range(3)]
    assert result.history[-1]["best"]  # loss keeps falling while BLEU (30, 20, 10) falls too


def test_max_seconds_stops_training_then_validates_and_saves(corpus_dir, tmp_path, caplog):
    import logging

    cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.max_steps=0",
                   "train.epochs=50", "train.max_tokens=200", "train.max_seconds=0.5"])
    start = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="mt.train"):
        result = run_training(cfg, tmp_path / "run", progress="off")
    assert time.perf_counter() - start < 60
    assert "train.max_seconds=0.5 reached" in caplog.text
    assert result.best_dir is not None and (result.best_dir / "model.safetensors").is_file()
    assert result.history and result.history[-1]["epoch"] < 50 and result.history[-1]["step"] > 0


def test_train_into_a_file_writes_plain_progress_lines_not_a_bar(corpus_dir, tmp_path):
    result = run_mt("train", *TINY_TRAIN, "train.max_steps=0", "train.max_tokens=200", "train.log_seconds=0.01",
                    f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "epoch 1  batch" in output and "tok/s" in output
    assert "\r" not in output  # no carriage-return bar updates in a log file
    # The wall clock of metrics.jsonl starts when mt train began: Hydra, the tokenizers and the
    # corpus come before the first update, so it runs ahead of the training clock.
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["wall"] > r["elapsed"] + 0.2 for r in rows), rows


def test_log_every_one_refreshes_at_every_update_and_zero_is_refused():
    from mt.config import TrainConfig
    from mt.errors import ConfigError

    assert all(trainer_module.first_of_every(n, 1) for n in range(1, 6))
    assert [n for n in range(1, 45) if trainer_module.first_of_every(n, 20)] == [1, 21, 41]
    with pytest.raises(ConfigError, match="train.log_every"):
        TrainConfig(log_every=0)


def test_each_default_is_written_once_in_the_schema_not_again_in_the_yaml():
    import yaml

    from mt.config import ExperimentConfig, TrainConfig
    from mt.presets import compose

    primary = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "config.yaml").read_text())
    assert set(primary) <= {"defaults", "hydra"}, "conf/config.yaml repeats schema defaults"
    composed = compose([])
    assert composed.train.lr == TrainConfig().lr and composed.cache_dir == ExperimentConfig().cache_dir


def test_plateau_schedule_waits_its_patience_and_stops_at_the_floor():
    from mt.config import Schedule, TrainConfig
    from mt.errors import ConfigError

    cfg = TrainConfig(schedule=Schedule.plateau, lr=1e-3, plateau_patience=2, plateau_factor=0.5, min_lr=2e-4)
    scale, seen = 1.0, []
    for bad in range(1, 9):
        scale = trainer_module.plateau_scale(scale, bad, cfg)
        seen.append(round(scale, 6))
    assert seen == [1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2]
    with pytest.raises(ConfigError, match="train.plateau_factor"):
        TrainConfig(plateau_factor=1.5)


def test_curves_say_which_loss_is_label_smoothed(monkeypatch, tmp_path):
    from mt.visualization import curves

    seen = {}
    monkeypatch.setattr(curves, "save_figure", lambda fig, path: seen.setdefault("fig", fig) and Path(path))
    history = [{"epoch": e, "train_loss": 3.0 - e / 10, "valid_loss": 2.5 - e / 10, "valid_bleu": 10.0 * e}
               for e in (1, 2)]
    curves.plot_training_curves(history, tmp_path / "c.png", label_smoothing=0.1)
    legend = [t.get_text() for t in seen["fig"].axes[0].get_legend().get_texts()]
    assert legend == ["train (label-smoothed 0.1)", "validation (no smoothing)"]


def test_resume_restores_the_cuda_generators_too(monkeypatch):
    calls = {}
    cuda_states = [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.setdefault("cuda", states))
    cpu = torch.get_rng_state()
    torch.rand(3)
    trainer_module.restore_rng({"torch_rng": cpu, "cuda_rng": cuda_states})
    assert torch.equal(torch.get_rng_state(), cpu)
    assert [torch.equal(a, b) for a, b in zip(calls["cuda"], cuda_states)] == [True, True]
    # A checkpoint from another number of GPUs: warned, not applied.
    calls.clear()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    trainer_module.restore_rng({"torch_rng": cpu, "cuda_rng": cuda_states})
    assert "cuda" not in calls


def test_resume_extends_a_run_and_refuses_to_change_what_it_trains(corpus_dir, tmp_path):
    first = run_mt("train", *TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}",
                   f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    progress = tmp_path / "a" / "checkpoints" / "last" / "progress.json"
    assert json.loads(progress.read_text())["step"] == 4
    more = run_mt("train", f"train.resume={tmp_path / 'a'}", "train.max_steps=7", "train.epochs=3",
                  f"hydra.run.dir={tmp_path / 'a2'}", cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-2000:]
    assert json.loads(progress.read_text())["step"] == 7
    assert "max_steps: 7" in (tmp_path / "a" / "checkpoints" / "last" / "config.yaml").read_text()
    refused = run_mt("train", f"train.resume={tmp_path / 'a'}", "model.hidden_dim=32",
                     f"hydra.run.dir={tmp_path / 'a3'}", cwd=tmp_path)
    assert refused.returncode == 2
    assert "model.hidden_dim cannot change when resuming" in refused.stderr and "train.epochs" in refused.stderr


def test_resume_overrides_name_the_keys_a_resume_may_change():
    from mt.cli.train import resume_overrides
    from mt.errors import ConfigError

    assert resume_overrides(["train.resume=runs/x", "train.epochs=20", "hydra.run.dir=y", "train.patience=3"]) == [
        "train.epochs", "train.patience"]
    for key in ("model=transformer", "data.dir=z", "train.lr=0.1", "data.tokenizer.src_vocab_size=9"):
        with pytest.raises(ConfigError, match=key.split("=")[0]):
            resume_overrides(["train.resume=runs/x", key])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_accumulating_two_batches_is_one_update_on_both(corpus_dir, tmp_path, monkeypatch, precision):
    """The same sentences as one batch, or as two accumulated: the same gradient, and in fp32 the
    same weights after the update. In bf16 the products round to 8 mantissa bits, so the
    gradients agree to about 1% of their scale; the weights after one Adam step cannot be
    compared (Adam moves a weight by about lr whatever its gradient's size, so a gradient near
    zero that rounds to the other sign moves it by 2 lr)."""
    real = trainer_module.token_batches
    real_step = trainer_module.Trainer._step
    splits, grads = {}, {}

    def fixed(src_lens, tgt_lens, max_tokens, **kw):
        batches = real(src_lens, tgt_lens, max_tokens, **kw)
        if "seed" not in kw:  # validation
            return batches
        first = batches[0][:8]
        return [first[:4], first[4:]] if splits["two"] else [first]

    def recording_step(self):
        grads[splits["two"]] = {n: p.grad.detach().clone() for n, p in self.model.named_parameters()}
        real_step(self)

    monkeypatch.setattr(trainer_module, "token_batches", fixed)
    monkeypatch.setattr(trainer_module.Trainer, "_step", recording_step)
    weights = {}
    for two in (False, True):
        splits["two"] = two
        cfg = compose([*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "model.dropout=0",
                       "train.max_steps=1", f"train.accumulate={2 if two else 1}", "train.clip_norm=0",
                       f"train.precision={precision}"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # forced bf16 warns where it is emulated
            run_training(cfg, tmp_path / f"run{two}", progress="off")
        weights[two] = load_file(str(tmp_path / f"run{two}" / "checkpoints" / "last" / "model.safetensors"))
        progress = json.loads((tmp_path / f"run{two}" / "checkpoints" / "last" / "progress.json").read_text())
        assert progress["step"] == 1  # one update, whether on one batch or two
        assert json.loads((tmp_path / f"run{two}" / "metrics.jsonl").read_text().splitlines()[0])["precision"] \
            == precision
    scale = max(g.abs().max().item() for g in grads[False].values())
    for name, grad in grads[False].items():
        if precision == "fp32":
            torch.testing.assert_close(grads[True][name], grad, atol=1e-6 * scale, rtol=1e-4)
        else:
            torch.testing.assert_close(grads[True][name], grad, atol=1e-2 * scale, rtol=2e-2)
    if precision == "fp32":
        for key, value in weights[False].items():
            torch.testing.assert_close(weights[True][key], value, atol=2e-5, rtol=1e-4)
    with pytest.raises(Exception, match="train.accumulate"):
        compose(["train.accumulate=0"])


def test_each_rank_restores_its_own_gpu_generator(monkeypatch):
    """Under torchrun each rank draws dropout from its own GPU, which rank 0's process never
    touches: rank 1 must get back rank 1's GPU state, on its own device, not rank 0's."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("own", state, device)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(("all", states)))
    torch.manual_seed(5)
    other = torch.get_rng_state()
    torch.manual_seed(6)
    cpu = [torch.get_rng_state(), other]
    own = [torch.full((16,), 10, dtype=torch.uint8), torch.full((16,), 11, dtype=torch.uint8)]
    state = {"rank_rng": cpu, "rank_cuda_rng": own, "world_size": 2,
             "cuda_rng": [torch.zeros(16, dtype=torch.uint8)] * 2}  # rank 0's process's view of both GPUs
    trainer_module.restore_rng(state, rank=1, device=torch.device("cuda", 1))
    assert len(calls) == 1 and calls[0][0] == "own"
    assert torch.equal(calls[0][1], own[1]) and calls[0][2] == torch.device("cuda", 1)
    assert torch.equal(torch.get_rng_state(), cpu[1])


def test_every_rank_saves_its_own_gpu_generator(monkeypatch):
    from mt.training import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device: torch.full((4,), torch.device(device).index, dtype=torch.uint8))
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=1, size=2, local_rank=1))
    rank0 = (torch.get_rng_state(), torch.full((4,), 0, dtype=torch.uint8))

    def all_gather_object(out, mine):  # what gloo / nccl would return: rank 0's, then this rank's
        out[0], out[1] = rank0, mine

    monkeypatch.setattr(distributed.dist, "all_gather_object", all_gather_object)
    cpu, cuda = distributed.gather_rng_states(torch.device("cuda", 1))
    assert len(cpu) == 2 and [int(c[0]) for c in cuda] == [0, 1]  # rank 1's entry is its own GPU's state
    monkeypatch.setattr(distributed, "world", lambda: distributed.World())
    cpu, cuda = distributed.gather_rng_states(torch.device("cpu"))
    assert len(cpu) == 1 and cuda[0].numel() == 0  # a CPU run has no GPU state to keep


def test_a_resumed_run_computes_on_its_own_device(corpus_dir, tmp_path, caplog):
    """A run trained with train.device=cpu on a GPU machine resumed on CUDA (the device came
    from the new command line, whose default is auto). Played here by a resume command line
    that says cuda while the run was trained on cpu: the run's own device wins unless the
    resume names train.device."""
    import logging

    common = [*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}"]
    run_training(compose([*common, "train.device=cpu", "train.max_steps=2"]), tmp_path / "run", progress="off")
    elsewhere = compose([*common, f"train.resume={tmp_path / 'run'}", "train.device=cuda", "train.max_steps=4"])
    with caplog.at_level(logging.INFO, logger="mt.train"):
        result = run_training(elsewhere, tmp_path / "log", progress="off", resume_changes=["train.max_steps"])
    assert result.history[-1]["step"] == 4 and "device cpu" in caplog.text
    if not torch.cuda.is_available():  # asked for explicitly, the resume goes there: here there is none
        with pytest.raises(MTError, match="train.device=cuda but no CUDA device is visible"):
            run_training(elsewhere, tmp_path / "log2", progress="off",
                         resume_changes=["train.max_steps", "train.device"])


def test_train_device_may_change_on_resume_and_says_what_that_costs(corpus_dir, tmp_path, monkeypatch, caplog):
    import logging

    from mt.cli.train import resume_overrides
    from mt.training import pipeline

    assert resume_overrides(["train.resume=runs/x", "train.device=cpu"]) == ["train.device"]
    first = run_mt("train", *TINY_TRAIN, "train.max_steps=2", f"data.dir={corpus_dir}",
                   f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    # On a GPU machine auto means cuda: there the change moves the run, and the log says what that costs.
    with monkeypatch.context() as m:
        m.setattr(pipeline, "resolve_device", lambda name: torch.device("cuda" if name == "auto" else name))
        new = compose([*TINY_TRAIN, f"train.resume={tmp_path / 'a'}", "train.device=cpu"])
        with caplog.at_level(logging.INFO, logger="mt.train"):
            assert pipeline.resumed_config(new, ["train.device"]).train.device == "cpu"
    assert "train.device changes from auto (cuda) to cpu (cpu) on resume" in caplog.text
    assert "will not end with exactly the weights" in caplog.text
    moved = run_mt("train", f"train.resume={tmp_path / 'a'}", "train.device=cpu", "train.max_steps=3",
                   f"hydra.run.dir={tmp_path / 'a2'}", cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr[-2000:]
    log = (tmp_path / "a2" / "train.log").read_text()
    assert "resume changes train.device=cpu, train.max_steps=3" in log
    assert "will not end with exactly" not in log  # auto is the CPU here: nothing moved


def test_a_resumed_time_budget_counts_the_time_already_trained(corpus_dir, tmp_path, caplog):
    """train.max_seconds with schedule=linear: a resumed run measured the time from its own
    start, so its rate jumped back to the peak and it trained a second full budget."""
    common = [*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", "train.epochs=3",
              "train.schedule=linear", "train.lr=1e-3", "train.min_lr=1e-5", "train.max_seconds=1000"]
    run_training(compose([*common, "train.max_steps=3"]), tmp_path / "run", progress="off")
    progress = tmp_path / "run" / "checkpoints" / "last" / "progress.json"
    saved = json.loads(progress.read_text())
    assert saved["step"] == 3 and 0 < saved["elapsed"] < 1000
    saved["elapsed"] = 999.99  # as if the earlier sessions had trained all but the last moment
    progress.write_text(json.dumps(saved))
    (progress.parent / "manifest.json").unlink()  # edited by hand, as a checkpoint of an earlier mt
    resume = compose([*common, f"train.resume={tmp_path / 'run'}", "train.max_steps=0"])
    with caplog.at_level(logging.WARNING, logger="mt.train"):
        result = run_training(resume, tmp_path / "log", progress="off", resume_changes=["train.max_steps"])
    # a new length moves where the linear decay ends: said, since the rate can rise again
    assert "train.max_steps changes the length of a run whose rate decays linearly" in caplog.text
    last = result.history[-1]
    assert last["step"] == 4  # one update (a run always makes one), then the budget is spent
    assert last["lr"] == pytest.approx(1e-5, rel=1e-3)  # the end of the linear decay, not its start
    assert last["elapsed"] >= 1000
