"""Joining the process group that `torchrun` describes, for distributed evaluation.

`torchrun --nproc-per-node N -m sceneparse test ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK in their environment. Each evaluates its shard of the images (every N-th, no padding,
see `sceneparse.data.loader.ShardSampler`) and the confusion matrices are summed, so every image
counts exactly once whatever N.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """`requested` ("cpu", "cuda", "cuda:1", ...), else this process's GPU when there is one, else the CPU."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
        return device
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_from_env(requested_device: str | None = None) -> DistInfo:
    """Join the torchrun process group (NCCL on GPUs, gloo on CPUs); one process when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world, device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
