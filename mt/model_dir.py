"""A saved model is a directory a user can move:

    model.safetensors   the weights (no pickle anywhere)
    config.yaml         the resolved experiment config (model, data, training)
    src.model, tgt.model  the SentencePiece models

Everything that translates, evaluates or draws alignments loads from it alone.
Writing goes to a temporary directory that is renamed into place, so an interrupted
save never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from mt.config import ExperimentConfig, load_yaml, to_yaml
from mt.data.tokenizer import Tokenizer, copy_tokenizer
from mt.errors import MTError
from mt.models import Seq2SeqModel, build_model

WEIGHTS, CONFIG, SRC_SPM, TGT_SPM = "model.safetensors", "config.yaml", "src.model", "tgt.model"


@dataclass
class LoadedModel:
    model: Seq2SeqModel
    config: ExperimentConfig
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer


def write_model_files(path: Path, model: Seq2SeqModel, config: ExperimentConfig,
                      src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer) -> None:
    """The files of a model directory, into an existing folder."""
    save_model(model, str(path / WEIGHTS))
    (path / CONFIG).write_text(to_yaml(config), encoding="utf-8")
    copy_tokenizer(src_tokenizer, path / SRC_SPM)
    copy_tokenizer(tgt_tokenizer, path / TGT_SPM)


def fresh_temp_dir(path: Path) -> Path:
    """An empty ``<path>.tmp`` to write into before ``replace_dir``."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: Path, path: Path) -> Path:
    """Puts the finished ``tmp`` at ``path``. At every moment either ``path`` or
    ``<path>.old`` holds a complete directory (``existing_dir`` finds it)."""
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path


def existing_dir(path: Path) -> Path | None:
    """``path``, or the complete previous version a kill mid-replace left as ``.old``."""
    old = path.with_name(path.name + ".old")
    return path if path.is_dir() else old if old.is_dir() else None


def save_model_dir(path: str | Path, model: Seq2SeqModel, config: ExperimentConfig,
                   src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer) -> Path:
    path = Path(path)
    tmp = fresh_temp_dir(path)
    write_model_files(tmp, model, config, src_tokenizer, tgt_tokenizer)
    return replace_dir(tmp, path)


def load_model_dir(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    path = Path(path)
    if not path.is_dir():
        raise MTError(f"model directory {path} does not exist: pass the 'model' folder a training run wrote")
    for name in (WEIGHTS, CONFIG, SRC_SPM, TGT_SPM):
        if not (path / name).is_file():
            raise MTError(f"{path} is not a model directory: {name} is missing")
    config = load_yaml(path / CONFIG, ExperimentConfig)
    src_tok, tgt_tok = Tokenizer(path / SRC_SPM), Tokenizer(path / TGT_SPM)
    model = build_model(config.model, len(src_tok), len(tgt_tok))
    try:
        missing, unexpected = load_model(model, str(path / WEIGHTS), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise MTError(f"{path / WEIGHTS} is corrupt or does not match config.yaml: {str(err).splitlines()[0]}") from err
    if missing or unexpected:
        raise MTError(f"{path / WEIGHTS} does not match config.yaml (missing {sorted(missing)[:3]}, "
                      f"unexpected {sorted(unexpected)[:3]}): the files come from different models")
    model.to(device).eval()
    return LoadedModel(model, config, src_tok, tgt_tok)
