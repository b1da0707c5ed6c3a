"""Two torchrun agents on this machine, as two nodes of one process each, train to the weights of one
process with the same global batch (gloo, CPU, static rendezvous on 127.0.0.1).

This is the launch docs/multinode.md describes for two machines (`--nnodes 2 --node-rank 0|1
--master-addr HOST --master-port PORT`), with both "machines" here. As in test_train_distributed.py
the runs are in float64, where the two runs agree to rounding (float32 is chaotic for this tiny
network). The worker is this file run as a module: `python -m tests.test_train_multinode WORK DATA`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sceneparse.engine.checkpoint import load_checkpoint
from sceneparse.engine.trainer import TrainOptions, train
from tests.test_train_distributed import EQUIVALENCE, _free_port, _relative_difference
from tests.test_train_resume import make_voc, tiny_preset

REPO = Path(__file__).resolve().parents[1]
NODES = 2


def _train(work_dir: str, data_root: str) -> int:
    torch.set_num_threads(1)
    result = train(tiny_preset(*EQUIVALENCE), TrainOptions(work_dir=work_dir, data_root=data_root, device="cpu",
                                                           progress=False, tensorboard=False, dtype=torch.float64))
    return result.iteration


def _agent(node_rank: int, port: int, work_dir: Path, data_root: Path, seen: Path) -> subprocess.Popen:
    """One node's torchrun (`python -m torch.distributed.run` is the `torchrun` command)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES), "--node-rank", str(node_rank),
               "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
               "-m", "tests.test_train_multinode", str(work_dir), str(data_root), str(seen)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_nodes_equal_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    data_root = make_voc(tmp_path / "voc")
    port, seen_dir = _free_port(), tmp_path / "seen"
    agents = [_agent(rank, port, tmp_path / "nodes", data_root, seen_dir) for rank in range(NODES)]
    # the single process runs meanwhile (the agents mostly wait for each other and for imports)
    assert _train(str(tmp_path / "one"), str(data_root)) == 6
    outputs = []
    try:
        for agent in agents:
            outputs.append(agent.communicate(timeout=240)[0])
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
    for rank, (agent, output) in enumerate(zip(agents, outputs, strict=True)):
        assert agent.returncode == 0, f"node {rank} failed:\n{output[-3000:]}"

    # each node ran one process of the two, and knew itself as that node
    seen = sorted((json.loads(p.read_text()) for p in seen_dir.glob("rank*.json")), key=lambda e: e["rank"])
    assert seen == [{"group_rank": r, "local_rank": 0, "rank": r, "world_size": NODES} for r in range(NODES)]
    one, _, _ = load_checkpoint(tmp_path / "one")
    two, state, _ = load_checkpoint(tmp_path / "nodes")
    assert len(state["rng"]) == NODES
    assert one.keys() == two.keys()
    for key, reference in one.items():
        if reference.is_floating_point():
            assert _relative_difference(two[key], reference) < 1e-5, key
        else:
            assert torch.equal(two[key], reference), key


if __name__ == "__main__":  # a torchrun worker
    work, data, seen = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    env = {name: int(os.environ[name.upper()]) for name in ("rank", "local_rank", "group_rank", "world_size")}
    seen.mkdir(parents=True, exist_ok=True)
    (seen / f"rank{env['rank']}.json").write_text(json.dumps(env, sort_keys=True))
    sys.exit(0 if _train(work, data) == 6 else 1)
