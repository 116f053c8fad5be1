"""How the C allocator hands memory back, which decides a CPU run's peak memory.

glibc's malloc serves a block of at least its mmap threshold with its own mapping, returned
to the system when freed; smaller blocks come from the heap, whose freed space stays in the
process. The threshold starts at 128 KiB but rises (to 32 MiB at most) each time a mapped
block is freed, so after the first training step nearly every activation of a batch comes
from the heap, and the heap's free holes between steps count in the resident size. A fixed
threshold keeps large tensors mapped: the resident size then follows the tensors alive.
Measured in docs/lab/benchmarks.md (peak memory and speed, with and without it).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")


def glibc_malloc() -> bool:
    """Whether malloc is glibc's (not musl's, and no jemalloc / tcmalloc preloaded)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    preload = os.environ.get("LD_PRELOAD", "")
    return not any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc"))


def map_large_blocks(threshold_bytes: int) -> str | None:
    """Fix glibc's mmap threshold at ``threshold_bytes`` (and trim the heap's top eagerly).
    Returns what was done, or None where it does not apply: another allocator, or the user set
    glibc's own variables (theirs win)."""
    if threshold_bytes <= 0 or not glibc_malloc():
        return None
    if any(os.environ.get(name) for name in ENV):
        return None
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, threshold_bytes) != 1 or mallopt(M_TRIM_THRESHOLD, 2 * threshold_bytes) != 1:
        return None
    return f"glibc malloc maps blocks of {threshold_bytes / 2**20:g} MiB and more (freed at once)"
