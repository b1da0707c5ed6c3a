"""Process-group plumbing for torchrun, kept small so a single process never needs any of it.

torchrun (or `torch.multiprocessing.spawn` in the tests) sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. With WORLD_SIZE > 1 we join the group (NCCL on GPU, gloo on CPU)
and BatchNorm becomes SyncBatchNorm; with one process nothing is initialised, so one GPU or a
laptop runs the same code without a process group.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sceneparse.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among `world_size`, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs and the progress bar; the others stay quiet."""
        return self.rank == 0


def pick_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """"auto" (or None) is the local GPU of this process when there is one, else the CPU; "cuda:1" is taken as given."""
    name = name or "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA device is visible to this process")
        return torch.device(name) if ":" in name else torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")


def init_distributed(device_name: str = "auto", timeout_minutes: int = 30) -> DistInfo:
    """Join the process group torchrun describes in the environment (if WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=timeout_minutes),
            device_id=device if device.type == "cuda" else None,
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def convert_sync_bn(model: nn.Module, info: DistInfo) -> nn.Module:
    """SyncBatchNorm across processes when there are several; plain BatchNorm on one process.

    The statistics of the global batch are what the published recipes used (SyncBN over 4 or 8 GPUs).
    """
    if not info.distributed:
        return model
    if info.device.type == "cpu":  # torch's SyncBatchNorm refuses CPU tensors; gloo runs use ours
        from sceneparse.engine.sync_batchnorm import convert_process_group_bn

        return convert_process_group_bn(model)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes in place (no-op on one process); returns the tensor."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order; [obj] on one process."""
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
