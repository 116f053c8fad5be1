"""``mt train``: Hydra composes ``conf/`` with the command-line overrides; the result
is validated once (``to_config``) and handed to the training pipeline."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mt.config import register_configs, to_config
from mt.errors import MTError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger("mt.train")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _train_app(cfg: DictConfig) -> float:
    from mt.training.pipeline import run_training

    try:
        config = to_config(cfg)
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        log.info("run directory: %s", run_dir)
        result = run_training(config, run_dir)
    except MTError as err:
        # One line, and a non-zero exit, also from inside a Hydra job.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    log.info("done: model directory %s", result.best_dir)
    return result.best_score  # what a Hydra sweeper would maximise


def train_main(args: list[str]) -> int:
    if not CONF_DIR.is_dir():
        raise MTError(f"config directory {CONF_DIR} not found: install mt from its repository with 'pip install -e .'")
    register_configs()
    saved = sys.argv
    sys.argv = ["mt train", *args]
    try:
        _train_app()
    finally:
        sys.argv = saved
    return 0
