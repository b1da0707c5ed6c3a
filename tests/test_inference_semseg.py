"""The `semseg_*` presets' slide path reproduces hszhao/semseg's tool/test.py `scale_process`.

References: tests/fixtures/pipeline/semseg_test.npz, made by tools/fixtures/make_semseg_test_fixtures.py
with semseg's own `scale_process` / `net_process` on a tiny model (1x1 conv + fixed 2x2 average pool)
that is rebuilt here from the saved weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.config.loader import load_preset
from sceneparse.models.inference import InferenceSettings, predict_labels, predict_proba

FIXTURE = Path(__file__).parent / "fixtures" / "pipeline" / "semseg_test.npz"


class TinyNet(nn.Module):
    """The fixture script's model behind sceneparse's interface: `model(x)["out"]` at the input's size."""

    num_classes = 5
    align_corners = True  # semseg's net_process upsamples the model's output with align_corners=True

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, self.num_classes, 1)
        self.conv.weight.data = torch.from_numpy(weight)
        self.conv.bias.data = torch.from_numpy(bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = F.avg_pool2d(self.conv(x), 2)
        return {"out": F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


def _case(ref: dict[str, np.ndarray], i: int) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int],
                                                       tuple[int, int], np.ndarray]:
    """Normalised input (as semseg's net_process: subtract the mean, divide by std), crop, stride, size, reference."""
    _, _, crop_h, crop_w, out_h, out_w = (int(v) for v in ref["cases"][i])
    image = torch.from_numpy(ref[f"case{i}_image"].transpose(2, 0, 1).copy())
    mean = torch.tensor(ref["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(ref["std"], dtype=torch.float32)[:, None, None]
    x = ((image - mean) / std).unsqueeze(0)
    stride = tuple(int(s) for s in ref[f"case{i}_stride"])
    return x, (crop_h, crop_w), stride, (out_h, out_w), ref[f"case{i}_probs"]


@pytest.mark.parametrize("case", range(4))
def test_semseg_slide_matches_its_scale_process(ref: dict[str, np.ndarray], case: int) -> None:
    model = TinyNet(ref["weight"], ref["bias"]).eval()
    x, crop, stride, size, expected = _case(ref, case)
    probs = predict_proba(model, x, "slide", crop, stride, (1.0,), False, size, slide_style="semseg")
    assert probs.shape == (1, 5, *size)
    np.testing.assert_allclose(probs[0].permute(1, 2, 0).numpy(), expected, atol=1e-5, rtol=0)
    # the mmseg path (shrunk windows, logits averaged) is a different function of the same input
    mmseg = predict_proba(model, x, "slide", crop, stride, (1.0,), False, size)
    assert np.abs(mmseg[0].permute(1, 2, 0).numpy() - expected).max() > 1e-4


def test_semseg_slide_always_mirrors_and_labels_agree_in_bands(ref: dict[str, np.ndarray]) -> None:
    model = TinyNet(ref["weight"], ref["bias"]).eval()
    x, crop, stride, size, expected = _case(ref, 2)
    once = predict_proba(model, x, "slide", crop, stride, (1.0,), False, size, slide_style="semseg")
    with_flip = predict_proba(model, x, "slide", crop, stride, (1.0,), True, size, slide_style="semseg")
    torch.testing.assert_close(with_flip, once)  # --tta's flip adds nothing: every window is mirrored already
    banded = predict_labels(model, x, "slide", crop, stride, (1.0,), False, size, budget=1,
                            slide_style="semseg")  # forces the band-by-band path
    assert torch.equal(banded, once.argmax(1))
    np.testing.assert_array_equal(banded[0].numpy(), expected.argmax(2))
    # several scales: both paths average the same probabilities (no softmax over probabilities)
    scales = (0.75, 1.0)
    banded = predict_labels(model, x, "slide", crop, stride, scales, False, size, budget=1, slide_style="semseg")
    full = predict_proba(model, x, "slide", crop, stride, scales, False, size, slide_style="semseg")
    assert torch.equal(banded, full.argmax(1))


def test_semseg_presets_select_semseg_slide_and_others_do_not() -> None:
    semseg = InferenceSettings.from_config(load_preset("semseg_pspnet50_ade20k").test)
    assert (semseg.mode, semseg.slide_style) == ("slide", "semseg")
    assert "semseg" in semseg.describe()
    assert InferenceSettings.from_config(load_preset("pspnet_r50-d8_512x1024_40k_cityscapes").test).slide_style == "mmseg"
