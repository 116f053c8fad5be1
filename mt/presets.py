"""The Hydra configs shipped inside the package (``mt/conf``), composed into a validated config.

``mt train`` composes them through ``hydra.main`` (overrides, ``-m`` sweeps, ``--config-dir``
for a folder of the user's own presets); the demo, the benchmarks and Python code call
``compose`` for the same result without starting a Hydra job. Both check the keys of earlier
versions first, so ``train.bf16`` gets a message naming its replacement.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path

from mt.config import REMOVED_KEYS, ExperimentConfig, register_configs, to_config
from mt.errors import ConfigError, MTError

# Inside the package, so a wheel carries it; a checkout's top-level conf/ links here.
CONF_DIR = Path(__file__).resolve().parent / "conf"


def config_dir() -> Path:
    """The folder of mt's own configs (config.yaml, data/, model/)."""
    if not (CONF_DIR / "config.yaml").is_file():
        raise MTError(f"mt's configs are missing from {CONF_DIR}: this installation is damaged; "
                      "reinstall mt (pip install --force-reinstall mt)")
    return CONF_DIR


def check_overrides(overrides: Sequence[str]) -> None:
    """Keys of earlier versions get a message that names their replacement; then every key must
    be one of the schema's (``check_override_keys``)."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in REMOVED_KEYS:
            raise ConfigError(REMOVED_KEYS[key])
    check_override_keys(overrides)


# Keys mt train reads itself before Hydra composes anything (mt.cli.train.launch_ddp), not the schema.
LAUNCH_KEYS = ("train.ddp",)


def setting_keys(schema: type = ExperimentConfig, prefix: str = "") -> list[str]:
    """Every key a command line may set: ``model``, ``model.attention``, ``model.attention.score``, ..."""
    keys = []
    for f in fields(schema):
        key = prefix + f.name
        keys.append(key)
        if isinstance(f.type, type) and is_dataclass(f.type):
            keys += setting_keys(f.type, key + ".")
        elif isinstance(f.default_factory, type) and is_dataclass(f.default_factory):  # type: ignore[misc]
            keys += setting_keys(f.default_factory, key + ".")  # type: ignore[arg-type]
    return keys


def check_override_keys(overrides: Sequence[str]) -> None:
    """A key the schema does not have is refused with the nearest ones, with or without Hydra's
    ``+`` (which would append it, where it would sit unread: ``+train.max_second=5`` ran ten
    epochs with no time limit). Hydra's own keys (``hydra.run.dir``) and flags pass."""
    known = setting_keys() + list(LAUNCH_KEYS)
    for override in overrides:
        if override.startswith("-") or ("=" not in override and not override.startswith("~")):
            continue
        key = override.split("=", 1)[0].lstrip("+~")
        listed = ".".join(part for part in key.split(".") if not part.isdigit())  # data.demo_sizes.0: an item
        if not key or listed in known or key.startswith("hydra") or "@" in key or "/" in key:
            continue
        last = key.rsplit(".", 1)[-1]
        near = difflib.get_close_matches(key, known, n=3, cutoff=0.75) or \
            [k for k in known if difflib.get_close_matches(last, [k.rsplit(".", 1)[-1]], cutoff=0.8)][:3]
        hint = (f": did you mean {near[0]}?" + (f" (also near: {', '.join(near[1:])})" if near[1:] else "")
                if near else ": see mt train --help for the settings")
        raise ConfigError(f"{key} is not a setting{hint} (a misspelt key would be ignored, so mt stops)")


def _override_value(value: object) -> str:
    """``value`` in Hydra's override grammar: strings quoted (a path with spaces or commas stays
    one value), lists bracketed, the rest as YAML writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    # Hydra reads a backslash as an escape only before a quote (or the closing one): only those double
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, str(value)).replace("'", "\\'")
    return f"'{text}'"


def overrides_from_file(path: str | Path) -> list[str]:
    """A config file as command-line overrides, for ``mt train CONFIG.yaml`` (JoeyNMT's and
    OpenNMT's habit): its settings as nested keys (``train: {max_seconds: 600}``), presets in a
    Hydra ``defaults`` list (``defaults: [{model: transformer}]``). A run's saved ``config.yaml``
    is such a file: ``mt train runs/a/model/config.yaml`` trains the same configuration again.
    Overrides given after the file win; every key is checked as a command line's are."""
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read the config file {path} ({err.strerror or err}): give a YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where} is not valid YAML ({getattr(err, 'problem', None) or err}): "
                          "fix the file") from None
    if loaded is None:
        return []
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} holds a {type(loaded).__name__}, not settings: write 'train: {{max_seconds: 600}}' "
                          "style keys")
    overrides = []
    for entry in loaded.pop("defaults", []) or []:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{path}: each defaults entry names one preset, e.g. '- model: transformer'")
        (group, choice), = entry.items()
        overrides.append(f"{group}={choice}")

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                overrides.append(f"{prefix}{key}={_override_value(value)}")

    walk(loaded, "")
    return overrides


def compose(overrides: Sequence[str], user_dirs: Sequence[str | Path] = ()) -> ExperimentConfig:
    """The validated config that ``mt train <overrides>`` would use. ``user_dirs``: folders of
    the user's own presets (``model/NAME.yaml``, ``data/NAME.yaml``), searched before mt's own,
    as ``mt train --config-dir DIR`` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    overrides = list(overrides)
    check_overrides(overrides)
    for folder in user_dirs:
        if not Path(folder).is_dir():
            raise ConfigError(f"config directory {folder} does not exist: give a folder holding model/NAME.yaml "
                              "or data/NAME.yaml presets")
    searchpath = [f"file://{Path(d).resolve()}" for d in user_dirs]
    extra = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return to_config(hydra_compose("config", overrides=[*overrides, *extra]))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"invalid configuration {overrides}: {hydra_error(err)}") from err


def hydra_error(err: BaseException) -> str:
    """Hydra's reason in one line: it keeps the specific cause in the exception chain."""
    chain, cause = [], err
    while cause is not None and len(chain) < 4:
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    lines = dict.fromkeys(line.strip() for text in chain for line in text.splitlines() if line.strip())
    return "; ".join(line for line in lines
                     if "$" not in line and not line.startswith(("full_key", "reference_type", "object_type")))
