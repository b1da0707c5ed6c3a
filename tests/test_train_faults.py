"""Faults during training: a NaN loss, SIGTERM, a save killed half-way, labels that cannot be right."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sceneparse.engine import trainer
from sceneparse.engine.checkpoint import load_checkpoint, read_manifest, remove_stale_temporaries
from sceneparse.engine.losses import SegmentationLoss
from sceneparse.engine.run_log import read_log
from sceneparse.engine.trainer import TrainingDiverged, TrainOptions, train
from sceneparse.errors import DataError
from tests.test_train_resume import BASE_PRESET, TINY, make_voc, tiny_preset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_last_checkpoint(
        voc_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poisoned_call = 5

    class PoisonedLoss(SegmentationLoss):
        calls = 0

        def consume(self, outputs, label, reduce_counts=None):  # noqa: ANN001, ANN202  (what the trainer calls)
            losses = super().consume(outputs, label, reduce_counts)
            PoisonedLoss.calls += 1
            if PoisonedLoss.calls == poisoned_call:
                losses["loss"] = losses["loss"] * float("nan")
            return losses

    def build(train_cfg, num_classes, ignore_index, aux_weight, align_corners):  # noqa: ANN001, ANN202
        return PoisonedLoss(num_classes, ignore_index, aux_weight, align_corners=align_corners)

    monkeypatch.setattr(trainer, "build_criterion", build)
    cfg = tiny_preset("train.max_iters=10", "train.checkpoint_interval=2", "train.eval_interval=0")
    with pytest.raises(TrainingDiverged, match=r"iteration 5\b.*iter_0000004"):
        train(cfg, TrainOptions(work_dir=str(tmp_path), data_root=str(voc_root), progress=False))
    manifest = read_manifest(tmp_path)
    assert manifest["latest"] == "iter_0000004"
    weights, state, _ = load_checkpoint(tmp_path)
    assert state["iteration"] == 4 and all(bool(torch.isfinite(w.float()).all()) for w in weights.values())
    assert max(r["iteration"] for r in read_log(tmp_path)) == 4  # nothing logged for the bad step


def _run_cli(args: list[str], **kwargs) -> subprocess.Popen:  # noqa: ANN003
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "sceneparse", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended early:\n{proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(voc_root: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    overrides = [f"--set={item}" for item in [*TINY, "train.max_iters=1000", "train.checkpoint_interval=1000",
                                               "train.eval_interval=0"]]
    proc = _run_cli(["train", BASE_PRESET, "--data-root", str(voc_root), "--work-dir", str(work), *overrides])
    log_file = work / "log.jsonl"
    _wait_for(lambda: log_file.is_file() and len(read_log(work)) >= 2, 120, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM" in output
    manifest = read_manifest(work)
    _, state, _ = load_checkpoint(work)
    assert 2 <= state["iteration"] < 1000
    assert manifest["latest"] == f"iter_{state['iteration']:07d}"
    assert max(r["iteration"] for r in read_log(work)) == state["iteration"]


# A child that writes checkpoint 1, then checkpoint 2 with one file's writer stalled after writing half
# of it; the test SIGKILLs it there, as a power cut or the OOM killer would.
WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    import sceneparse.engine.checkpoint as checkpoint
    import sceneparse.weights as weights

    work, stage = Path(sys.argv[1]), sys.argv[2]
    model = torch.nn.Conv2d(3, 4, 3)
    checkpoint.save_checkpoint(work, 1, model.state_dict(), {"iteration": 1}, {}, keep=3)
    real = weights.atomic_write

    def stalling(path, write):
        def half_then_stall(tmp):
            write(tmp)
            if Path(path).name.endswith(stage):
                size = Path(tmp).stat().st_size
                with open(tmp, "r+b") as fh:
                    fh.truncate(size // 2)
                (work / "stalled").write_text("")
                time.sleep(120)
        real(path, half_then_stall)

    weights.atomic_write = stalling
    checkpoint.atomic_write = stalling
    with torch.no_grad():
        model.weight.add_(1.0)
    checkpoint.save_checkpoint(work, 2, model.state_dict(), {"iteration": 2}, {}, keep=3)
""")


@pytest.mark.parametrize("stage", [".safetensors", ".state.pt", "checkpoints.json"])
def test_a_save_killed_half_way_leaves_the_previous_checkpoint_loadable(tmp_path: Path, stage: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), stage], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: (tmp_path / "stalled").exists(), 120, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(tmp_path.glob(".*.tmp")), "the kill did not land mid-write"

    weights, state, files = load_checkpoint(tmp_path)
    assert files.name == "iter_0000001" and state == {"iteration": 1}
    assert weights["weight"].shape == (4, 3, 3, 3)
    assert read_manifest(tmp_path)["checkpoints"] == ["iter_0000001"]
    assert remove_stale_temporaries(tmp_path) >= 1 and not list(tmp_path.glob(".*.tmp"))


def test_impossible_labels_are_refused_before_training(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", n=8)
    label_path = sorted((root / "SegmentationClass").glob("*.png"))[0]
    original = Image.open(label_path)
    label = np.array(original)
    label[:4, :4] = 60  # VOC has 21 classes and 255
    broken = Image.fromarray(label.astype(np.uint8))
    if original.mode == "P":
        broken.putpalette(original.getpalette())
    broken.save(label_path)
    cfg = tiny_preset("train.max_iters=2", "train.eval_interval=0")
    with pytest.raises(DataError, match="60"):
        train(cfg, TrainOptions(work_dir=str(tmp_path / "work"), data_root=str(root), progress=False))
    assert not (tmp_path / "work" / "checkpoints.json").exists()


def test_plot_writes_the_curves(voc_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sceneparse.cli import main

    cfg = tiny_preset("train.max_iters=4", "train.eval_interval=2")
    train(cfg, TrainOptions(work_dir=str(tmp_path), data_root=str(voc_root), progress=False))
    assert main(["plot", str(tmp_path)]) == 0
    png = tmp_path / "curves.png"
    assert png.is_file() and Image.open(png).format == "PNG"
    assert str(png) in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum("mIoU" in r for r in records) == 2


def test_plot_of_a_folder_without_a_log_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sceneparse.cli import main

    assert main(["plot", str(tmp_path)]) == 1
    assert "log.jsonl" in capsys.readouterr().err


def test_without_tensorboard_the_log_says_so_once_and_still_writes_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from sceneparse.engine.run_log import RunLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with caplog.at_level("INFO", logger="sceneparse.engine.run_log"):
        run_log = RunLog(tmp_path)
        run_log.write({"iteration": 1, "loss": 2.5})
        run_log.close()
    assert sum("tensorboard is not installed" in r.getMessage() for r in caplog.records) == 1
    assert read_log(tmp_path) == [{"iteration": 1, "loss": 2.5}]
    assert not (tmp_path / "tensorboard").exists()
