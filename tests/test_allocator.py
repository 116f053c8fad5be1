"""train.mmap_threshold_mb: glibc maps large blocks, so freed activations leave the process."""

import os
import subprocess
import sys

import pytest

from mt.training import allocator

# Fragments glibc's heap as a training step does: large blocks (after one was freed, which
# raises glibc's dynamic threshold above their size), every other one freed while its
# neighbours stay alive. Prints the resident MiB after.
SCRIPT = """
import ctypes, sys
from mt.training.allocator import map_large_blocks
if sys.argv[1] != "0":
    assert map_large_blocks(int(sys.argv[1])), "not applied"
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
big = 2 << 20
libc.free(libc.malloc(big))
blocks = []
for _ in range(200):
    blocks.append(libc.malloc(big))
    ctypes.memset(blocks[-1], 1, big)
for p in blocks[::2]:
    libc.free(p)
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
print(rss)
"""


def _rss_after(threshold: int) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(threshold)], capture_output=True, text=True, env=env,
                         check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not allocator.glibc_malloc(), reason="the setting is for glibc's malloc")
def test_a_fixed_mmap_threshold_gives_freed_large_blocks_back():
    default, mapped = _rss_after(0), _rss_after(1 << 20)
    # 200 of 400 MiB written were freed between live blocks: glibc's heap keeps them, mapped blocks go.
    assert default - mapped > 150, (default, mapped)


def test_the_users_own_allocator_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert allocator.map_large_blocks(1 << 20) is None
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert not allocator.glibc_malloc() and allocator.map_large_blocks(1 << 20) is None
    assert allocator.map_large_blocks(0) is None


def test_the_threshold_is_validated():
    from mt.errors import ConfigError
    from mt.presets import compose

    with pytest.raises(ConfigError, match="train.mmap_threshold_mb"):
        compose(["train.mmap_threshold_mb=-1"])
    assert compose(["train.mmap_threshold_mb=0"]).train.mmap_threshold_mb == 0


@pytest.mark.skipif(not allocator.glibc_malloc(), reason="the setting is for glibc's malloc")
def test_training_applies_the_threshold_and_says_so(corpus_dir, tmp_path):
    from .conftest import TINY_TRAIN, run_mt

    common = [*TINY_TRAIN, "model=rnn_noattn", "train.max_steps=1", f"data.dir={corpus_dir}",
              f"cache_dir={tmp_path / 'cache'}"]
    result = run_mt("train", *common, "train.mmap_threshold_mb=2", f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "maps blocks of 2 MiB and more" in result.stdout + result.stderr
    default = run_mt("train", *common, f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path)
    assert default.returncode == 0 and "maps blocks" not in default.stdout + default.stderr
