"""The training loop people can trust: determinism, kill and resume, divergence, unsafe state."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mt.cli.train import compose
from mt.errors import MTError
from mt.training import trainer as trainer_module
from mt.training.checkpoint import load_checkpoint
from mt.training.pipeline import run_training

from .conftest import REPO, TINY_TRAIN, run_mt

LONGER = [*TINY_TRAIN, "train.max_steps=0", "train.epochs=2", "train.max_tokens=200", "train.checkpoint_every=2",
          "train.valid_max_sentences=3"]


def _weights(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(corpus_dir, tmp_path):
    common = [*LONGER, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}"]
    straight = run_mt("train", *common, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    steps = json.loads((tmp_path / "a" / "checkpoints" / "last" / "progress.json").read_text())["step"]
    assert steps >= 12

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "mt.cli.main", "train", *common, f"hydra.run.dir={tmp_path / 'b'}"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "b" / "checkpoints" / "last" / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(progress.read_text())["step"] >= 4:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(tmp_path / "b" / "checkpoints" / "last").progress
    assert killed_at.step < steps

    resumed = run_mt("train", f"train.resume={tmp_path / 'b'}", f"hydra.run.dir={tmp_path / 'b2'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "b" / "curves.png").is_file()


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


def test_log_every_one_refreshes_at_every_update_and_zero_is_refused():
    from mt.config import TrainConfig
    from mt.errors import ConfigError

    assert all(trainer_module.first_of_every(n, 1) for n in range(1, 6))
    assert [n for n in range(1, 45) if trainer_module.first_of_every(n, 20)] == [1, 21, 41]
    with pytest.raises(ConfigError, match="train.log_every"):
        TrainConfig(log_every=0)


def test_each_default_is_written_once_in_the_schema_not_again_in_the_yaml():
    import yaml

    from mt.cli.train import compose
    from mt.config import ExperimentConfig, TrainConfig

    primary = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "config.yaml").read_text())
    assert set(primary) <= {"defaults", "hydra"}, "conf/config.yaml repeats schema defaults"
    composed = compose([])
    assert composed.train.lr == TrainConfig().lr and composed.cache_dir == ExperimentConfig().cache_dir
