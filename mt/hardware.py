"""The machine a run computes on: which device it uses, and what to write beside a figure.

``resolve_device`` turns ``auto`` / ``cpu`` / ``cuda[:N]`` into a device for training and
for every command that loads a model, with one message when CUDA is asked for and absent;
``machine`` describes the host (CPU model and family, its vector flags, torch, threads) for
the JSON that benchmarks and ``mt compare`` records write beside their numbers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from mt.errors import MTError


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """``auto``: the GPU where there is one, else the CPU. ``option`` names the setting in the
    message when CUDA is asked for on a machine without it (``--device`` for the commands)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        sep = "=" if option.startswith("train.") else " "
        raise MTError(f"{option}{sep}{name} but no CUDA device is visible: use {option}{sep}cpu")
    return torch.device(name)


def machine() -> dict:
    """The CPU and software a figure was measured with, for JSON written beside it (bench
    scripts, mt compare records): cores, CPU model and family, its vector flags, torch."""
    info = {"cores": os.cpu_count(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        field = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in cpuinfo.split("\n\n")[0].splitlines())}
        info["cpu"] = f"{field['model name']} (family {field['cpu family']})" if "cpu family" in field \
            else field["model name"]
        info["flags"] = sorted(f for f in field.get("flags", "").split() if f.startswith(("avx", "amx", "fma")))
    except (OSError, KeyError):
        info["cpu"] = platform.processor() or platform.machine()
    info.update(torch=torch.__version__, threads=torch.get_num_threads(),
                torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    return info
