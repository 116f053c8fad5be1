"""The Hydra configs shipped inside the package (``mt/conf``), composed into a validated config.

``mt train`` composes them through ``hydra.main`` (overrides, ``-m`` sweeps, ``--config-dir``
for a folder of the user's own presets); the demo, the benchmarks and Python code call
``compose`` for the same result without starting a Hydra job. Both check the keys of earlier
versions first, so ``train.bf16`` gets a message naming its replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def check_removed_keys(overrides: Sequence[str]) -> None:
    """Keys of earlier versions get a message that names their replacement."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in REMOVED_KEYS:
            raise ConfigError(REMOVED_KEYS[key])


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
    check_removed_keys(overrides)
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
