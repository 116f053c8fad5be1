"""The models a comparison holds: where their directories are, what their runs recorded,
what to call them, and which of them are seeds of one model.

A model directory's config says its preset, variant, languages and seed; its run's
``metrics.jsonl`` says how long it trained and which epoch was kept. Two runs are seeds of
one model only when their resolved configurations differ in nothing but the seed and how
long and where they ran (``mt.config.settings_but_seed``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mt.config import ExperimentConfig, load_yaml, settings_but_seed
from mt.data.corpus import check_file_language
from mt.errors import MTError
from mt.evaluation.metrics import Scores
from mt.model_dir import EXPORT_INFO

MODEL_FILES = ("config.yaml", "model.safetensors")


@dataclass
class ModelEntry:
    """A model directory and what its run recorded about it."""

    name: str                 # unique among the compared models
    model_dir: str
    variant: str              # e.g. "gru, bahdanau additive" or "transformer 3+3, d 256"
    attention: bool
    parameters: int           # filled in when the model is loaded to translate
    src_lang: str
    tgt_lang: str
    seed: int
    train_seconds: float | None = None
    tokens_per_s: float | None = None
    valid_bleu: float | None = None   # validation BLEU of the model kept (the run's best validation)
    epochs: int | None = None         # the last epoch trained (where early stopping ended the run)
    best_epoch: int | None = None     # the epoch of the model kept
    preset: str = ""          # the model preset's name, before _unique_names tells runs of it apart
    settings: str = ""        # JSON of every setting that decides what the run learns, but the seed


def _is_model_dir(path: Path) -> bool:
    """A model directory, or an export of one (mt export), which every command runs alike."""
    return all((path / f).is_file() for f in MODEL_FILES) or \
        ((path / "config.yaml").is_file() and (path / EXPORT_INFO).is_file())


def find_model_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Model directories from what a user passes: a model directory, a run directory (its
    ``model/``), or any folder above them (a Hydra multirun directory), searched in order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MTError(f"{path} does not exist: pass model directories (runs/NAME/model), run directories "
                          "or a multirun directory")
        if _is_model_dir(path):
            found.append(path)
        elif _is_model_dir(path / "model"):
            found.append(path / "model")
        else:
            below = sorted({p.parent for p in path.rglob("model.safetensors") if _is_model_dir(p.parent)
                            and p.parent.name == "model"})
            if not below:
                raise MTError(f"{path} holds no model directory (config.yaml and model.safetensors): "
                              "train one with mt train, or pass its runs/NAME/model folder")
            found.extend(below)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _variant(cfg) -> str:
    m = cfg.model
    if m.arch.value == "transformer":
        return f"transformer {m.enc_layers}+{m.dec_layers}, d {m.hidden_dim}, {m.heads} heads"
    att = m.attention
    if att.type.value == "none":
        kind = "no attention"
    else:
        kind = f"{att.type.value} {att.score.value}" + ("" if att.normalizer.value == "softmax" else
                                                         f" {att.normalizer.value}")
        kind += f" top-{att.top_k}" if att.top_k else ""   # load_yaml fills both in for older configs
        kind += " hard" if att.hard else ""
    return f"{m.cell.value} {m.hidden_dim}, {kind}"


def _run_record(run_dir: Path) -> dict:
    """Training time, speed, epochs and best validation BLEU from the run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    rows = [r for r in rows if "valid_bleu" in r]
    if not rows:
        return {}
    speeds = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    # The model kept: the last validation the trainer marked best (its metric may be chrF or loss);
    # runs written before the mark, the highest BLEU (the first of equals, as a tie is no improvement).
    marked = [r for r in rows if r.get("best")]
    best = marked[-1] if marked else max(rows, key=lambda r: r["valid_bleu"])
    return {"train_seconds": _train_seconds(rows),
            "tokens_per_s": float(np.median(speeds)) if speeds else None,
            "valid_bleu": best["valid_bleu"],
            "epochs": rows[-1].get("epoch"), "best_epoch": best.get("epoch")}


def _train_seconds(rows: list[dict]) -> float | None:
    """The run's wall time: ``elapsed`` of its last row (summed over resumed sessions); for runs
    written before ``elapsed`` existed, the longest ``seconds`` of each epoch, summed."""
    if rows[-1].get("elapsed"):
        return float(rows[-1]["elapsed"])
    per_epoch: dict[int, float] = {}
    for r in rows:
        per_epoch[r.get("epoch", 0)] = max(per_epoch.get(r.get("epoch", 0), 0.0), r.get("seconds", 0.0))
    return sum(per_epoch.values()) or None


def settings_key(cfg) -> str:
    """What ModelEntry.settings holds for a config: runs with equal keys are seeds of one model."""
    return json.dumps(settings_but_seed(cfg), sort_keys=True)


def describe_models(model_dirs: Sequence[Path]) -> list[ModelEntry]:
    """Entries named by their preset and, where two share one, by what tells them apart."""
    entries = []
    for d in model_dirs:
        cfg = load_yaml(d / "config.yaml", ExperimentConfig)
        entries.append(ModelEntry(
            name=cfg.model.name, preset=cfg.model.name, model_dir=str(d), variant=_variant(cfg),
            attention=cfg.model.arch.value == "transformer" or cfg.model.attention.type.value != "none",
            parameters=0, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang,
            seed=cfg.train.seed, settings=settings_key(cfg), **_run_record(d.parent)))
    name_runs(entries)
    return entries


SETTING_MARK = " | "  # between a variant's description and the settings that tell it from a sibling


def _distinguish_variants(entries: list[ModelEntry]) -> None:
    """Runs of one preset and one described variant whose settings differ in more than the
    seed (alignment loss, input feeding, learning rate, ...) get those settings added to their
    variant, so they are neither named nor averaged as seeds of one model."""
    for e in entries:
        e.variant = e.variant.split(SETTING_MARK)[0]
    families: dict[tuple[str, str], list[ModelEntry]] = {}
    for e in entries:
        families.setdefault((e.preset or e.name, e.variant), []).append(e)
    for members in families.values():
        distinct = {e.settings for e in members}
        if len(distinct) < 2:
            continue
        parsed = {key: json.loads(key) if key else {} for key in distinct}
        keys = sorted({k for d in parsed.values() for k in d}
                      - {k for k in set.intersection(*(set(d) for d in parsed.values()))
                         if len({json.dumps(d[k]) for d in parsed.values()}) == 1})
        for e in members:
            own = parsed[e.settings]
            said = ", ".join(f"{k}={_shown(own[k])}" if k in own else f"{k} unknown" for k in keys)
            e.variant = f"{e.variant}{SETTING_MARK}{said}"


def _shown(value: object) -> object:
    """A setting as a label shows it: a file by its name (the folder it was read from makes
    labels a line long), an empty one as none."""
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return "none" if value == "" else value


def name_runs(entries: list[ModelEntry]) -> None:
    """Variants told apart by their settings, then names unique among the entries."""
    _distinguish_variants(entries)
    _unique_names(entries)


def _unique_names(entries: list[ModelEntry]) -> None:
    """Two runs of one preset never share a name (nor an output file): add what differs."""
    for e in entries:
        e.name = e.preset or e.name
    for name in {e.name for e in entries}:
        same = [e for e in entries if e.name == name]
        if len(same) < 2:
            continue
        if len({e.variant for e in same}) == len(same):
            for e in same:
                e.name = f"{name} ({e.variant})"
        elif len({e.seed for e in same}) == len(same):
            for e in same:
                e.name = f"{name} seed {e.seed}"
        elif len({(e.variant, e.seed) for e in same}) == len(same):  # several settings, several seeds each
            for e in same:
                e.name = f"{name} ({e.variant}) seed {e.seed}"
        else:
            for e in same:
                e.name = f"{name} [{Path(e.model_dir).parent.name}]"
    seen: dict[str, int] = {}
    for e in entries:  # still equal (same run folder names): number them
        seen[e.name] = seen.get(e.name, 0) + 1
        if seen[e.name] > 1:
            e.name = f"{e.name} #{seen[e.name]}"


def check_languages(entries: Sequence[ModelEntry], src_path: str | None = None, ref_path: str | None = None,
                    force_language: bool = False) -> None:
    """One language pair for all models, and the test files' suffixes (test.en, test.de.gz)
    must not say otherwise, unless ``force_language`` (``--force-language``)."""
    pairs = {(e.src_lang, e.tgt_lang) for e in entries}
    if len(pairs) > 1:
        listed = ", ".join(f"{e.name}: {e.src_lang}-{e.tgt_lang}" for e in entries)
        raise MTError(f"the models translate different language pairs ({listed}): compare models of one pair")
    src_lang, tgt_lang = pairs.pop()
    for path, lang, side in ((src_path, src_lang, "source"), (ref_path, tgt_lang, "reference")):
        if path is not None and not force_language:
            check_file_language(path, lang, side, f"{src_lang}-{tgt_lang}", "models'", "--force-language")


def seed_groups(entries: Sequence[ModelEntry]) -> dict[tuple[str, str], list[ModelEntry]]:
    """Models whose resolved settings differ only by seed, keyed by (preset, variant). Entries
    without their settings (built by hand) are grouped by preset and variant alone."""
    groups: dict[tuple[str, str, str], list[ModelEntry]] = {}
    for e in entries:
        preset = e.preset or e.name.split(" seed ")[0].split(" [")[0].split(" #")[0]
        groups.setdefault((preset, e.variant, e.settings), []).append(e)
    keyed: dict[tuple[str, str], list[ModelEntry]] = {}
    for (preset, variant, _), members in groups.items():
        key = (preset, variant)
        while key in keyed:  # same description, other settings: name_runs was not called; never merge them
            key = (preset, f"{key[1]}{SETTING_MARK}other settings")
        keyed[key] = members
    return keyed


def median_seed(members: Sequence[ModelEntry], scores: dict[str, Scores]) -> ModelEntry:
    """The member of median test BLEU (the lower middle one for an even count)."""
    bleu = np.array([scores[e.name].bleu for e in members])
    return members[int(np.argsort(bleu, kind="stable")[(len(bleu) - 1) // 2])]
