"""Training checkpoints: a model directory plus what resuming needs.

    checkpoints/last/
        model.safetensors, config.yaml, src.model, tgt.model   (a model directory)
        optimizer.pt     optimizer and schedule state, torch RNG (every rank's, and the number
                         of ranks, for a torchrun run): tensors and numbers only,
                         read back with torch.load(weights_only=True), which refuses pickled code
        progress.json    epoch, batch position in the epoch, step, best score, history

A checkpoint is written into a temporary folder beside ``last``, sealed with a manifest
(mt.files) and renamed into place, so a kill at any moment leaves the previous checkpoint
(as ``last`` or ``.last.mt-old``) intact, and a file damaged later is named, never loaded.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mt.config import ExperimentConfig
from mt.data.tokenizer import Tokenizer
from mt.errors import MTError
from mt.model_dir import LoadedModel, existing_dir, load_model_dir, save_model_dir, write_model_files, written_dir
from mt.models import Seq2SeqModel

OPTIMIZER, PROGRESS = "optimizer.pt", "progress.json"


@dataclass
class Progress:
    epoch: int = 1               # the epoch in progress
    batch: int = 0               # batches of that epoch already trained on
    step: int = 0                # updates so far
    best_score: float = -math.inf  # best validation metric so far (higher is better)
    bad_validations: int = 0     # validations since the best (early stopping, plateau schedule)
    lr_scale: float = 1.0        # schedule=plateau: lowered by plateau_factor every plateau_patience bad validations
    elapsed: float = 0.0         # wall seconds of training up to this checkpoint, summed over resumed sessions
    history: list[dict] = field(default_factory=list)


def save_checkpoint(path: Path, model: Seq2SeqModel, config: ExperimentConfig, src_tok: Tokenizer,
                    tgt_tok: Tokenizer, optimizer: torch.optim.Optimizer, schedule: Any, progress: Progress,
                    extra: dict | None = None) -> Path:
    """``extra``: more tensors and numbers for the training state (a multi-process run's world
    size and every rank's random state). A failed write (a full disk) leaves the previous
    checkpoint as it was and ends in one line naming its step and the resume command."""

    def write(tmp: Path) -> None:
        write_model_files(tmp, model, config, src_tok, tgt_tok)
        torch.save({**(extra or {}), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    # every GPU's generator too, so a resumed run on CUDA draws the same dropout masks
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / OPTIMIZER)
        (tmp / PROGRESS).write_text(json.dumps(progress.__dict__, indent=1))

    return written_dir(path, write, f"the checkpoint of step {progress.step}", "checkpoint", after_failed_checkpoint(path))


def after_failed_checkpoint(path: Path) -> str:
    """What the user still has, and the command that continues from it."""
    run_dir = path.parent.parent
    found = existing_dir(path)
    if found is None:
        return "no earlier checkpoint exists; free space there and start the run again"
    try:
        step = json.loads((found / PROGRESS).read_text())["step"]
    except (OSError, ValueError, KeyError):
        step = "?"
    return (f"the last good checkpoint (step {step}) is intact in {found}; free space, then continue with "
            f"mt train train.resume={run_dir}")


@dataclass
class RunFiles:
    """Where a run writes: its best model and snapshots (model directories) and
    ``checkpoints/last``, each from the model, configuration and tokenizers it trains with."""

    run_dir: Path
    model: Seq2SeqModel
    config: ExperimentConfig
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer

    def save_model(self, path: Path) -> Path:
        return save_model_dir(path, self.model, self.config, self.src_tokenizer, self.tgt_tokenizer)

    def save_checkpoint(self, optimizer: torch.optim.Optimizer, schedule: Any, progress: Progress,
                        extra: dict | None = None) -> Path:
        return save_checkpoint(self.run_dir / "checkpoints" / "last", self.model, self.config, self.src_tokenizer,
                               self.tgt_tokenizer, optimizer, schedule, progress, extra)


@dataclass
class Checkpoint:
    loaded: LoadedModel
    training_state: dict
    progress: Progress


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> Checkpoint:
    found = existing_dir(path)
    if found is None:
        raise MTError(f"no checkpoint at {path}: train.resume takes the run directory of an earlier mt train")
    loaded = load_model_dir(found, device)
    try:
        state = torch.load(found / OPTIMIZER, map_location=device, weights_only=True)
        saved = json.loads((found / PROGRESS).read_text())
        if "bad_epochs" in saved:  # checkpoints written before the rename
            saved["bad_validations"] = saved.pop("bad_epochs")
        progress = Progress(**saved)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError) as err:
        raise MTError(f"{found} holds an unreadable or unsafe training state ({type(err).__name__}: "
                      f"{str(err).splitlines()[0][:200] if str(err) else ''}); it is not loaded") from err
    return Checkpoint(loaded, state, progress)
