"""A saved model is a directory a user can move:

    model.safetensors   the weights (no pickle anywhere)
    config.yaml         the resolved experiment config (model, data, training)
    src.model, tgt.model  the SentencePiece models

Everything that translates, evaluates or draws alignments loads from it alone.
Writing goes to a temporary directory that is renamed into place, so an interrupted
save never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from mt import __version__
from mt.config import CorpusSource, DataConfig, ExperimentConfig, load_yaml, to_yaml
from mt.data.tokenizer import Tokenizer, copy_tokenizer
from mt.errors import MTError, WriteError, write_failure
from mt.files import (
    as_user_file,
    check_out_dir,
    fresh_temp_dir,
    fsync_path,
    output_kind,
    remove_own,
    temp_name,
    unlisted,
    verify_manifest,
    write_manifest,
)
from mt.models import Seq2SeqModel, build_model

log = logging.getLogger("mt")
WEIGHTS, CONFIG, SRC_SPM, TGT_SPM = "model.safetensors", "config.yaml", "src.model", "tgt.model"
EXPORT_INFO = "export.json"  # in a directory ``mt export`` wrote: its format and where it came from
INT8_WEIGHTS = "model.int8.safetensors"  # an int8 export's weights: NAME.int8 + NAME.scale per matrix


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
    as_user_file(path / WEIGHTS)
    (path / CONFIG).write_text(to_yaml(config), encoding="utf-8")
    copy_tokenizer(src_tokenizer, path / SRC_SPM)
    copy_tokenizer(tgt_tokenizer, path / TGT_SPM)


# What a directory written before manifests holds, by its files (mt.files.output_kind).
_MODEL_FILES = {WEIGHTS, CONFIG, SRC_SPM, TGT_SPM}
_CHECKPOINT_FILES = _MODEL_FILES | {"optimizer.pt", "progress.json"}
MODEL_KINDS = {"model", "checkpoint", "average"}  # the kinds load_model_dir reads


def legacy_kind(path: Path) -> str | None:
    """The kind of an output an earlier mt wrote without a manifest: an export by its
    ``export.json``, a model or checkpoint by holding nothing but their files."""
    if (path / EXPORT_INFO).is_file():
        try:
            return f"{json.loads((path / EXPORT_INFO).read_text(encoding='utf-8'))['format']} export"
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    if WEIGHTS in names and names <= _CHECKPOINT_FILES:
        return "checkpoint" if names & {"optimizer.pt", "progress.json"} else "model"
    return None


def _old(path: Path) -> Path:
    """Where the previous version waits while its successor is renamed into place: a name of
    mt's own (a user's ``model.old`` backup is never touched)."""
    return path.with_name(f".{path.name}.mt-old")


def replace_dir(tmp: Path, path: Path, kind: str, replaces: set[str] | None = None) -> Path:
    """Seals the finished ``tmp`` as ``kind`` (mt.files.write_manifest) and puts it at ``path``.
    At every moment either ``path`` or ``.<path>.mt-old`` holds a complete directory (``existing_dir``
    finds it). Only an output of the ``replaces`` kinds (default: ``kind``) holding nothing but
    what its manifest lists is ever replaced."""
    allowed = replaces or {kind}
    write_manifest(tmp, kind)
    old = _old(path)
    if path.exists() or path.is_symlink():
        remove_own(old, allowed | {kind}, legacy_kind)
        if path.is_symlink() or not path.is_dir() or (any(path.iterdir()) and (
                output_kind(path, legacy_kind) not in allowed or unlisted(path))):
            raise MTError(f"{path} is in the way and is not {' or '.join(sorted(allowed))} mt wrote (or holds files "
                          "mt did not write): move it elsewhere (mt never replaces a folder it did not write)")
        path.rename(old)
    tmp.rename(path)
    fsync_path(path.parent)
    remove_own(old, allowed | {kind}, legacy_kind)
    return path


def existing_dir(path: Path) -> Path | None:
    """``path``, or the complete previous version a kill mid-replace left beside it (``.NAME.mt-old``;
    ``NAME.old`` from an mt before manifests, read but never removed)."""
    for candidate in (path, _old(path), path.with_name(path.name + ".old")):
        if candidate.is_dir():
            return candidate
    return None


def readable_dir(path: str | Path) -> Path:
    """``path``; its ``model/`` where ``path`` is a training run's folder (every command that takes
    a model takes the run); or, where a write into it was cut short between its two renames, the
    complete previous version beside it (said in one warning line), so every command reads the
    last good state."""
    path = Path(path)
    if not path.exists() and _old(path).is_dir():
        log.warning("%s: a write was cut short; reading its complete previous version %s", path, _old(path))
        return _old(path)
    if path.is_dir() and not (path / CONFIG).exists() and ((path / "model").is_dir() or _old(path / "model").is_dir()):
        return readable_dir(path / "model")  # a training run's folder: the model it wrote
    return path


def written_dir(path: Path, write: Callable[[Path], None], what: str, kind: str, after: str = "",
                replaces: set[str] | None = None) -> Path:
    """``write`` fills a fresh temporary folder, which is sealed as ``kind`` and replaces
    ``path`` (only an output of the ``replaces`` kinds, default ``kind``). A failed write (a
    full disk) removes the half-written folder, keeps the previous ``path`` and ends in one line
    naming ``what`` could not be written and, with ``after``, what to do next."""
    path = Path(os.path.abspath(path))  # "." and "dir/" have names to put a temporary beside
    tmp = temp_name(path)
    try:
        tmp = fresh_temp_dir(path)
        write(tmp)
        return replace_dir(tmp, path, kind, replaces)
    except (OSError, RuntimeError) as err:
        why = write_failure(err)
        if why is None:
            raise
        raise WriteError(f"could not write {what} to {path} ({why}); {after or 'free space there and run again'}") \
            from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone once renamed; else never left behind


DERIVED_KINDS = {"average", "int8 export", "ctranslate2 export"}  # made again from models: --force may replace


def check_derived_out(out: Path, kind: str, sources: Sequence[Path], force: bool) -> None:
    """Before ``mt export`` or ``mt average`` does any work: ``out`` is new, empty or an earlier
    output of ``kind`` (with ``force``, of any kind made from models), never a source."""
    check_out_dir(out, kind, force, DERIVED_KINDS, tuple(sources), legacy_kind)


def write_derived(out: Path, kind: str, write: Callable[[Path], None], what: str, force: bool) -> Path:
    """``write`` into a sealed folder of ``kind`` that replaces ``out`` (checked first with
    ``check_derived_out``)."""
    return written_dir(out, write, what, kind, replaces=DERIVED_KINDS if force else {kind})


def save_model_dir(path: str | Path, model: Seq2SeqModel, config: ExperimentConfig,
                   src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer) -> Path:
    path = Path(path)
    previous = "the previous one is kept" if existing_dir(path) is not None else "nothing was kept"
    return written_dir(path, lambda tmp: write_model_files(tmp, model, config, src_tokenizer, tgt_tokenizer),
                       "the model directory", "model", f"{previous}; free space there and resume the run (train.resume)")


def export_info(path: str | Path) -> dict | None:
    """What ``mt export`` wrote about an export directory (its ``format`` first), None for a
    model directory; a damaged file is one line."""
    info = Path(path) / EXPORT_INFO
    if not info.is_file():
        return None
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
        kind = data["format"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise MTError(f"{info} is damaged ({type(err).__name__}): export the model again with mt export") from None
    if not isinstance(kind, str):
        raise MTError(f"{info} is damaged (format is not a string): export the model again with mt export")
    return data


def export_format(path: str | Path) -> str | None:
    """The format of an ``mt export`` directory ('ctranslate2', 'int8'), None for a model directory."""
    info = export_info(path)
    return None if info is None else info["format"]


def write_export_files(path: Path, loaded: LoadedModel, info: dict) -> None:
    """What every export holds beside its engine's weights: mt's config and tokenizers, and
    ``export.json`` (``info`` plus the version, the source and the date)."""
    (path / CONFIG).write_text(to_yaml(loaded.config), encoding="utf-8")
    copy_tokenizer(loaded.src_tokenizer, path / SRC_SPM)
    copy_tokenizer(loaded.tgt_tokenizer, path / TGT_SPM)
    info = {**info, "mt": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "parameters": loaded.model.num_parameters()}
    (path / EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def read_config_and_tokenizers(path: Path, files: Sequence[str], what: str,
                               fix: str) -> tuple[ExperimentConfig, Tokenizer, Tokenizer]:
    """The config and tokenizers of a model or export directory, once ``files`` are all there
    (else one line: '{path} is not {what}: NAME is missing; {fix}'), and each file checked
    against the manifest's size and checksum, where mt wrote one."""
    verify_manifest(path, fix or "copy it again from where it was written, or train it again", tuple(files))
    for name in files:
        if not (path / name).is_file():
            raise MTError(f"{path} is not {what}: {name} is missing{'; ' + fix if fix else ''}")
    return load_yaml(path / CONFIG, ExperimentConfig), Tokenizer(path / SRC_SPM), Tokenizer(path / TGT_SPM)


def load_model_dir(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A model directory, checked file by file: a missing, damaged or mismatched file is one
    line naming it, never a traceback from the YAML parser, SentencePiece or safetensors."""
    path = readable_dir(path)
    if not path.is_dir():
        if _old(path).is_dir():
            raise MTError(f"model directory {path} does not exist, but its previous version is complete in "
                          f"{_old(path)} (a write was cut short): rename it to {path.name}, or resume the run")
        raise MTError(f"model directory {path} does not exist: pass the 'model' folder a training run wrote")
    kind = export_format(path)
    if kind is not None:
        raise MTError(f"{path} is a {kind} export (mt export): this command needs the model directory it was "
                      "exported from")
    config, src_tok, tgt_tok = read_config_and_tokenizers(path, (WEIGHTS, CONFIG, SRC_SPM, TGT_SPM),
                                                          "a model directory", "")
    model = build_model(config.model, len(src_tok), len(tgt_tok))
    _check_shapes(path / WEIGHTS, model)
    try:
        missing, unexpected = load_model(model, str(path / WEIGHTS), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise MTError(f"{path / WEIGHTS} is damaged or does not match config.yaml: {str(err).splitlines()[0]}") from err
    if missing or unexpected:
        raise MTError(f"{path / WEIGHTS} does not match config.yaml (missing {sorted(missing)[:3]}, "
                      f"unexpected {sorted(unexpected)[:3]}): the files come from different models")
    model.to(device).eval()
    return LoadedModel(model, config, src_tok, tgt_tok)


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row (output unit): (int8 [rows, cols], fp32 [rows])."""
    scale = weight.detach().float().abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(weight.detach().float() / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def save_int8_weights(model: Seq2SeqModel, path: Path) -> dict[str, str]:
    """Every weight matrix of ``model`` as int8 rows with their scales, the rest as it is, into
    ``path``; a tensor tied to another is written once. Returns {alias: name written}."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        key = tensor.data_ptr()
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        if tensor.is_floating_point() and tensor.dim() == 2:
            tensors[f"{name}.int8"], tensors[f"{name}.scale"] = quantize_rows(tensor)
        else:
            tensors[name] = tensor.detach().contiguous()
    save_file(tensors, str(path))
    as_user_file(path)
    return aliases


def load_int8_dir(path: str | Path, aliases: dict[str, str] | None = None) -> LoadedModel:
    """An int8 export as an fp32 model whose matrices hold the stored int8 values times their
    scales: the embeddings it computes with; the runner (mt.export.int8.int8_compute) packs its
    int8 layers from the stored integers and row scales themselves. ``aliases`` (tied tensors
    written once): as the export's ``export.json`` lists them, unless given."""
    path = Path(path)
    if aliases is None:
        aliases = (export_info(path) or {}).get("aliases", {})
    config, src_tok, tgt_tok = read_config_and_tokenizers(path, (INT8_WEIGHTS, CONFIG, SRC_SPM, TGT_SPM),
                                                          "a complete int8 export", "export it again")
    model = build_model(config.model, len(src_tok), len(tgt_tok))
    try:
        stored = load_file(str(path / INT8_WEIGHTS))
    except (SafetensorError, OSError, ValueError) as err:
        raise MTError(f"{path / INT8_WEIGHTS} is damaged ({str(err).splitlines()[0][:120]}): export the model again") \
            from None
    state = {}
    try:
        for name, tensor in stored.items():
            if name.endswith(".int8"):
                base = name[: -len(".int8")]
                state[base] = tensor.float() * stored[f"{base}.scale"][:, None]
            elif not name.endswith(".scale"):
                state[name] = tensor
        for alias, name in aliases.items():
            state[alias] = state[name]
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as err:
        raise MTError(f"{path / INT8_WEIGHTS} does not match config.yaml ({str(err).splitlines()[0][:160]}): "
                      "export the model again") from None
    return LoadedModel(model.eval(), config, src_tok, tgt_tok)


def _check_shapes(weights: Path, model: Seq2SeqModel) -> None:
    """Every tensor of the file has the shape the config builds: else one line naming the first
    that does not (a config or tokenizer from another model, or the weights of another)."""
    try:
        with safe_open(str(weights), framework="pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise MTError(f"{weights} is damaged: not a safetensors file ({str(err).splitlines()[0][:120]}); copy it "
                      "again from where it was written, or retrain") from err
    for name, tensor in model.state_dict().items():
        if name in shapes and shapes[name] != tuple(tensor.shape):
            raise MTError(f"{weights} does not match config.yaml: {name} is {list(shapes[name])} in the weights but "
                          f"{list(tensor.shape)} by the config and tokenizers; the files come from different models")


def trained_from(config_path: Path) -> Path | None:
    """The folder ``mt train`` ran in, as Hydra recorded it beside the run (RUN/.hydra/hydra.yaml,
    ``hydra.runtime.cwd``), for a config at RUN/model/config.yaml or RUN/checkpoints/last/config.yaml."""
    import yaml

    for run in (config_path.resolve().parent.parent, config_path.resolve().parent.parent.parent):
        try:
            cwd = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text(encoding="utf-8"))["hydra"]["runtime"]["cwd"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            continue
        return Path(cwd) if isinstance(cwd, str) else None
    return None


def corpus_of_run(data: DataConfig, config_path: Path, otherwise: str) -> DataConfig:
    """A saved config's corpus folder, as typed relative to where ``mt train`` ran, found from any
    folder: first from that folder (Hydra records it), then from here, then from the folders above
    the run; a demo corpus goes where it was (generated there if missing). Not found: one line
    ending with ``otherwise`` (what the command at hand takes instead)."""
    if not data.dir or Path(data.dir).is_absolute():
        return data
    origin = trained_from(config_path)
    if origin is not None and (origin / data.dir).resolve() == Path(data.dir).resolve():
        return data  # run from the folder it was trained in: as it is
    if data.source is CorpusSource.demo:
        return replace(data, dir=str(origin / data.dir)) if origin is not None else data
    for base in [*([origin] if origin is not None else []), Path.cwd(), *config_path.resolve().parents]:
        if (base / data.dir).is_dir():
            return replace(data, dir=str(base / data.dir))
    raise MTError(f"{config_path} names the corpus folder {data.dir}, found neither where the run was trained, nor "
                  f"from here, nor above the run: {otherwise}")
