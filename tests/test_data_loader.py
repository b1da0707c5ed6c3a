"""The DataLoader factory: batches of the crop size, the same samples whatever the number of
workers, a new order and new augmentation each epoch, and DistributedSampler shards that split the
data between ranks (two real gloo processes)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sceneparse.config.schema import DataConfig
from sceneparse.data.dataset import build_dataset
from sceneparse.data.loader import SeededDistributedSampler, ShardSampler, build_dataloader
from sceneparse.data.registry import DATASETS
from sceneparse.data.synth import synthesize

N = 6
CROP = 32


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc_loader")
    synthesize("voc", root, n=N, size=40, seed=4)
    return root


def _cfg(root: Path) -> DataConfig:
    return DataConfig(dataset="voc", root=str(root), crop_size=[CROP, CROP], scale=[80, 40])


def _epoch(loader, epoch: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_train_batches_are_full_and_of_the_crop_size(voc_root):
    loader = build_dataloader(build_dataset(_cfg(voc_root), "train", train=True), 4, train=True, num_workers=0,
                              seed=0, distributed=False)
    batches = _epoch(loader, 0)
    assert len(batches) == N // 4  # drop_last: 6 samples make one full batch of 4
    # uint8 crops (normalised on the device) with the box of real pixels
    assert batches[0]["image"].shape == (4, CROP, CROP, 3) and batches[0]["label"].shape == (4, CROP, CROP)
    assert batches[0]["image"].dtype == torch.uint8 and batches[0]["valid"].shape == (4, 4)
    assert batches[0]["label"].dtype == torch.uint8 and len(batches[0]["path"]) == 4  # widened on the device


def test_workers_do_not_change_the_samples(voc_root):
    dataset = build_dataset(_cfg(voc_root), "train", train=True)
    runs = []
    for workers in (0, 2):
        loader = build_dataloader(dataset, 2, train=True, num_workers=workers, seed=11, distributed=False)
        runs.append([_epoch(loader, epoch) for epoch in (0, 1)])
    for epoch in (0, 1):
        for plain, worked in zip(runs[0][epoch], runs[1][epoch], strict=True):
            assert plain["path"] == worked["path"]
            assert torch.equal(plain["image"], worked["image"]) and torch.equal(plain["label"], worked["label"])
    # a new epoch draws new augmentation for every sample
    by_path = [
        {path: image for batch in runs[0][e] for path, image in zip(batch["path"], batch["image"], strict=True)}
        for e in (0, 1)
    ]
    assert set(by_path[0]) == set(by_path[1])
    assert all(not torch.equal(by_path[0][path], by_path[1][path]) for path in by_path[0])


def test_test_loader_reads_every_sample_once_in_order(voc_root):
    dataset = build_dataset(_cfg(voc_root), "val", train=False)
    loader = build_dataloader(dataset, 1, train=False, num_workers=0, seed=0, distributed=False)
    paths = [batch["path"][0] for batch in loader]
    assert paths == [str(sample.image) for sample in dataset.samples]


def test_samplers_split_the_data_between_ranks(voc_root):
    dataset = build_dataset(_cfg(voc_root), "train", train=True)
    shards = [list(SeededDistributedSampler(dataset, num_replicas=3, rank=r, shuffle=True, seed=5)) for r in range(3)]
    indices = [index for shard in shards for _seed, _epoch, index in shard]
    assert sorted(indices) == list(range(N)) and {s[0] for shard in shards for s in shard} == {5}
    tests = [list(ShardSampler(dataset, 4, r)) for r in range(4)]
    assert sorted(i for shard in tests for i in shard) == list(range(N))  # no padding, nothing twice


def _rank_main(rank: int, world: int, init_file: str, root: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = _cfg(Path(root))
        train = build_dataloader(build_dataset(cfg, "train", train=True), 1, train=True, num_workers=0, seed=3,
                                 distributed=True)
        test = build_dataloader(build_dataset(cfg, "val", train=False), 1, train=False, num_workers=0, seed=3,
                                distributed=True)
        result = {
            "sampler": type(train.sampler).__name__,
            "train": {str(e): [p for b in _epoch(train, e) for p in b["path"]] for e in (0, 1)},
            "test": [p for b in test for p in b["path"]],
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_distributed_loaders_shard_train_and_test_between_two_processes(voc_root, tmp_path):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(voc_root), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert {r["sampler"] for r in ranks} == {"SeededDistributedSampler"}
    for epoch in ("0", "1"):
        shards = [set(r["train"][epoch]) for r in ranks]
        assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == N
    assert ranks[0]["train"]["0"] != ranks[0]["train"]["1"] or ranks[1]["train"]["0"] != ranks[1]["train"]["1"]
    tests = [r["test"] for r in ranks]
    assert sorted(tests[0] + tests[1]) == sorted(str(image) for image, _ in DATASETS["voc"].pairs(voc_root, "val"))
