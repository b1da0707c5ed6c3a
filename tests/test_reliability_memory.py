"""Class ids of huge outputs in bounded memory; predict_proba says what it needs (issue 14, point 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sceneparse import segmenter as segmenter_module
from sceneparse.api import build_model
from sceneparse.models import inference
from sceneparse.models.inference import predict_labels, predict_proba, probability_map_bytes, resize_band
from sceneparse.segmenter import ProbabilitiesTooLarge, Segmenter
from tests.test_eval_cli import tiny_preset, tiny_weights


class ManyClasses(nn.Module):
    """A stand-in model with many classes: a 1x1 convolution at a quarter of the input's size, upsampled."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_classes, self.align_corners = num_classes, False
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": F.interpolate(self.conv(F.avg_pool2d(x, 4)), size=x.shape[-2:], mode="bilinear")}


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("source", "target"), [((33, 47), (1000, 999)), ((64, 80), (517, 643)), ((50, 60), (50, 61))])
def test_a_band_of_rows_equals_the_rows_of_the_full_resize(source, target, align_corners: bool) -> None:
    x = torch.randn(2, 5, *source)
    full = F.interpolate(x, size=target, mode="bilinear", align_corners=align_corners)
    bands = torch.cat([resize_band(x, target, align_corners, start, min(target[0], start + 37))
                       for start in range(0, target[0], 37)], dim=2)
    torch.testing.assert_close(bands, full, rtol=0, atol=1e-6)


def record_bands(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of every band `predict_labels` makes; the full-size path must not run."""
    sizes: list[int] = []
    real = inference.resize_band

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = real(*args, **kwargs)
        sizes.append(out.numel() * out.element_size())
        return out

    def no_full_map(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the full-size probability map was built")

    monkeypatch.setattr(inference, "resize_band", recording)
    monkeypatch.setattr(inference, "predict_proba", no_full_map)
    return sizes


@pytest.mark.parametrize(("mode", "scales", "flip"), [("whole", (1.0,), False), ("slide", (0.75, 1.0), True)])
def test_labels_of_a_large_output_come_in_bounded_bands_and_equal_the_full_map(
        monkeypatch: pytest.MonkeyPatch, mode: str, scales: tuple[float, ...], flip: bool) -> None:
    model = ManyClasses(32).eval()
    x = torch.randn(1, 3, 96, 128)
    target = (300, 400)  # 32 classes: 15 MB of probabilities
    expected = predict_proba(model, x, mode, (64, 64), (48, 48), scales, flip, target).argmax(dim=1)
    budget = 8 << 20
    sizes = record_bands(monkeypatch)
    labels = predict_labels(model, x, mode, (64, 64), (48, 48), scales, flip, target, budget=budget)
    assert sizes and max(sizes) <= budget // 8 <= probability_map_bytes(1, 32, *target) // 14
    assert labels.shape == (1, *target) and labels.dtype == torch.long
    assert float((labels == expected).float().mean()) >= 0.9999  # ties broken by rounding at most
    assert torch.equal(labels, expected)  # and on this CPU, bit for bit


def test_segmenter_predict_on_a_large_image_is_bounded_and_unchanged(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    preset = tiny_preset()
    model = build_model(preset, tiny_weights(tmp_path / "w.safetensors")).eval()
    seg = Segmenter(model, preset, "cpu", mode="slide")
    image = (np.random.default_rng(0).random((300, 450, 3)) * 255).astype(np.uint8)
    expected = seg.predict(image)  # 5 x 300 x 450 floats: under the default budget, the full map
    monkeypatch.setattr(inference, "LABELS_BUDGET", 2 << 20)
    sizes = record_bands(monkeypatch)
    assert np.array_equal(seg.predict(image), expected)
    assert sizes and max(sizes) <= (2 << 20) // 8


def test_predict_proba_refuses_what_would_not_fit_saying_what_it_needs(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    preset = tiny_preset()
    seg = Segmenter(build_model(preset, tiny_weights(tmp_path / "w.safetensors")), preset, "cpu")
    monkeypatch.setattr(segmenter_module, "available_memory", lambda device: 10 << 20)
    image = np.zeros((600, 500, 3), np.uint8)
    with pytest.raises(ProbabilitiesTooLarge, match=r"500x600 with 5 classes needs about 17 MiB.*10 MiB are free"):
        seg.predict_proba(image)
    assert seg.predict(image).shape == (600, 500)  # class ids still work
    small = seg.predict_proba(np.zeros((40, 60, 3), np.uint8))
    assert small.shape == (5, 40, 60)


def test_the_issue_case_is_what_the_formula_says() -> None:
    # 8000 x 8000 with 150 classes: the 38 GB the issue reports for the full map
    assert probability_map_bytes(1, 150, 8000, 8000) == 4 * 150 * 8000 * 8000 == 38_400_000_000
