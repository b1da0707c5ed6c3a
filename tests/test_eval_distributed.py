"""Distributed `sceneparse test`: 2 gloo processes on an odd number of images count each image once."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch.multiprocessing as mp

from sceneparse.evaluation.runner import TestOptions, run_test
from tests.test_eval_cli import synth_custom, tiny_preset, tiny_weights


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def options(weights: Path, data: Path, out: Path) -> TestOptions:
    return TestOptions(weights=str(weights), data_root=str(data), out_dir=str(out), save_pred=True,
                       device="cpu", num_workers=0, progress=False, figures=False)


def _worker(rank: int, world_size: int, port: int, weights: str, data: str, out: str) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    result = run_test(tiny_preset(), options(Path(weights), Path(data), Path(out)))
    (Path(out) / f"rank{rank}.txt").write_text(str(result.local_images))


def test_two_processes_give_the_single_process_matrix(tmp_path: Path) -> None:
    data = synth_custom(tmp_path / "data", 3)  # 3 validation images: does not divide by 2
    weights = tiny_weights(tmp_path / "w.safetensors")
    single = run_test(tiny_preset(), options(weights, data, tmp_path / "one"))
    assert single.num_images == 3

    mp.spawn(_worker, args=(2, free_port(), str(weights), str(data), str(tmp_path / "two")), nprocs=2, join=True)

    shards = [int((tmp_path / "two" / f"rank{rank}.txt").read_text()) for rank in range(2)]
    assert shards == [2, 1]  # really sharded: ranks 0 and 1 scored images {0, 2} and {1}
    two = np.load(tmp_path / "two" / "confusion.npy")
    np.testing.assert_array_equal(two, single.matrix)
    assert np.count_nonzero(single.matrix.sum(axis=0)) >= 2  # several classes predicted: a real comparison
    one_preds = sorted(p.name for p in (tmp_path / "one" / "pred").glob("*.png"))
    two_preds = sorted(p.name for p in (tmp_path / "two" / "pred").glob("*.png"))
    assert one_preds == two_preds == ["img_0000.png", "img_0001.png", "img_0002.png"]
    for name in one_preds:
        assert (tmp_path / "one" / "pred" / name).read_bytes() == (tmp_path / "two" / "pred" / name).read_bytes()
