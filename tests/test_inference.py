"""Test-time modes agree with each other where they must."""
from __future__ import annotations

import torch

from sceneparse.models import build_segmentor
from sceneparse.models.inference import predict_proba, window_starts
from tests.conftest import tiny_config


def test_window_starts_cover_and_clamp() -> None:
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(3, 4, 3) == [0]


def test_slide_with_crop_equal_to_image_is_whole() -> None:
    model = build_segmentor(tiny_config("pspnet")).eval()
    x = torch.randn(1, 3, 48, 64)
    whole = predict_proba(model, x, mode="whole")
    slide = predict_proba(model, x, mode="slide", crop=(48, 64), stride=(32, 32))
    assert torch.allclose(whole, slide, atol=1e-6)


def test_slide_averages_overlapping_windows() -> None:
    model = build_segmentor(tiny_config("pspnet")).eval()
    x = torch.randn(1, 3, 64, 80)
    probs = predict_proba(model, x, mode="slide", crop=(48, 48), stride=(16, 16))
    assert probs.shape == (1, 5, 64, 80)
    assert torch.allclose(probs.sum(1), torch.ones(1, 64, 80), atol=1e-5)


def test_single_scale_without_flip_is_whole() -> None:
    model = build_segmentor(tiny_config("upernet")).eval()
    x = torch.randn(1, 3, 40, 56)
    assert torch.allclose(predict_proba(model, x, scales=[1.0]), predict_proba(model, x), atol=1e-6)


class MirrorSymmetric(torch.nn.Module):
    """Wraps a model so that its output is symmetric under horizontal flips."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.num_classes, self.align_corners = inner, inner.num_classes, inner.align_corners

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.inner(x)["out"]
        return {"out": out + self.inner(x.flip(-1))["out"].flip(-1)}


def test_flip_tta_of_symmetric_model_equals_no_tta() -> None:
    model = MirrorSymmetric(build_segmentor(tiny_config("pspnet")).eval())
    x = torch.randn(1, 3, 40, 56)
    assert torch.allclose(predict_proba(model, x, flip=True), predict_proba(model, x), atol=1e-6)


def test_multiscale_returns_probabilities_at_input_size() -> None:
    model = build_segmentor(tiny_config("psanet")).eval()
    x = torch.randn(1, 3, 64, 64)
    probs = predict_proba(model, x, scales=[0.75, 1.0, 1.25], flip=True)
    assert probs.shape == (1, 5, 64, 64)
    assert torch.allclose(probs.sum(1), torch.ones(1, 64, 64), atol=1e-5)
