"""Checkpoint averaging: the mean of the weights of several models of one run, which
often translates better than any of them (Vaswani et al., 2017; Junczys-Dowmunt et al.)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mt.errors import MTError
from mt.files import as_user_file
from mt.model_dir import CONFIG, SRC_SPM, TGT_SPM, WEIGHTS, check_derived_out, load_model_dir, write_derived

KIND = "average"


def snapshots(run_dir: Path) -> list[Path]:
    """The per-validation models a run kept (train.keep_checkpoints), oldest first."""
    return sorted(p for p in (run_dir / "checkpoints").glob("step_*[0-9]") if p.is_dir())


def mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts of one shape, computed in float64 and returned in
    each tensor's own dtype."""
    return {k: torch.stack([s[k].double() for s in states]).mean(0).to(states[0][k].dtype).contiguous()
            for k in states[0]}


def average_models(model_dirs: list[Path], out: Path, force: bool = False) -> Path:
    """Writes a model directory whose weights are the mean of ``model_dirs``' (the config
    and tokenizers of the last one). An earlier average at ``out`` is replaced (with ``force``,
    an export too); a trained model, a source or a folder mt did not write never is."""
    if len(model_dirs) < 2:
        raise MTError(f"averaging needs at least two models, got {len(model_dirs)}: "
                      "train with train.keep_checkpoints=N or name several model directories")
    check_derived_out(out, KIND, model_dirs, force)
    for d in model_dirs:
        load_model_dir(d)  # each must be a complete, loadable model directory
    states = [load_file(str(d / WEIGHTS)) for d in model_dirs]
    keys = states[0].keys()
    for d, state in zip(model_dirs[1:], states[1:]):
        if state.keys() != keys or any(state[k].shape != states[0][k].shape for k in keys):
            raise MTError(f"{d} holds a model of another shape than {model_dirs[0]}: average models of one run")
    averaged = mean_state(states)

    def write(tmp: Path) -> None:
        save_file(averaged, str(tmp / WEIGHTS))
        as_user_file(tmp / WEIGHTS)
        for name in (CONFIG, SRC_SPM, TGT_SPM):
            shutil.copyfile(model_dirs[-1] / name, tmp / name)

    return write_derived(out, KIND, write, "the averaged model", force)


def average_paths(paths: list[Path], out: Path, last: int = 0, force: bool = False) -> tuple[list[Path], Path]:
    """``mt average``: model directories, or run directories whose kept snapshots are taken,
    the newest ``last`` of them (0: all), averaged into ``out``."""
    dirs: list[Path] = []
    for p in paths:
        dirs.extend(snapshots(p) if (p / "checkpoints").is_dir() else [p])
    if last:
        dirs = dirs[-last:]
    return dirs, average_models(dirs, out, force)
