"""The trunk run in oneDNN's blocked layout gives the NCHW answers, is chosen only where it applies,
and the low-resolution heads' weight splits are cached without going stale."""
from __future__ import annotations

import copy

import pytest
import torch

from sceneparse.models import build_segmentor
from sceneparse.models.blocked_layout import BlockedBackbone, BlockedConv2d, blocked_layout_available
from sceneparse.models.fuse import prepare_for_inference, split_bottleneck_weight
from tests.conftest import tiny_config
from tests.test_fast_inference import relative_l2, trained_looking, with_batchnorm_statistics

pytestmark = pytest.mark.skipif(not blocked_layout_available(), reason="this torch build has no oneDNN")


@pytest.mark.parametrize("name,depth,stem,output_stride", [
    ("pspnet", 18, "v1c", 8), ("psanet", 50, "b", 8), ("upernet", 18, "b", 16), ("pspnet", 50, "v1c", 16)])
def test_blocked_trunk_matches_nchw(name: str, depth: int, stem: str, output_stride: int) -> None:
    model = with_batchnorm_statistics(build_segmentor(tiny_config(name, depth=depth, stem=stem,
                                                                  output_stride=output_stride)))
    x = torch.randn(2, 3, 67, 93)  # odd sizes: padding and strided convolutions at the borders
    with torch.no_grad():
        nchw = prepare_for_inference(model, fuse_bn=True, copy_model=True, blocked_layout=False)
        blocked = prepare_for_inference(model, fuse_bn=True, copy_model=True)  # on by default here
        assert isinstance(blocked.model.backbone, BlockedBackbone)
        assert not isinstance(nchw.model.backbone, BlockedBackbone)
        reference, out = nchw(x)["out"], blocked(x)["out"]
    assert out.shape == reference.shape and out.is_contiguous() and not out.is_mkldnn
    assert relative_l2(out, reference) < 1e-5


def test_blocked_trunk_keeps_trained_statistics_and_copies() -> None:
    model = trained_looking("psanet")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)["out"]
        fast = prepare_for_inference(model, fuse_bn=True, copy_model=True)
        twin = copy.deepcopy(fast)  # the packed weights are shared, not copied (oneDNN tensors cannot be)
        assert relative_l2(fast(x)["out"], reference) < 1e-5
        assert torch.equal(twin(x)["out"], fast(x)["out"])
    convs = [m for m in twin.modules() if isinstance(m, BlockedConv2d)]
    assert convs and all(not list(m.parameters()) for m in convs)


def test_blocked_layout_is_chosen_only_where_it_applies() -> None:
    model = build_segmentor(tiny_config("pspnet"))
    assert not isinstance(prepare_for_inference(model, copy_model=True).model.backbone, BlockedBackbone)  # no fuse_bn
    assert not isinstance(prepare_for_inference(model, fuse_bn=True, channels_last=True,
                                                copy_model=True).model.backbone, BlockedBackbone)
    assert not isinstance(prepare_for_inference(model, "bf16", fuse_bn=True, copy_model=True).model.backbone,
                          BlockedBackbone)
    with pytest.raises(ValueError, match="BatchNorms folded"):
        prepare_for_inference(model, copy_model=True, blocked_layout=True)
    with pytest.raises(ValueError, match="channels_last"):
        prepare_for_inference(model, fuse_bn=True, channels_last=True, copy_model=True, blocked_layout=True)


def test_blocked_trunk_refuses_inputs_on_another_device() -> None:
    fast = prepare_for_inference(build_segmentor(tiny_config("pspnet")), fuse_bn=True)
    with pytest.raises(RuntimeError, match="prepared for the CPU"):
        fast.model.backbone(torch.empty(1, 3, 32, 32, device="meta"))


def test_blocked_backbone_needs_folded_batchnorms() -> None:
    with pytest.raises(ValueError, match="fuse_bn"):
        BlockedBackbone(build_segmentor(tiny_config("pspnet")).backbone)


def test_split_bottleneck_weight_is_cached_until_the_weight_changes() -> None:
    conv = torch.nn.Conv2d(12, 4, 3, padding=1)
    conv.weight.requires_grad_(False)
    first = split_bottleneck_weight(conv, (8, 4), 1)
    assert split_bottleneck_weight(conv, (8, 4), 1) is first  # no copies on the second call
    assert torch.equal(first[0], conv.weight[:, :8])
    assert first[1][0].shape == (9 * 4, 4, 1, 1)
    with torch.no_grad():
        conv.weight.mul_(2)  # in place, as load_state_dict does: the cache must not go stale
    second = split_bottleneck_weight(conv, (8, 4), 1)
    assert second is not first and torch.equal(second[0], conv.weight[:, :8])


def test_split_bottleneck_weight_is_not_cached_under_autograd() -> None:
    conv = torch.nn.Conv2d(12, 4, 3, padding=1)
    first = split_bottleneck_weight(conv, (8, 4), 1)
    assert first[0].requires_grad  # part of this call's graph, so not kept for the next one
    assert split_bottleneck_weight(conv, (8, 4), 1) is not first


def test_unblocked_trunk_is_the_same_network_in_nchw() -> None:
    """What ONNX export traces: ordinary convolutions again, the same outputs."""
    model = trained_looking("upernet")
    x = torch.randn(1, 3, 48, 56)
    with torch.no_grad():
        blocked = prepare_for_inference(model, fuse_bn=True, copy_model=True).model.backbone
        plain = blocked.unblocked()
        assert not any(isinstance(m, BlockedConv2d) for m in plain.modules())
        for a, b in zip(plain(x), blocked(x)):
            assert relative_l2(a, b) < 1e-6
