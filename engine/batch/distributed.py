"""Scale-out with torchrun: every rank takes its shard of the images on its own device.

Only the env:// rendezvous variables that torchrun sets are read (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so one node or many work alike. The device is
cuda:LOCAL_RANK when CUDA is available (NCCL), else the CPU (gloo). Results travel over a gloo
group, which works for Python objects whatever the main backend is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import EngineError

T = TypeVar("T")


@dataclass
class Ranks:
    """Where this process stands in the job; a plain run is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: str | None = None  # the rank's own device when launched by torchrun
    group: Any = None  # gloo group for gathering results

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def init_from_env() -> Ranks:
    """Join the torchrun job described by the environment (a single process when there is none)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Ranks()
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend, device = "nccl", f"cuda:{local_rank}"
    else:
        backend, device = "gloo", "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, _env_int("LOCAL_WORLD_SIZE", 1), device, group)


def rank_device(requested: str, ranks: Ranks) -> str:
    """The device a rank uses: its own GPU unless the user pinned the CPU or a particular GPU."""
    if ranks.device is None or requested not in ("auto", "cuda"):
        return requested
    return ranks.device


def gather_to_main(obj: Any, ranks: Ranks) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (in rank order); None on the other ranks."""
    if not ranks.distributed:
        return [obj]
    out: list[Any] | None = [None] * ranks.world_size if ranks.is_main else None
    dist.gather_object(obj, out, dst=0, group=ranks.group)
    return out


def all_gather(obj: Any, ranks: Ranks) -> list[Any]:
    """Every rank's `obj` on every rank (in rank order)."""
    if not ranks.distributed:
        return [obj]
    out: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(out, obj, group=ranks.group)
    return out


def agree(ranks: Ranks, step: Callable[[], T], what: str) -> T:
    """Run a local `step` on every rank, then share whether it failed anywhere.

    Why: a rank that raises before the next collective would leave the others waiting in it until the
    process-group timeout (or until the launcher kills them). After `agree` either every rank goes on,
    or every rank raises: the failed rank its own error, the others an EngineError naming that rank.
    """
    error: Exception | None = None
    value: Any = None
    try:
        value = step()
    except Exception as exc:  # reported to every rank below
        error = exc
    messages = all_gather(None if error is None else str(error) or type(error).__name__, ranks)
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        rank, message = failed[0]
        raise EngineError(f"rank {rank} failed while {what}: {message}")
    return value


def finish(ranks: Ranks, barrier: bool = True) -> None:
    """Leave the job; after a failure skip the barrier (the other ranks may never reach it)."""
    if ranks.distributed and dist.is_initialized():
        if barrier:
            dist.barrier(group=ranks.group)
        dist.destroy_process_group()
