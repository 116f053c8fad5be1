"""Several processes, one model: PyTorch distributed, as ``torchrun`` starts it.

``torchrun --nproc_per_node=N -m mt train ...`` starts N copies of ``mt train``, each with
RANK, WORLD_SIZE and LOCAL_RANK in its environment; ``init_from_env`` joins them into one
process group (``nccl`` on GPUs, ``gloo`` on CPUs). The trainer wraps the model in
DistributedDataParallel, so gradients are all-reduced; everything else a rank needs to
agree on (the training loss, the time budget, validation scores) goes through the small
helpers here. Without torchrun every helper is a no-op and the world has one rank.
"""

from __future__ import annotations

import gc
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mt.errors import ConfigError, MTError

log = logging.getLogger("mt.train")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> World:
    """Joins the process group torchrun set up (once); the device decides the backend."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return world()
    if not dist.is_available():
        raise MTError("this PyTorch build has no torch.distributed: run mt train without torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if use_cuda:
        check_gpus_for(int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1)), device)
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    w = world()
    if not w.main:  # one voice: only rank 0 logs (warnings and errors still come from all)
        logging.getLogger("mt").setLevel(logging.WARNING)
    return w


def check_gpus_for(processes: int, device: str) -> None:
    """Each process on a machine trains on a GPU of its own: more processes than GPUs is refused
    before any of them takes a device (rank 1 would die in torch.cuda.set_device)."""
    if device.startswith("cpu") or not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    if processes > gpus:
        raise ConfigError(f"{processes} training processes on this machine but it has {gpus} GPU(s), and each "
                          f"process needs its own: use train.ddp={gpus} (torchrun --nproc_per_node={gpus}), or "
                          f"train.device=cpu to train on the CPU cores (gloo)")


def device_for(name: str, w: World) -> str:
    """Each rank its own GPU: ``auto`` and ``cuda`` become ``cuda:LOCAL_RANK`` under torchrun."""
    if w.size > 1 and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{w.local_rank}"
    return name


def shutdown(finished: bool = True) -> None:
    """Leaves the process group. After a finished run every rank first waits for the others
    (rank 0 is still writing the model directory when rank 1 gets here): a rank that tore down
    its gloo connections while a peer still held them was seen to abort ("terminate called
    without an active exception") and take the run down with it. The DDP wrapper, which holds
    the group, is collected first so that the group really ends here and not in the
    interpreter's finalisation. After an error there is no waiting: the peers may be stuck in
    a collective that will never complete."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished and dist.get_world_size() > 1:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first (it may write caches: the demo corpus, tokenizers), then
    the others, which find what it wrote."""
    w = world()
    if w.size > 1 and not w.main:
        dist.barrier()
    yield
    if w.size > 1 and w.main:
        dist.barrier()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """The sum over ranks of each value (float64)."""
    if world().size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return t.tolist()


def broadcast(values: list[float], src: int = 0) -> list[float]:
    """Rank ``src``'s values on every rank."""
    if world().size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.broadcast(t, src)
    return t.tolist()


def broadcast_object(obj: object, src: int = 0) -> object:
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def own_cuda_rng_state(device: torch.device) -> torch.Tensor:
    """The generator state of this process's GPU (an empty tensor on the CPU)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return torch.empty(0, dtype=torch.uint8)
    return torch.cuda.get_rng_state(device)


def gather_rng_states(device: torch.device | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every rank's CPU generator state and the state of its own GPU's generator (empty on
    CPU), in rank order, on every rank: each rank draws its dropout from its own GPU, which
    rank 0's process never touches."""
    state = (torch.get_rng_state(), own_cuda_rng_state(device or torch.device("cpu")))
    if world().size == 1:
        return [state[0]], [state[1]]
    out: list[object] = [None] * world().size
    dist.all_gather_object(out, state)
    return [s[0] for s in out], [s[1] for s in out]  # type: ignore[index]


def deal(sizes: list[int], ranks: int) -> list[list[int]]:
    """Positions of an update's batches for each rank, largest first to the rank with the
    fewest tokens so far, each rank getting the same number of batches (the last update
    of an epoch may leave some ranks fewer). ``sizes``: target tokens per batch."""
    per_rank = -(-len(sizes) // ranks)
    shares: list[list[int]] = [[] for _ in range(ranks)]
    load = [0] * ranks
    for pos in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        open_ranks = [r for r in range(ranks) if len(shares[r]) < per_rank]
        r = min(open_ranks, key=lambda r: (load[r], r))
        shares[r].append(pos)
        load[r] += sizes[pos]
    return [sorted(s) for s in shares]
