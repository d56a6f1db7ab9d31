"""Sharding over `torchrun` ranks and exact merging of per-rank results (gloo on CPU, NCCL on GPU).

Under `torchrun --nproc-per-node N`, every process sees RANK, WORLD_SIZE and LOCAL_RANK in its
environment. `init_from_env` joins the process group; each rank then takes every N-th item of
the data (`Shard`), and `all_gather` collects per-rank tensors so each rank can merge exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's place among the ranks."""

    rank: int = 0  # this process, 0-based
    world_size: int = 1  # how many processes share the work

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def indices(self, total: int) -> range:
        """The items of a `total`-item data set this rank handles: every world_size-th one."""
        return range(self.rank, total, self.world_size)


def current_shard() -> Shard:
    """The rank and world size of the joined process group (a single process when none)."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (if any); returns this rank's device.

    Uses NCCL for CUDA devices (one GPU per local rank) and gloo otherwise.
    """
    if not launched_by_torchrun() or not dist.is_available():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's `tensor` (same shape on all ranks), in rank order."""
    shard = current_shard()
    if shard.world_size == 1:
        return [tensor]
    # NCCL only moves CUDA tensors and gloo only CPU ones; keep each where its backend wants it.
    on_cuda = dist.get_backend() == "nccl"
    local = tensor.contiguous() if on_cuda else tensor.detach().cpu().contiguous()
    parts = [torch.empty_like(local) for _ in range(shard.world_size)]
    dist.all_gather(parts, local)
    return [part.to(tensor.device) for part in parts]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's picklable `value`, in rank order."""
    shard = current_shard()
    if shard.world_size == 1:
        return [value]
    gathered: list[Any] = [None] * shard.world_size
    dist.all_gather_object(gathered, value)
    return gathered
