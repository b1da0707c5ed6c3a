"""The loss on the heads' own logits (upsampled band by band inside it) equals the loss on logits
upsampled first: values, gradients, OHEM's selection; and the segmentor hands those logits over."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sceneparse.engine import upsampled_loss
from sceneparse.engine.losses import SegmentationLoss, ohem_mask
from sceneparse.engine.upsampled_loss import upsampled_cross_entropy_sum
from sceneparse.models import build_segmentor
from tests.conftest import tiny_config


@pytest.fixture
def small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of a few rows, so the tests' small maps are cut into many."""
    monkeypatch.setattr(upsampled_loss, "BAND_ELEMENTS", 2 * 7 * 83 * 4)
    monkeypatch.setattr(upsampled_loss, "MAX_BANDS", 100)


def test_bands_are_small_but_few() -> None:
    small = torch.empty(4, 150, 64, 64, device="meta")
    assert upsampled_loss.band_rows(small, 512, 512) == 32  # 16 bands, not one row each
    assert upsampled_loss.band_rows(small[:1, :19], 64, 64) == 862  # one band holds the whole small map


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).norm() / b.detach().norm())


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_gradient_equal_the_upsampled_cross_entropy(align_corners: bool, weighted: bool,
                                                             small_bands: None) -> None:
    small = torch.randn(2, 7, 9, 11, requires_grad=True)
    label = torch.randint(0, 7, (2, 67, 83))
    label[0, :5] = 255  # ignored rows
    weight = torch.rand(7) + 0.5 if weighted else None
    ours = upsampled_cross_entropy_sum(small, label, align_corners, 255, weight)
    (grad,) = torch.autograd.grad(ours, small)
    upsampled = F.interpolate(small, (67, 83), mode="bilinear", align_corners=align_corners)
    reference = F.cross_entropy(upsampled, label, weight=weight, ignore_index=255, reduction="sum")
    (expected,) = torch.autograd.grad(reference, small)
    assert relative(ours, reference) < 1e-5
    assert relative(grad, expected) < 1e-5


def test_double_precision_logits_stay_double(small_bands: None) -> None:
    small = torch.randn(2, 7, 9, 11, dtype=torch.float64, requires_grad=True)
    label = torch.randint(0, 7, (2, 67, 83))
    ours = upsampled_cross_entropy_sum(small, label, False, 255, torch.rand(7) + 0.5)
    assert ours.dtype == torch.float64
    tiny, tiny_label = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True), torch.randint(0, 3, (1, 13, 17))
    tiny_label[0, 0] = 255
    assert torch.autograd.gradcheck(lambda s: upsampled_cross_entropy_sum(s, tiny_label, True, 255), (tiny,))


def test_half_precision_logits_are_scored_in_float32(small_bands: None) -> None:
    small = torch.randn(1, 7, 8, 8).bfloat16().requires_grad_()
    label = torch.randint(0, 7, (1, 64, 64))
    loss = upsampled_cross_entropy_sum(small, label, False, 255)
    loss.backward()
    assert loss.dtype == torch.float32 and small.grad is not None and small.grad.dtype == torch.bfloat16
    reference = F.cross_entropy(F.interpolate(small.float(), (64, 64), mode="bilinear"), label, reduction="sum")
    assert relative(loss, reference) < 1e-5


@pytest.mark.parametrize("kind", ["ce", "ohem"])
def test_segmentation_loss_takes_head_sized_logits(kind: str, small_bands: None) -> None:
    criterion = SegmentationLoss(7, kind=kind, class_weights=[1, 2, 0.5, 1, 3, 1, 1], ohem_min_kept=50,
                                 align_corners=False)
    small = {"out": torch.randn(2, 7, 9, 11, requires_grad=True), "aux": torch.randn(2, 7, 9, 11, requires_grad=True)}
    label = torch.randint(0, 7, (2, 67, 83))
    label[1, 10:20] = 255
    upsampled = {name: F.interpolate(value, (67, 83), mode="bilinear") for name, value in small.items()}
    ours, reference = criterion(small, label), criterion(upsampled, label)
    for name in ("loss", "loss_decode", "loss_aux"):
        assert relative(ours[name], reference[name]) < 1e-5
    grads = torch.autograd.grad(ours["loss"], list(small.values()))
    expected = torch.autograd.grad(reference["loss"], list(small.values()))
    assert all(relative(g, e) < 1e-5 for g, e in zip(grads, expected))


def test_ohem_selects_the_same_pixels_from_head_sized_logits(small_bands: None) -> None:
    small = torch.randn(2, 7, 9, 11)
    label = torch.randint(0, 7, (2, 67, 83))
    upsampled = F.interpolate(small, (67, 83), mode="bilinear", align_corners=True)
    for thresh, min_kept in [(0.7, 100), (0.05, 3000)]:  # the threshold, then the min_kept-th probability rules
        keep = ohem_mask(small, label, 255, thresh, min_kept, align_corners=True)
        expected = ohem_mask(upsampled, label, 255, thresh, min_kept)
        assert 0 < int(expected.sum()) < label.numel()
        assert float((keep != expected).float().mean()) < 1e-3  # a tie at the threshold may round either way


def test_head_sized_logits_without_align_corners_are_refused() -> None:
    with pytest.raises(ValueError, match="align_corners"):
        SegmentationLoss(7)({"out": torch.randn(1, 7, 4, 4)}, torch.zeros(1, 32, 32, dtype=torch.long))


def test_segmentor_hands_over_the_heads_logits() -> None:
    model = build_segmentor(tiny_config("pspnet", output_stride=8)).train()
    x = torch.randn(2, 3, 64, 72)
    small = model(x, upsample=False)
    assert set(small) == {"out", "aux"} and small["out"].shape == (2, 5, 8, 9) and small["aux"].shape == (2, 5, 8, 9)
    full = model.eval()(x)
    assert full["out"].shape == (2, 5, 64, 72)


def test_interpolation_matrices_are_built_once_per_shape() -> None:
    """Every training step asks for the same matrices: built once, not per step (a host-to-GPU copy each time)."""
    small = torch.randn(2, 7, 9, 11)
    first = upsampled_loss.interpolation_matrices(small, (67, 83), False)
    again = upsampled_loss.interpolation_matrices(torch.randn(2, 7, 9, 11), (67, 83), False)
    assert first[0] is again[0] and first[1] is again[1]
    other = upsampled_loss.interpolation_matrices(small, (67, 83), True)
    assert not torch.equal(other[0], first[0])  # align_corners is part of the key
