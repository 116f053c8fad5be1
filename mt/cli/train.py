"""``mt train``: Hydra composes ``conf/`` with the command-line overrides; the result
is validated once (``to_config``) and handed to the training pipeline."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mt.config import RUN_CONTROL_KEYS, register_configs, to_config
from mt.errors import ConfigError, MTError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger("mt.train")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _train_app(cfg: DictConfig) -> float:
    from mt.training import distributed
    from mt.training.pipeline import resumed_config, run_training

    try:
        config = to_config(cfg)
        changed = resume_overrides(list(HydraConfig.get().overrides.task)) if config.train.resume else []
        # A resumed run computes where it was trained (or where the resume's train.device says).
        device = resumed_config(config, changed).train.device if config.train.resume else config.train.device
        world = distributed.init_from_env(device)
        # Under torchrun every rank composes its own Hydra run directory; they all use rank 0's.
        run_dir = Path(distributed.broadcast_object(HydraConfig.get().runtime.output_dir))
        if world.size > 1:
            log.info("torchrun: %d processes (%s backend); rank 0 writes to %s", world.size,
                     distributed.dist.get_backend(), run_dir)
        if config.train.resume:
            log.info("this session's log: %s; the run continues in %s", run_dir, config.train.resume)
        else:
            log.info("run directory: %s", run_dir)
        result = run_training(config, run_dir, resume_changes=changed)
    except MTError as err:
        # One line, and a non-zero exit, also from inside a Hydra job.
        print(f"error: {err}", file=sys.stderr)
        distributed.shutdown()
        sys.exit(2)
    distributed.shutdown()
    log.info("done: model directory %s", result.best_dir)
    return result.best_score  # what a Hydra sweeper would maximise


REMOVED_KEYS = {
    "train.bf16": "train.bf16 was replaced by train.precision=auto|fp32|bf16|fp16 "
                  "(auto, the default, uses bf16 only where the hardware computes it natively)",
}


# What a resumed run may change: how long, how it is watched and where it computes, never what it trains.
RESUMABLE_KEYS = RUN_CONTROL_KEYS


def resume_overrides(overrides: list[str]) -> list[str]:
    """The keys a ``train.resume`` command line sets besides the resume itself; a key that would
    change the model, data, tokenizer or optimisation is refused, naming it."""
    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "train.resume" or key.startswith("hydra."):
            continue
        if key not in RESUMABLE_KEYS:
            raise ConfigError(f"{key} cannot change when resuming (the run keeps its model, data, tokenizer and "
                              f"optimisation); a resume may change only {', '.join(sorted(RESUMABLE_KEYS))}. "
                              "Start a new run to change it")
        keys.append(key)
    return keys


def check_removed_keys(overrides: list[str]) -> None:
    """Keys of earlier versions get a message that names their replacement."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in REMOVED_KEYS:
            raise ConfigError(REMOVED_KEYS[key])


def compose(overrides: list[str]):
    """The validated config that ``mt train <overrides>`` would use."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mt.config import register_configs

    register_configs()
    check_removed_keys(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return to_config(hydra_compose("config", overrides=overrides))
    except (HydraException, OmegaConfBaseException) as err:
        chain, cause = [], err
        while cause is not None and len(chain) < 4:  # Hydra keeps the specific reason in the cause
            chain.append(str(cause))
            cause = cause.__cause__ or cause.__context__
        lines = dict.fromkeys(line.strip() for text in chain for line in text.splitlines() if line.strip())
        detail = "; ".join(line for line in lines
                           if "$" not in line and not line.startswith(("full_key", "reference_type", "object_type")))
        raise ConfigError(f"invalid configuration {overrides}: {detail}") from err


def launch_ddp(args: list[str]) -> int | None:
    """``mt train train.ddp=N ...``: the same training on N processes, started by torchrun
    (``python -m torch.distributed.run --standalone``) with one run directory fixed for all.
    None when there is nothing to launch (no train.ddp, N=1, or already under torchrun)."""
    import os
    import subprocess
    import time

    wanted = [a for a in args if a.split("=", 1)[0].lstrip("+") == "train.ddp"]
    if not wanted:
        return None
    rest = [a for a in args if a not in wanted]
    value = wanted[-1].split("=", 1)[1]
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"train.ddp must be a number of processes (1 or more), got '{value}'")
    procs = int(value)
    if procs == 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return train_main(rest)
    if "-m" in rest or "--multirun" in rest:
        raise ConfigError("train.ddp does not combine with a -m sweep: run each job with train.ddp, or torchrun")
    from mt.training.distributed import check_gpus_for
    from mt.training.pipeline import resumed_config

    config = compose([a for a in rest if not a.startswith("hydra.")])
    if config.train.resume:
        config = resumed_config(config, resume_overrides(rest))
    check_gpus_for(procs, config.train.device)  # one GPU per process, or train.device=cpu
    if not any(a.startswith("hydra.run.dir=") for a in rest):
        name = config.model.name
        rest.append(f"hydra.run.dir=runs/{time.strftime('%Y-%m-%d/%H-%M-%S')}_{name}_ddp{procs}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "mt", "train", *rest]
    log.info("launching: %s", " ".join(command))
    print("torchrun: " + " ".join(command[1:]), file=sys.stderr, flush=True)
    return subprocess.run(command, check=False).returncode


def train_main(args: list[str]) -> int:
    if not CONF_DIR.is_dir():
        raise MTError(f"config directory {CONF_DIR} not found: install mt from its repository with 'pip install -e .'")
    register_configs()
    check_removed_keys(args)
    launched = launch_ddp(args)
    if launched is not None:
        return launched
    saved = sys.argv
    sys.argv = ["mt train", *args]
    try:
        _train_app()
    finally:
        sys.argv = saved
    return 0
