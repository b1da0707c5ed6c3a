"""The loss and its gradients equal the source toolboxes' on a batch with ignored pixels.

References: tests/fixtures/recipes/loss_reference.npz, made by mmsegmentation 1.2.2 and
sssegmentation 1.7.0 themselves (tools/fixtures/make_loss_fixtures.py, run in .venv-peers). Each
case is the source's head loss on the same head-sized logits (upsampled by the source's own resize),
per GPU where the case says so (GPU g holds images g, g + G, ...) and averaged as DDP does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sceneparse.engine.losses import SegmentationLoss, Shard

FIXTURE = Path(__file__).parent / "fixtures" / "recipes" / "loss_reference.npz"
WEIGHTS = [1.0, 2.0, 0.5, 1.5, 3.0]  # the fixture script's CLASS_WEIGHTS
OHEM = {"ohem_thresh": 0.7, "ohem_min_kept": 40}

# case: (loss_average, recipe GPUs, align_corners, OHEM, aux head, class weights)
CASES = {
    "mmseg_ce": ("all_pixels", 1, False, False, False, None),
    "mmseg_ce_aux": ("all_pixels", 1, False, False, True, None),
    "mmseg_ce_aligned_2gpu": ("all_pixels", 2, True, False, True, None),
    "mmseg_ohem": ("all_pixels", 1, False, True, False, None),
    "mmseg_ohem_2gpu": ("all_pixels", 2, False, True, False, None),
    "ssseg_ce_aux": ("labelled", 1, False, False, True, None),
    "ssseg_ce_aux_2gpu": ("labelled", 2, False, False, True, None),
    "ssseg_ce_aux_4gpu_aligned": ("labelled", 4, True, False, True, None),
    "ssseg_weighted_2gpu": ("labelled", 2, False, False, True, WEIGHTS),
    "ssseg_ohem_2gpu": ("labelled", 2, False, True, True, None),
}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


def criterion_for(case: str) -> SegmentationLoss:
    average, gpus, align, ohem, _, weights = CASES[case]
    return SegmentationLoss(5, 255, 0.4, "ohem" if ohem else "ce", weights, align_corners=align, average=average,
                            groups=gpus, **OHEM)


def inputs(reference: dict[str, np.ndarray], case: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    outputs = {"out": torch.tensor(reference["out"], requires_grad=True)}
    if CASES[case][4]:
        outputs["aux"] = torch.tensor(reference["aux"], requires_grad=True)
    return outputs, torch.from_numpy(reference["label"]).long()


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_and_gradients_equal_the_source(reference: dict[str, np.ndarray], case: str) -> None:
    outputs, label = inputs(reference, case)
    loss = criterion_for(case)(outputs, label)["loss"]
    loss.backward()
    expected = torch.from_numpy(reference[f"{case}.loss"])
    assert relative(loss.detach(), expected) < 1e-6
    for key in outputs:
        assert relative(outputs[key].grad, torch.from_numpy(reference[f"{case}.grad_{key}"])) < 1e-6, key


@pytest.mark.parametrize("case", ["mmseg_ohem_2gpu", "ssseg_ce_aux", "ssseg_ce_aux_2gpu", "ssseg_ce_aux_4gpu_aligned"])
def test_two_processes_compute_the_recipes_gradients(reference: dict[str, np.ndarray], case: str) -> None:
    """The same batch on 2 processes (each its interleaved share, denominators summed over both): DDP's
    average of their gradients is the source's, whether a recipe GPU's images sit on one process or on two."""
    outputs, label = inputs(reference, case)
    criterion = criterion_for(case)
    local: list[torch.Tensor] = []
    for rank in range(2):  # first pass: what each process hands to the all-reduce
        criterion({k: v[rank::2] for k, v in outputs.items()}, label[rank::2],
                  Shard(rank, 2, lambda counts: local.append(counts) or counts))
    summed = local[0] + local[1]
    total = sum(criterion({k: v[rank::2] for k, v in outputs.items()}, label[rank::2],
                          Shard(rank, 2, lambda _c: summed))["loss"] for rank in range(2)) / 2
    total.backward()
    assert relative(total.detach(), torch.from_numpy(reference[f"{case}.loss"])) < 1e-6
    for key in outputs:
        assert relative(outputs[key].grad, torch.from_numpy(reference[f"{case}.grad_{key}"])) < 1e-6, key


def test_all_pixel_class_weights_follow_mmseg_0x(reference: dict[str, np.ndarray]) -> None:
    """mmsegmentation 0.x (avg_non_ignore=False): mean over all pixels of w[y] * ce, ignored pixels 0.

    mmsegmentation 1.2.2 cannot make this reference (its CrossEntropyLoss indexes the class weights
    with 255 when a batch has ignored pixels), so the documented 0.x formula is the reference:
    `weight_reduce_loss(F.cross_entropy(pred, label, weight, reduction='none', ignore_index), mean)`."""
    logits = torch.from_numpy(reference["out"])
    label = torch.from_numpy(reference["label"]).long()
    up = F.interpolate(logits, label.shape[-2:], mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up, label, weight=torch.tensor(WEIGHTS, dtype=torch.float64), reduction="none",
                               ignore_index=255).mean()
    criterion = SegmentationLoss(5, class_weights=WEIGHTS, align_corners=False, average="all_pixels", groups=4)
    assert relative(criterion({"out": logits}, label)["loss"], expected) < 1e-6


def test_the_definitions_differ_on_this_batch(reference: dict[str, np.ndarray]) -> None:
    """The fixture can tell the definitions apart: all-pixel and labelled means, per GPU and global."""
    losses = [float(reference[f"{case}.loss"]) for case in ("mmseg_ce_aux", "ssseg_ce_aux", "ssseg_ce_aux_2gpu")]
    assert min(abs(a - b) / b for a in losses for b in losses if a != b) > 0.005
