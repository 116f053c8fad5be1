"""``mt train``: Hydra composes mt's configs (``mt/conf``, and ``--config-dir`` folders of the
user's own) with the command-line overrides; the result is validated once (``to_config``)
and handed to the training pipeline (``mt.training.pipeline.run_training``). Hydra is the
parser: ``mt train --help`` shows the configuration and its groups."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mt.config import RUN_CONTROL_KEYS, register_configs, to_config
from mt.errors import ConfigError, MTError
from mt.presets import CONF_DIR, check_overrides, compose, config_dir

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
        global _started
        started, _started = _started or time.perf_counter(), None  # a sweep's later jobs: their own start
        result = run_training(config, run_dir, resume_changes=changed, started=started)
    except MTError as err:
        # One line, and a non-zero exit, also from inside a Hydra job.
        print(f"error: {err}", file=sys.stderr)
        distributed.shutdown(finished=False)
        _remove_unstarted_run()
        sys.exit(2)
    distributed.shutdown()
    log.info("done: model directory %s", result.best_dir)
    return result.best_score  # what a Hydra sweeper would maximise


_existed: set[Path] = set()  # the folders on the way to the run folder that were there before Hydra ran
_started: float | None = None  # when `mt train` began: the zero of the wall clock in metrics.jsonl


def _remove_unstarted_run() -> None:
    """A run that stopped before training leaves no folder behind: what Hydra put in the folder it
    made for it (.hydra/, the log) goes, then the folders it made on the way if empty. A folder
    that was there before, or one holding anything else, is left as it is."""
    import shutil

    from hydra.types import RunMode

    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir).absolute()
    if hydra_config.mode is not RunMode.RUN or run_dir in _existed or hydra_config.job.chdir:
        return
    ours = {".hydra", f"{hydra_config.job.name}.log"}
    if not run_dir.is_dir() or any(p.name not in ours for p in run_dir.iterdir()):
        return
    logging.shutdown()  # the log file is closed before it goes
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / f"{hydra_config.job.name}.log").unlink(missing_ok=True)
    # The run folder, then the folders above it that Hydra made for it (runs/DATE/ of the default),
    # each only if it is empty now and was not there before: never a folder of the user's.
    cwd = Path.cwd().absolute()
    for folder in (run_dir, *run_dir.parents):
        if folder in _existed or folder == cwd or cwd not in folder.parents:
            break
        try:
            folder.rmdir()  # only if empty
        except OSError:
            break


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


def split_config_dirs(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's ``--config-dir DIR`` / ``-cd DIR`` (folders of the user's presets) apart from the
    overrides."""
    overrides, dirs, it = [], [], iter(args)
    for arg in it:
        if arg in ("--config-dir", "-cd"):
            dirs.append(next(it, ""))
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        else:
            overrides.append(arg)
    return overrides, dirs


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
        return run(rest)
    if "-m" in rest or "--multirun" in rest:
        raise ConfigError("train.ddp does not combine with a -m sweep: run each job with train.ddp, or torchrun")
    from mt.training.distributed import check_gpus_for
    from mt.training.pipeline import resumed_config

    overrides, user_dirs = split_config_dirs(rest)
    config = compose([a for a in overrides if not a.startswith("hydra.")], user_dirs)
    if config.train.resume:
        config = resumed_config(config, resume_overrides(overrides))
    check_gpus_for(procs, config.train.device)  # one GPU per process, or train.device=cpu
    if not any(a.startswith("hydra.run.dir=") for a in overrides):
        name = config.model.name
        rest.append(f"hydra.run.dir=runs/{time.strftime('%Y-%m-%d/%H-%M-%S')}_{name}_ddp{procs}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "mt", "train", *rest]
    log.info("launching: %s", " ".join(command))
    print("torchrun: " + " ".join(command[1:]), file=sys.stderr, flush=True)
    return subprocess.run(command, check=False).returncode


def parser() -> argparse.ArgumentParser:
    """Hydra's command line, which ``run`` hands the arguments to: overrides (``key=value``),
    ``-m`` sweeps, ``--config-dir``, ``--cfg job``, ``--help``."""
    from hydra._internal.utils import get_args_parser

    hydra_parser = get_args_parser()
    hydra_parser.prog = "mt train"
    return hydra_parser


def _named_run_dir(args: list[str]) -> Path | None:
    """The run folder a command line names (``hydra.run.dir=``, ``+``/``++`` too, quoted or not)."""
    named = [a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra.run.dir=")]
    return Path(named[-1].strip("'\"")).absolute() if named else None


def _folders_there(args: list[str]) -> set[Path]:
    """Before Hydra makes the run folder: which folders on its way exist already (the named one and
    those above it; or runs/ and today's runs/DATE/ of the default), so that a failed start removes
    only what it made. A named folder holding a run is refused here, before Hydra writes its
    .hydra/ record over the run's (mt compare --split reads it)."""
    import time

    named = _named_run_dir(args)
    resumes = any(a.split("=", 1)[0].lstrip("+") == "train.resume" for a in args)
    if named is not None and not resumes and "-m" not in args and "--multirun" not in args:
        from mt.training.pipeline import check_new_run_dir

        check_new_run_dir(named)
    default = Path("runs").absolute() / time.strftime("%Y-%m-%d") / "x"
    return {p for p in ((named / "x").parents if named else default.parents) if p.exists()} | \
        ({named} if named is not None and named.exists() else set())


def config_file_overrides(args: list[str]) -> list[str]:
    """``mt train CONFIG.yaml [overrides]`` and ``--config FILE``: the file's settings as overrides
    (``mt.presets.overrides_from_file``), put before the command line's, which win."""
    from mt.presets import overrides_from_file

    files, rest, it = [], [], iter(args)
    for arg in it:
        if arg == "--config":
            files.append(next(it, ""))
            if not files[-1]:
                raise ConfigError("--config needs a file: mt train --config my_config.yaml")
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
        elif "=" not in arg and arg.endswith((".yaml", ".yml")) and not arg.startswith("-"):
            files.append(arg)
        else:
            rest.append(arg)
    return [override for file in files for override in overrides_from_file(file)] + rest


def run(args: list[str]) -> int:
    global _started
    _started = time.perf_counter()
    config_dir()  # mt's own configs are there, or a one-line error
    args = config_file_overrides(args)
    for folder in split_config_dirs(args)[1]:
        if not Path(folder).is_dir():
            raise ConfigError(f"--config-dir {folder} does not exist: give a folder of your own presets "
                              "(model/NAME.yaml, data/NAME.yaml)")
    register_configs()
    check_overrides(args)
    launched = launch_ddp(args)
    if launched is not None:
        return launched
    global _existed
    _existed = _folders_there(args)
    saved = sys.argv
    sys.argv = ["mt train", *args]
    try:
        _train_app()
    finally:
        sys.argv = saved
    return 0
