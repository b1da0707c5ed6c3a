"""Fine-tuning (--load-from), gradient accumulation and the weight average (train.accumulate, train.ema)."""
from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sceneparse.api
from sceneparse.api import build_model
from sceneparse.engine.checkpoint import load_checkpoint
from sceneparse.engine.trainer import TrainOptions, train
from sceneparse.errors import CheckpointError
from tests.test_hub import mmseg_checkpoint
from tests.test_train_resume import make_voc, tiny_preset

NO_NOISE = ("train.eval_interval=0", "model.decode_head.dropout=0", "model.aux_head.dropout=0")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"), n=8)


def run(cfg, work: Path, voc: Path, **options) -> None:  # noqa: ANN001
    train(cfg, TrainOptions(work_dir=str(work), data_root=str(voc), progress=False, **options))


def test_load_from_reinitialises_only_the_classifiers_of_another_class_count(
        voc_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(1)
    source = build_model(tiny_preset("model.num_classes=5"))
    ckpt = tmp_path / "five_classes.pth"
    ckpt.write_bytes(mmseg_checkpoint(source.state_dict()))  # an mmsegmentation checkpoint, 5 classes
    with caplog.at_level(logging.WARNING):
        run(tiny_preset("train.max_iters=1", "train.lr=1e-12", *NO_NOISE), tmp_path / "run", voc_root,
            load_from=str(ckpt))
    assert "re-initialised" in caplog.text and "decode_head.classifier" in caplog.text
    weights, _, _ = load_checkpoint(tmp_path / "run")
    for key, value in source.state_dict().items():
        if key.endswith("weight") and value.dim() == 4 and "classifier" not in key:
            assert torch.allclose(weights[key], value, atol=1e-6), key
    assert weights["decode_head.classifier.weight"].shape[0] == 21


def test_load_from_is_strict_for_everything_else(voc_root: Path, tmp_path: Path) -> None:
    other = build_model(tiny_preset("model.decode_head.channels=32"))
    ckpt = tmp_path / "wider.pth"
    ckpt.write_bytes(mmseg_checkpoint(other.state_dict()))
    with pytest.raises(CheckpointError, match="decode_head"):
        run(tiny_preset("train.max_iters=1", *NO_NOISE), tmp_path / "run", voc_root, load_from=str(ckpt))


def eval_mode_batchnorm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models whose BatchNorms use their running statistics in training too: then a batch's gradient is the
    sum of its images' and accumulation can be compared with the larger batch exactly."""
    def frozen(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def build(*args, **kwargs) -> nn.Module:  # noqa: ANN002, ANN003 (build_model's own signature)
        model = original(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.forward = types.MethodType(frozen, module)
        return model

    original = sceneparse.api.build_model
    monkeypatch.setattr(sceneparse.api, "build_model", build)


@pytest.mark.parametrize("average", ["all_pixels", "labelled"])
def test_accumulation_equals_the_larger_batch(voc_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              average: str) -> None:
    """batch 2 x accumulate 2 == batch 4: same images per step, same loss (recipe: 4 GPUs x 1 image), same LR."""
    eval_mode_batchnorm(monkeypatch)
    common = (*NO_NOISE, "train.max_iters=3", f"train.loss_average={average}", "train.recipe_gpus=4")
    run(tiny_preset(*common, "train.batch_size=4"), tmp_path / "big", voc_root, dtype=torch.float64)
    run(tiny_preset(*common, "train.batch_size=2", "train.accumulate=2"), tmp_path / "acc", voc_root,
        dtype=torch.float64)
    big, big_state, _ = load_checkpoint(tmp_path / "big")
    acc, acc_state, _ = load_checkpoint(tmp_path / "acc")
    assert acc_state["scheduler"]["iteration"] == big_state["scheduler"]["iteration"] == 3
    for key, value in big.items():
        if value.is_floating_point():
            assert torch.allclose(acc[key], value, rtol=1e-9, atol=1e-12), key
    moved = build_model(tiny_preset())  # the check has teeth: the weights did move
    assert not torch.allclose(big["decode_head.classifier.weight"].float(),
                              moved.state_dict()["decode_head.classifier.weight"])


def test_weight_average_is_exported_and_resumes_exactly(voc_root: Path, tmp_path: Path) -> None:
    # 8 images, micro-batches of 2, 2 per step: 2 steps per epoch; the stop falls mid-epoch
    cfg = tiny_preset(*NO_NOISE, "train.max_iters=4", "train.ema=0.5", "train.checkpoint_interval=2",
                      "train.batch_size=2", "train.accumulate=2")
    run(cfg, tmp_path / "whole", voc_root)
    run(cfg, tmp_path / "split", voc_root, stop_at=1)
    run(cfg, tmp_path / "split", voc_root, resume=True)
    whole, whole_state, _ = load_checkpoint(tmp_path / "whole")
    split, split_state, _ = load_checkpoint(tmp_path / "split")
    for key, value in whole.items():
        assert torch.equal(split[key], value), key  # the average, resumed bit for bit
        assert torch.equal(split_state["trained_weights"][key], whole_state["trained_weights"][key]), key
    key = "decode_head.classifier.weight"
    assert not torch.equal(whole[key], whole_state["trained_weights"][key])  # the file holds the average
