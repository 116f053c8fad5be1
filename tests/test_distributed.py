"""Training on several processes (torchrun, gloo on CPU): the update equals one process's
update on the whole batch, only rank 0 writes, and a killed run resumes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mt.training.distributed import deal

from .conftest import TINY_TRAIN, kill_after_step, run_mt, train_tiny

# dropout 0: the single-process run with accumulation must see the very same computation;
# train.device=cpu: gloo on CPU cores, also on a machine with GPUs
SETTINGS = [*[a for a in TINY_TRAIN if not a.startswith(("train.max_steps", "train.epochs"))],
            "train.epochs=5", "train.max_steps=24", "train.valid_every=8", "train.max_tokens=256", "model.dropout=0",
            "train.device=cpu"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def _close(a: dict, b: dict, atol: float = 1e-5) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=1e-4) for k in a)


@pytest.fixture(scope="module")
def ddp_run(corpus_dir, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("ddp"), corpus_dir, "train.ddp=2", settings=SETTINGS)


@pytest.mark.distributed  # two torchrun processes: CI's second tier
def test_two_processes_train_and_only_rank_zero_writes(ddp_run):
    names = sorted(p.name for p in ddp_run.iterdir())
    assert names == [".hydra", "checkpoints", "curves.png", "metrics.jsonl", "model", "train.log"]
    metrics = [json.loads(line) for line in (ddp_run / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in metrics]  # every 8 updates and at the end of each epoch
    assert steps == sorted(set(steps)) and {8, 16, 24} <= set(steps)  # one line per validation, not per rank
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["valid_loss"] < metrics[0]["valid_loss"]
    log = (ddp_run / "train.log").read_text()
    assert "torchrun: 2 processes (gloo backend)" in log
    assert log.count("valid loss") == len(metrics)  # rank 1 does not log
    state = torch.load(ddp_run / "checkpoints" / "last" / "optimizer.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rank_rng"]) == 2
    # nothing written anywhere else (no second run directory from rank 1)
    assert sorted(p.name for p in ddp_run.parent.iterdir()) == ["cache", "run"]
    # both ranks map one encoded corpus: rank 0 wrote it, rank 1 found it
    assert len(list((ddp_run.parent / "cache" / "encoded").iterdir())) == 1


@pytest.mark.distributed
def test_two_processes_update_as_one_process_accumulating_both_batches(ddp_run, corpus_dir, tmp_path):
    common = [*SETTINGS, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}"]
    one = run_mt("train", *common, "train.accumulate=2", f"hydra.run.dir={tmp_path / 'acc2'}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert _close(_weights(ddp_run), _weights(tmp_path / "acc2"))
    # ... and not as one process with half the batch: the comparison can fail.
    half = run_mt("train", *common, f"hydra.run.dir={tmp_path / 'acc1'}", cwd=tmp_path)
    assert half.returncode == 0, half.stderr[-2000:]
    assert not _close(_weights(ddp_run), _weights(tmp_path / "acc1"))


@pytest.mark.faults  # a kill and a resume: CI's fault-injection tier
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(ddp_run, corpus_dir, tmp_path):
    run = tmp_path / "run"
    killed_at = kill_after_step(["train", *SETTINGS, "train.ddp=2", "train.checkpoint_every=1", f"data.dir={corpus_dir}",
                                 f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"], run, 5, tmp_path)
    progress = run / "checkpoints" / "last" / "progress.json"
    assert 5 <= killed_at < 24
    # Another number of processes would deal the batches differently: refused, naming the fix.
    wrong = run_mt("train", f"train.resume={run}", f"hydra.run.dir={tmp_path / 'log0'}", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "trained by 2 process(es) and is resumed by 1" in wrong.stderr
    resumed = run_mt("train", f"train.resume={run}", "train.ddp=2", f"hydra.run.dir={tmp_path / 'log'}",
                     cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(progress.read_text())["step"] == 24
    assert _close(_weights(ddp_run), _weights(run), atol=1e-6)


def test_batches_are_dealt_to_ranks_balanced_by_tokens():
    assert deal([100, 90, 10, 5], 2) == [[0, 3], [1, 2]]        # 105 and 100 tokens
    assert deal([50, 60], 2) == [[1], [0]]                       # one batch each
    assert deal([70], 2) == [[0], []]                            # the end of an epoch: rank 1 waits, weight 0
    shares = deal([30, 29, 28, 27, 26, 25], 3)
    assert sorted(len(s) for s in shares) == [2, 2, 2]
    assert sorted(p for s in shares for p in s) == list(range(6))


def test_train_ddp_value_is_checked(tmp_path):
    result = run_mt("train", "train.ddp=two", cwd=tmp_path)
    assert result.returncode == 2 and "train.ddp must be a number of processes" in result.stderr


def _one_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def set_device(index):
        raise AssertionError(f"torch.cuda.set_device({index}) called: rank {index} would die here")

    monkeypatch.setattr(torch.cuda, "set_device", set_device)


def test_more_processes_than_gpus_is_refused_before_any_process_starts(monkeypatch, corpus_dir, tmp_path):
    """train.ddp=2 on a machine with one GPU: rank 1 called torch.cuda.set_device(1) and died."""
    from mt.cli.train import launch_ddp
    from mt.errors import ConfigError

    _one_gpu(monkeypatch)
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: launched.append(a) or subprocess.CompletedProcess(a, 0))
    args = [*TINY_TRAIN, f"data.dir={corpus_dir}", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path}"]
    for device in ("auto", "cuda"):
        with pytest.raises(ConfigError, match=r"2 training processes on this machine but it has 1 GPU\(s\).*"
                                              r"train.ddp=1.*train.device=cpu"):
            launch_ddp(["train.ddp=2", f"train.device={device}", *args])
    assert not launched
    assert launch_ddp(["train.ddp=2", "train.device=cpu", *args]) == 0  # gloo on the CPU cores: launched
    assert len(launched) == 1 and "--nproc_per_node=2" in launched[0][0]


def test_a_rank_without_a_gpu_of_its_own_stops_with_one_line(monkeypatch):
    """The same under torchrun started by hand (torchrun --nproc_per_node=2 -m mt train)."""
    from mt.errors import ConfigError
    from mt.training import distributed

    _one_gpu(monkeypatch)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="has 1 GPU"):
        distributed.init_from_env("auto")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (nccl); runs on a GPU machine")
def test_two_gpus_train_with_nccl(corpus_dir, tmp_path):
    result = run_mt("train", *SETTINGS, "train.ddp=2", "train.device=cuda", f"data.dir={corpus_dir}",
                    f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torchrun: 2 processes (nccl backend)" in (tmp_path / "run" / "train.log").read_text()
