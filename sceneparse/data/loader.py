"""DataLoader factory: workers, pinned memory, DistributedSampler, reproducible augmentation.

Training uses `SeededDistributedSampler`, a DistributedSampler (with one replica when not
distributed) whose items are (seed, epoch, index) keys instead of bare indices. The order is
fixed by (seed, epoch) as usual (call `loader.sampler.set_epoch(epoch)` each epoch), and the key
carries the same information to the dataset, so a sample's augmentation does not depend on which
worker draws it or on persistent workers seeing a stale epoch.

Testing reads every sample exactly once, in order; distributed, each rank takes every
world_size-th sample (no padding, so nothing is scored twice).
"""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler


class SeededDistributedSampler(DistributedSampler):
    """DistributedSampler yielding (seed, epoch, index) so each sample's randomness is pinned down."""

    def __iter__(self) -> Iterator[tuple[int, int, int]]:  # type: ignore[override]
        for index in super().__iter__():
            yield (self.seed, self.epoch, index)


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, rank + 2*world, ...: an in-order shard with no repeated sample."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        self.length = len(dataset)  # type: ignore[arg-type]
        self.num_replicas, self.rank = num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


def _seed_worker(worker_id: int) -> None:
    """Seed the global RNGs of a worker from torch's per-worker seed (fixed by the loader's generator),
    for any code that uses them; our transforms use the per-sample Generator instead."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)  # workers are the parallelism; threads inside them only contend
    # OpenCV is NOT reconfigured here: cv2.setNumThreads in a forked child tears down the pool state it
    # inherited and can deadlock; sceneparse.data.transforms sets one thread in the parent, before any fork.


def _world() -> tuple[int, int]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError("distributed=True needs torch.distributed to be initialised first")
    return torch.distributed.get_world_size(), torch.distributed.get_rank()


def build_dataloader(
    dataset: Dataset, batch_size_per_process: int, train: bool, num_workers: int, seed: int, distributed: bool
) -> DataLoader:
    """The DataLoader for training (shuffled, seeded, full batches) or testing (in order, each sample once)."""
    world, rank = _world() if distributed else (1, 0)
    if train:
        sampler: Sampler = SeededDistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        # Full batches keep batch statistics meaningful; a dataset smaller than a batch still yields one.
        drop_last = len(sampler) >= batch_size_per_process
    else:
        sampler = ShardSampler(dataset, world, rank) if distributed else SequentialSampler(dataset)
        drop_last = False
    generator = torch.Generator()
    generator.manual_seed(seed + rank)
    return DataLoader(
        dataset,
        batch_size=batch_size_per_process,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=train and num_workers > 0,
    )
