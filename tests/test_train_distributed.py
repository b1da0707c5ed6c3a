"""Two CPU processes (gloo, SyncBN) train to the weights of one process with the same global batch.

The runs are in float64: in float32 this tiny network is chaotic to rounding (one process with 1
thread vs 2 threads already differs by 1e-2 relative in some BN biases after 6 steps), so float32
could not tell a wrong gradient from reordered sums; in float64 the two runs agree to ~1e-12.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from sceneparse.engine.checkpoint import load_checkpoint
from sceneparse.engine.run_log import read_log
from sceneparse.engine.trainer import TrainOptions, train
from tests.test_train_resume import make_voc, tiny_preset

# No dropout: the two processes draw their own masks, which one process cannot reproduce.
EQUIVALENCE = ("train.eval_interval=0", "model.decode_head.dropout=0",
               "model.aux_head.dropout=0", "train.checkpoint_interval=100", "train.max_iters=6")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data_root: str, work_dir: str, definition: tuple[str, ...]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = train(tiny_preset(*EQUIVALENCE, *definition),
                   TrainOptions(work_dir=work_dir, data_root=data_root, device="cpu", progress=False,
                                dtype=torch.float64))
    assert result.iteration == 6


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


# The preset's own normalisation (mmsegmentation: all pixels, 4 GPUs), and sssegmentation's per-GPU mean over
# labelled pixels with 2 recipe GPUs: one process normalises images {0, 2} and {1, 3} of each batch apart,
# as the two processes (and the recipe's two GPUs) do.
@pytest.mark.parametrize("definition", [(), ("train.loss_average=labelled", "train.recipe_gpus=2")])
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path: Path, definition: tuple[str, ...]) -> None:
    data_root = make_voc(tmp_path / "voc")
    torch.set_num_threads(1)
    single = train(tiny_preset(*EQUIVALENCE, *definition),
                   TrainOptions(work_dir=str(tmp_path / "one"), data_root=str(data_root), device="cpu",
                                progress=False, dtype=torch.float64))
    assert single.iteration == 6
    mp.spawn(_worker, args=(2, _free_port(), str(data_root), str(tmp_path / "two"), definition), nprocs=2,
             join=True)

    one, _, _ = load_checkpoint(tmp_path / "one")
    two, state, _ = load_checkpoint(tmp_path / "two")
    assert len(state["rng"]) == 2  # both processes' generators are in the checkpoint
    assert one.keys() == two.keys()
    for key, reference in one.items():
        if reference.is_floating_point():
            assert _relative_difference(two[key], reference) < 1e-5, key
        else:
            assert torch.equal(two[key], reference), key  # BN batch counters
    # the global-batch loss logged by rank 0 is the single process's loss
    losses_one = [r["loss"] for r in read_log(tmp_path / "one")]
    losses_two = [r["loss"] for r in read_log(tmp_path / "two")]
    assert len(losses_two) == 6
    for a, b in zip(losses_one, losses_two, strict=True):
        assert abs(a - b) <= 1e-5 * abs(a)
    # and training moved the weights away from their initialisation (same seed as the runs)
    from sceneparse.api import build_model

    torch.manual_seed(0)
    initial = build_model(tiny_preset(*EQUIVALENCE)).state_dict()
    assert not torch.allclose(initial["decode_head.classifier.weight"].double(), one["decode_head.classifier.weight"])
