"""Every registered model, at several backbone settings and input sizes (timm's test_models style)."""
from __future__ import annotations

import pytest
import torch

from sceneparse.models import MODELS, build_segmentor
from sceneparse.models.resnet import ResNet
from tests.conftest import tiny_config

SIZES = [(64, 64), (97, 129), (33, 47)]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_output_shape_and_finite(name: str, size: tuple[int, int]) -> None:
    model = build_segmentor(tiny_config(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert set(out) == {"out"}
    assert out["out"].shape == (2, 5, *size)
    assert torch.isfinite(out["out"]).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_mode_returns_aux_and_every_parameter_gets_a_gradient(name: str) -> None:
    model = build_segmentor(tiny_config(name)).train()
    out = model(torch.randn(2, 3, 65, 81))
    assert set(out) == {"out", "aux"}
    assert out["aux"].shape == out["out"].shape
    (out["out"].square().mean() + out["aux"].square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing}"
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"all-zero gradient for {zero}"


def test_no_aux_head_when_disabled() -> None:
    cfg = tiny_config("pspnet")
    cfg.aux_head.enabled = False
    model = build_segmentor(cfg).train()
    assert model.aux_head is None
    assert set(model(torch.randn(2, 3, 64, 64))) == {"out"}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("stem", ["b", "v1c", "semseg"])
@pytest.mark.parametrize("depth", [18, 50])
def test_backbone_output_stride_and_channels(output_stride: int, stem: str, depth: int) -> None:
    net = ResNet(depth=depth, stem=stem, stem_channels=16, base_channels=8, output_stride=output_stride).eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 128, 96))
    expansion = 4 if depth >= 50 else 1
    assert [f.shape[1] for f in feats] == [8 * expansion * 2**i for i in range(4)] == net.out_channels
    assert feats[0].shape[-2:] == (32, 24)  # stem + max pool: stride 4
    assert feats[-1].shape[-2:] == (128 // output_stride, 96 // output_stride)


def test_dilations_contracted_and_not() -> None:
    contracted = ResNet(depth=50, output_stride=8, contract_dilation=True)
    plain = ResNet(depth=50, output_stride=8, contract_dilation=False)
    assert [b.conv2.dilation[0] for b in contracted.layer4] == [2, 4, 4]
    assert [b.conv2.dilation[0] for b in plain.layer4] == [4, 4, 4]
    assert [b.conv2.dilation[0] for b in contracted.layer3][:2] == [1, 2]
    grid = ResNet(depth=50, output_stride=16, multi_grid=[1, 2, 4])
    assert [b.conv2.dilation[0] for b in grid.layer4] == [2, 4, 8]


@pytest.mark.parametrize("name", ["pspnet", "upernet"])
def test_pyramid_pooling_is_one_shared_module(name: str) -> None:
    from sceneparse.models.ppm import PyramidPooling

    model = build_segmentor(tiny_config(name))
    assert isinstance(model.decode_head.ppm, PyramidPooling)
    assert len(model.decode_head.ppm.stages) == 4


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="output_stride"):
        ResNet(depth=50, output_stride=4)
    with pytest.raises(ValueError, match="stem"):
        ResNet(depth=50, stem="c")
    with pytest.raises(ValueError, match="depth"):
        ResNet(depth=42)
