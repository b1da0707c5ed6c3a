"""Exact resume: a run stopped at iteration k and resumed reaches the weights of an uninterrupted run.

Also home of the tiny-run helpers the other `test_train_*` files import: an R-18 PSPNet a few
channels wide, 64 px crops, on a synthetic VOC dataset.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sceneparse.config import Preset, load_preset
from sceneparse.data.synth import synthesize
from sceneparse.engine.checkpoint import load_checkpoint, read_manifest
from sceneparse.engine.run_log import read_log
from sceneparse.engine.trainer import TrainOptions, train
from sceneparse.errors import CheckpointError

BASE_PRESET = "pspnet_r50-d8_512x512_20k_voc12aug"
TINY = [
    "model.backbone.depth=18", "model.backbone.base_channels=8", "model.backbone.stem_channels=8",
    "model.decode_head.channels=16", "model.aux_head.channels=8",
    "data.dataset=voc", "data.crop_size=[64,64]", "data.scale=[128,64]", "data.num_workers=0",
    "test.crop_size=[64,64]", "train.batch_size=4", "train.log_interval=1",
    "train.pretrained=none",  # a few channels wide: no ImageNet file fits (and tests never download)
]


def tiny_preset(*overrides: str) -> Preset:
    return load_preset(BASE_PRESET, [*TINY, *overrides])


def make_voc(root: Path, n: int = 24) -> Path:
    return synthesize("voc", root, n=n, size=64, seed=0, workers=1, progress=False)


def final_weights(work_dir: Path) -> dict[str, torch.Tensor]:
    weights, _, _ = load_checkpoint(work_dir)
    return weights


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.mark.parametrize("workers", [0, 1])
def test_stop_and_resume_is_bit_exact(voc_root: Path, tmp_path: Path, workers: int) -> None:
    # 24 images, batch 4: 6 iterations per epoch; stop mid-epoch 0, finish in epoch 1. Dropout stays on
    # (torch's generator must be restored), and validation runs in between (it must not disturb anything).
    # With workers, the loader's persistent workers must start the resumed epoch at the right batch.
    cfg = tiny_preset("train.max_iters=9", "train.checkpoint_interval=100", "train.eval_interval=5",
                      f"data.num_workers={workers}")
    whole = train(cfg, TrainOptions(work_dir=str(tmp_path / "whole"), data_root=str(voc_root), progress=False))
    assert whole.iteration == 9 and whole.stopped_by == "finished"

    first = train(cfg, TrainOptions(work_dir=str(tmp_path / "split"), data_root=str(voc_root), stop_at=4,
                                    progress=False))
    assert first.iteration == 4 and first.stopped_by == "stop_at"
    assert read_manifest(tmp_path / "split")["latest"] == "iter_0000004"
    second = train(cfg, TrainOptions(work_dir=str(tmp_path / "split"), data_root=str(voc_root), resume=True,
                                     progress=False))
    assert second.iteration == 9 and second.stopped_by == "finished"

    expected, resumed = final_weights(tmp_path / "whole"), final_weights(tmp_path / "split")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    # the weights did move after the stop: the comparison is not between two copies of the same file
    at_stop, _, _ = load_checkpoint(tmp_path / "split" / "iter_0000004.safetensors")
    assert any(not torch.equal(at_stop[k], resumed[k]) for k in resumed if k.endswith("weight"))
    losses = [r["loss"] for r in read_log(tmp_path / "whole") if "loss" in r]
    resumed_losses = [r["loss"] for r in read_log(tmp_path / "split") if "loss" in r]
    assert losses == resumed_losses and len(losses) == 9
    assert [r["iteration"] for r in read_log(tmp_path / "split") if "mIoU" in r] == [5, 9]


def test_existing_run_needs_resume_and_config_is_written(voc_root: Path, tmp_path: Path) -> None:
    cfg = tiny_preset("train.max_iters=2", "train.eval_interval=0")
    options = TrainOptions(work_dir=str(tmp_path), data_root=str(voc_root), progress=False)
    train(cfg, options)
    with pytest.raises(CheckpointError, match="--resume"):
        train(cfg, options)
    written = load_preset(tmp_path / "config.toml")
    assert written.model == cfg.model and written.train == cfg.train
    assert written.data.root == str(voc_root)
    _, state, _ = load_checkpoint(tmp_path)
    assert state["iteration"] == 2 and len(state["rng"]) == 1
