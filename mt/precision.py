"""Numeric precision chosen by the hardware.

bfloat16 halves the memory traffic of matrix work and is about 1.5x faster where the
hardware computes it (CUDA GPUs from Ampere on; CPUs with AMX or AVX-512-BF16). Where it
does not, PyTorch emulates it, and training runs 16-21x *slower* than in fp32 (measured
on an AVX2-only AMD EPYC, docs/lab/benchmarks.md). So ``auto`` takes bf16 only where it is
native and fp32 everywhere else; the run says which and why.

Detection uses PyTorch's own helpers (``torch.cpu._is_avx512_bf16_supported``,
``torch.cpu._is_amx_tile_supported``, ``torch.cuda.is_bf16_supported``), never CPU names,
and honours ``ONEDNN_MAX_CPU_ISA``: oneDNN capped below its bf16 instructions emulates bf16
even on a CPU that has them. Training, validation and translation all resolve their
precision here.

``MT_PRECISION=fp32|bf16|fp16`` in the environment stands in for ``auto`` wherever auto
would be resolved, so one switch makes every command compute alike on every machine (the
test suite sets fp32); an explicit ``train.precision`` / ``--precision`` still wins.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mt.config import Precision
from mt.errors import ConfigError

PRECISIONS = tuple(p.value for p in Precision)  # auto, fp32, bf16, fp16: spelled once, in mt.config
PRECISION_ENV = "MT_PRECISION"
# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) below its first bf16 dot-product instructions.
_ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def onednn_isa_cap() -> str | None:
    """The ISA oneDNN is capped at by the environment, when the cap rules out native bf16."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip().upper()
        if value:
            return f"{name}={value}" if value in _ONEDNN_ISAS_WITHOUT_BF16 else None
    return None


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and the feature (or its absence) that says so."""
    cpu = getattr(torch, "cpu", None)
    amx = getattr(cpu, "_is_amx_tile_supported", None)
    avx512_bf16 = getattr(cpu, "_is_avx512_bf16_supported", None)
    capability = torch.backends.cpu.get_cpu_capability()
    has_amx, has_avx512_bf16 = amx is not None and amx(), avx512_bf16 is not None and avx512_bf16()
    cap = onednn_isa_cap()
    if cap and (has_amx or has_avx512_bf16):
        return False, (f"the CPU has {'AMX' if has_amx else 'AVX-512-BF16'} but {cap} keeps oneDNN off it, "
                       "so bf16 would be emulated")
    if has_amx:
        return True, "the CPU has AMX"
    if has_avx512_bf16:
        return True, "the CPU has AVX-512-BF16"
    return False, f"the CPU has neither AMX nor AVX-512-BF16 (best vector unit: {capability}), so bf16 would be emulated"


def cuda_bf16_support(device: torch.device) -> tuple[bool, str]:
    name = torch.cuda.get_device_name(device)
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return True, f"the GPU ({name}) computes bf16"
    return False, f"the GPU ({name}) does not compute bf16 natively"


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """(native, reason) for ``device``; tests replace this to play other hardware."""
    if device.type == "cuda":
        return cuda_bf16_support(device)
    return cpu_bf16_support()


# oneDNN keeps the kernels it creates for each tensor shape: in its primitive cache and in
# ideep's (PyTorch's bridge to it), 1,024 of each by default. In bf16 every new batch shape
# adds some, so a training process grows by about 1 GB in its first 60 Transformer updates
# and further after (docs/lab/benchmarks.md); fp32 products go through MKL and keep none. With 64
# each, bf16's peak falls below fp32's at the same speed. The Transformer's training keeps 16:
# about 220 MiB less, no slower, over 30 minutes (studies/time_to_quality); the RNNs, which make
# more distinct products per update (one per time step), train 9% slower at 16, so keep 64.
KERNEL_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
KERNEL_CACHE_CAPACITY = 64
TRANSFORMER_KERNEL_CACHE_CAPACITY = 16


@dataclass(frozen=True)
class ResolvedPrecision:
    """What a run computes in: ``name`` is fp32, bf16 or fp16; ``reason`` says why."""

    name: str
    reason: str
    device_type: str = "cpu"
    native: bool = True  # False: bf16 asked for on hardware that emulates it

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def needs_grad_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to this precision's dtype (a no-op context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        return f"precision {self.name}: {self.reason}"


FP32 = ResolvedPrecision("fp32", "fp32 asked for")


def resolve_precision(requested: str, device: torch.device | str,
                      kernel_cache: int = KERNEL_CACHE_CAPACITY) -> ResolvedPrecision:
    """The precision to run in for ``requested`` (auto, fp32, bf16, fp16) on ``device``.

    auto: bf16 where the device computes it natively, else fp32. bf16 on hardware that
    emulates it runs (the user asked) with a warning. fp16 needs CUDA (it gets a
    gradient scaler there). Anything else is a ConfigError naming the fix. bf16 on the CPU
    bounds oneDNN's kernel caches at ``kernel_cache`` entries (``kernel_cache_capacity``)."""
    device = torch.device(device)
    kind = device.type
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{requested}'")
    if requested == "auto" and os.environ.get(PRECISION_ENV):
        chosen = resolve_precision(environment_precision(), device, kernel_cache)
        return ResolvedPrecision(chosen.name, f"{PRECISION_ENV}={chosen.name} in the environment ({chosen.reason})",
                                 chosen.device_type, chosen.native)
    if requested == "fp32":
        return ResolvedPrecision("fp32", "fp32 asked for", kind)
    if requested == "fp16":
        if kind != "cuda":
            raise ConfigError("precision fp16 needs a CUDA GPU (CPUs have no fast fp16 training): "
                              "use precision auto, fp32 or bf16")
        return ResolvedPrecision("fp16", "fp16 asked for (with a gradient scaler)", kind)
    native, why = bf16_support(device)
    if kind == "cpu" and (requested == "bf16" or native):
        bound_kernel_caches(kernel_cache)
    if requested == "bf16":
        if native:
            return ResolvedPrecision("bf16", f"bf16 asked for; {why}", kind)
        warnings.warn(f"precision bf16 on this device: {why}; expect it to be many times slower than fp32 "
                      "(precision auto picks fp32 here)", stacklevel=2)
        return ResolvedPrecision("bf16", f"bf16 asked for, emulated: {why}", kind, native=False)
    if native:
        return ResolvedPrecision("bf16", f"auto: {why}", kind)
    return ResolvedPrecision("fp32", f"auto: {why}", kind)


def kernel_cache_capacity(arch: str) -> int:
    """The kernel-cache bound measured best for training an architecture (``rnn``, ``transformer``)."""
    return TRANSFORMER_KERNEL_CACHE_CAPACITY if arch == "transformer" else KERNEL_CACHE_CAPACITY


def bound_kernel_caches(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Caps oneDNN's and ideep's kernel caches for bf16 on the CPU, unless the environment sets
    them. They are read when the process creates its first kernel, so this must come before
    (resolving the precision does, before the first bf16 product); worker processes inherit it,
    and a later run in the same process (a Hydra sweep) keeps the first run's bound.
    ``capacity`` must be positive: ``LRU_CACHE_CAPACITY=0`` crashes PyTorch."""
    for name in KERNEL_CACHE_ENV:
        os.environ.setdefault(name, str(max(1, capacity)))


def environment_precision() -> str:
    """``MT_PRECISION``, checked: what ``auto`` means while it is set."""
    value = os.environ.get(PRECISION_ENV, "").strip().lower()
    if value not in PRECISIONS[1:]:
        raise ConfigError(f"{PRECISION_ENV}={os.environ.get(PRECISION_ENV)!r} in the environment: it must be one of "
                          f"{', '.join(PRECISIONS[1:])} (or unset it, and auto decides by the hardware)")
    return value


@contextlib.contextmanager
def fp32_region(tensor: torch.Tensor) -> Iterator[None]:
    """Turns autocast off where a CPU kernel has no emulated bf16 path (oneDNN's LSTM).

    On a CPU without native bf16, ``torch.nn.LSTM`` under bf16 autocast fails with
    "could not create a primitive descriptor for the LSTM forward propagation primitive";
    there its recurrence runs in fp32 instead (inputs must then be cast to float)."""
    if tensor.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not cpu_bf16_support()[0]:
        with torch.autocast("cpu", enabled=False):
            yield
    else:
        yield
