"""The training loader, able to start in the middle of an epoch (for an exact resume).

Order and augmentation come from `sceneparse.data.loader.SeededDistributedSampler`: the epoch's
permutation is a function of (seed, epoch) and each sample's randomness of (seed, epoch, index).
`ResumableSampler` adds one thing: it can skip the batches an interrupted run already trained on,
without loading them, so iteration k of a resumed run sees exactly the batch the uninterrupted run saw.
"""
from __future__ import annotations

import random
import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sceneparse.data.loader import SeededDistributedSampler
from sceneparse.distributed import DistInfo
from sceneparse.errors import ConfigError, DataError


class ResumableSampler(Sampler[tuple[int, int, int]]):
    """A SeededDistributedSampler whose next epoch can start `skip` samples in."""

    def __init__(self, inner: SeededDistributedSampler) -> None:
        self.inner = inner
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        keys = list(self.inner)
        return iter(keys[self.skip:])

    def __len__(self) -> int:
        return len(self.inner) - self.skip


def _seed_worker(worker_id: int) -> None:
    """Global RNGs of a worker seeded from torch's per-worker seed; transforms use per-sample generators.

    Ctrl-C reaches every process of the terminal's group: the workers ignore it, so the main process
    can finish its step, save a checkpoint and shut them down itself (see `sceneparse.engine.stop`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def per_process_batch(batch_size: int, info: DistInfo) -> int:
    """`train.batch_size` is the total over processes; it must split evenly."""
    if batch_size < 1 or batch_size % info.world_size:
        raise ConfigError(f"train.batch_size = {batch_size} is the total over all processes and must be a "
                          f"positive multiple of the {info.world_size} processes")
    return batch_size // info.world_size


def build_train_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int,
                       info: DistInfo) -> DataLoader:
    """Shuffled, seeded, full batches of `batch_size` per process (the last partial batch dropped)."""
    inner = SeededDistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                     seed=seed, drop_last=False)
    if len(inner) < batch_size:
        raise DataError(f"the training split has {len(dataset)} images: fewer than one batch of {batch_size} "  # type: ignore[arg-type]
                        f"per process over {info.world_size} process(es); lower train.batch_size")
    generator = torch.Generator()
    generator.manual_seed(seed + info.rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableSampler(inner),
        num_workers=num_workers,
        pin_memory=info.device.type == "cuda",
        drop_last=True,
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
    )


def batches_per_epoch(loader: DataLoader) -> int:
    """Full batches in one whole epoch (whatever the sampler's current skip)."""
    sampler = loader.sampler
    assert isinstance(sampler, ResumableSampler)
    return len(sampler.inner) // int(loader.batch_size or 1)
