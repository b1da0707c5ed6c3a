"""The recipe's parts: global-batch loss, head LR, epoch schedules, AMP/OHEM/clipping options, ImageNet backbones."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sceneparse.engine.checkpoint import load_checkpoint, read_manifest
from sceneparse.engine.losses import SegmentationLoss, Shard
from sceneparse.engine.pretrained import load_pretrained_backbone
from sceneparse.engine.run_log import read_log
from sceneparse.engine.trainer import TrainOptions, train
from sceneparse.errors import CheckpointError
from sceneparse.models.resnet import ResNet
from tests.test_train_resume import make_voc, tiny_preset


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


def test_consume_frees_each_logits_map_once_its_loss_is_computed() -> None:
    """The training loop's form of the loss: same values, and the logits are let go (peak memory)."""
    import gc
    import weakref

    criterion = SegmentationLoss(5)
    label = torch.randint(0, 5, (2, 8, 8))
    outputs = {"out": torch.randn(2, 5, 8, 8, requires_grad=True), "aux": torch.randn(2, 5, 8, 8)}
    expected = criterion(outputs, label)
    assert set(outputs) == {"out", "aux"}  # calling the loss leaves the outputs alone
    seen = weakref.ref(outputs["aux"])
    consumed = criterion.consume(outputs, label)
    assert outputs == {}
    gc.collect()
    assert seen() is None  # nothing kept the aux logits alive (only its log-softmax, which is not this tensor)
    for name in ("loss", "loss_decode", "loss_aux"):
        assert torch.equal(consumed[name], expected[name])


@pytest.mark.parametrize("kind", ["ce", "ohem"])
def test_loss_over_two_shards_equals_the_loss_of_the_whole_batch(kind: str) -> None:
    # What two processes compute (each its share, the denominators summed over both) averages to one process's
    # loss, even when the shares hold different numbers of labelled pixels. CE: one normalisation group (the
    # whole batch, spread over both processes); OHEM: two groups (the recipe's GPUs), one per process.
    torch.manual_seed(0)
    groups = 2 if kind == "ohem" else 1
    criterion = SegmentationLoss(5, kind=kind, class_weights=[1.0, 2.0, 0.5, 1.0, 3.0], ohem_min_kept=10,
                                 groups=groups)
    logits = {"out": torch.randn(4, 5, 8, 8), "aux": torch.randn(4, 5, 8, 8)}
    label = torch.randint(0, 5, (4, 8, 8))
    label[1::2, :5] = 255  # the second process's images have far fewer labelled pixels
    whole = criterion(logits, label)
    shares = [({k: v[r::2] for k, v in logits.items()}, label[r::2]) for r in range(2)]  # DDP's sampler interleaves
    local: list[torch.Tensor] = []
    for rank, (outputs, part) in enumerate(shares):  # what each process hands to the all-reduce
        criterion(outputs, part, Shard(rank, 2, lambda counts: local.append(counts) or counts))
    total_counts = local[0] + local[1]
    per_process = [criterion(outputs, part, Shard(rank, 2, lambda _c: total_counts))["loss"]
                   for rank, (outputs, part) in enumerate(shares)]
    averaged = (per_process[0] + per_process[1]) / 2  # what DDP's gradient average amounts to
    assert torch.allclose(averaged, whole["loss"], rtol=1e-5)
    assert not torch.allclose(criterion(*shares[0])["loss"], whole["loss"], rtol=1e-3)  # plain per-shard means differ


def test_epoch_schedule_and_head_lr_multiplier(voc_root: Path, tmp_path: Path) -> None:
    # 24 images, batch 4: 6 iterations per epoch, so 2 epochs are 12 iterations
    cfg = tiny_preset("train.max_iters=0", "train.max_epochs=2", "train.head_lr_mult=10.0", "train.eval_interval=1",
                      "train.checkpoint_interval=1", "train.warmup_iters=3", "train.warmup_ratio=0.1")
    result = train(cfg, TrainOptions(work_dir=str(tmp_path), data_root=str(voc_root), progress=False))
    assert result.max_iters == 12 and result.iteration == 12
    records = read_log(tmp_path)
    assert [r["iteration"] for r in records if "mIoU" in r] == [6, 12]  # eval_interval counts epochs here
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs[0] < lrs[3] and lrs[3] > lrs[-1]  # warm-up, then poly decay
    best = read_manifest(tmp_path)["best"]
    assert best["value"] == max(r["mIoU"] for r in records if "mIoU" in r)
    best_weights = (tmp_path / f"{best['name']}.safetensors").read_bytes()
    assert (tmp_path / "best.safetensors").read_bytes() == best_weights  # ready for `sceneparse test --weights`
    _, state, _ = load_checkpoint(tmp_path)
    groups = {g["name"]: g for g in state["optimizer"]["param_groups"]}
    assert groups["heads"]["initial_lr"] == pytest.approx(10 * groups["backbone"]["initial_lr"])


def test_amp_channels_last_ohem_clipping_and_class_weights_train(voc_root: Path, tmp_path: Path) -> None:
    weights = ",".join(["1.0"] * 20 + ["2.0"])
    cfg = tiny_preset("train.max_iters=3", "train.eval_interval=3", "train.amp=bf16", "train.channels_last=true",
                      "train.loss=ohem", "train.ohem_min_kept=500", "train.grad_clip=1.0",
                      f"train.class_weights=[{weights}]")
    result = train(cfg, TrainOptions(work_dir=str(tmp_path), data_root=str(voc_root), progress=False))
    assert result.iteration == 3 and result.metrics["mIoU"] is not None
    assert all(math.isfinite(r["loss"]) for r in read_log(tmp_path) if "loss" in r)
    saved, _, _ = load_checkpoint(tmp_path)
    assert all(v.dtype != torch.bfloat16 for v in saved.values())  # AMP keeps float32 master weights


def test_imagenet_backbone_loads_strictly_and_names_the_stem(tmp_path: Path) -> None:
    source = ResNet(depth=18, stem="b", base_channels=8)
    state = {**source.state_dict(), "fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # as torchvision files
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)

    target = ResNet(depth=18, stem="b", base_channels=8)
    assert load_pretrained_backbone(target, path) == "torchvision"
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(target.state_dict()[key], value), key

    deep_stem = ResNet(depth=18, stem="v1c", base_channels=8)
    with pytest.raises(CheckpointError, match="stem"):
        load_pretrained_backbone(deep_stem, path)


def test_a_checkpoint_rebuilds_its_own_model_without_the_preset(voc_root: Path, tmp_path: Path) -> None:
    # the tiny overrides (widths, classes) exist nowhere but in the run's config: the weights file carries it
    import dataclasses

    import numpy as np

    from sceneparse.segmenter import Segmenter

    cfg = dataclasses.replace(tiny_preset("train.max_iters=2", "train.eval_interval=0"), name="my_own_run")
    train(cfg, TrainOptions(work_dir=str(tmp_path), data_root=str(voc_root), progress=False))
    weights = tmp_path / f"{read_manifest(tmp_path)['latest']}.safetensors"
    segmenter = Segmenter.from_pretrained(weights, device="cpu")
    assert segmenter.preset.name == "my_own_run"
    assert segmenter.preset.model.backbone.base_channels == 8 and segmenter.num_classes == 21
    labels = segmenter.predict(np.zeros((40, 56, 3), dtype=np.uint8))
    assert labels.shape == (40, 56)


def test_the_training_loop_scores_the_heads_own_logits(voc_root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop hands the loss the heads' logits, not upsampled ones (the loss upsamples band by band)."""
    from sceneparse.engine import trainer

    seen: list[tuple[tuple[int, ...], tuple[int, ...], bool]] = []

    class Recording(SegmentationLoss):
        def consume(self, outputs, label, reduce_counts=None):  # noqa: ANN001, ANN202  (what the trainer calls)
            seen.append((tuple(outputs["out"].shape[-2:]), tuple(label.shape[-2:]), self.align_corners))
            return super().consume(outputs, label, reduce_counts)

    def build(train_cfg, num_classes, ignore_index, aux_weight, align_corners):  # noqa: ANN001, ANN202
        return Recording(num_classes, ignore_index, aux_weight, align_corners=align_corners)

    monkeypatch.setattr(trainer, "build_criterion", build)
    cfg = tiny_preset("train.max_iters=2", "train.eval_interval=0", "model.align_corners=true")
    train(cfg, TrainOptions(work_dir=str(tmp_path), data_root=str(voc_root), progress=False))
    assert len(seen) == 2
    for logits_size, label_size, align_corners in seen:
        assert logits_size[0] * 8 == label_size[0] and logits_size[1] * 8 == label_size[1]  # output stride 8
        assert align_corners is True  # the model's, from the preset
