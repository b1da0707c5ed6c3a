"""ChainerCV PSPNet `.npz` weights: the converted model computes what ChainerCV's PSPNet computes.

The npz is built in the test from ChainerCV's documented layout (chainercv/experimental/links/model/
pspnet/pspnet.py, links/model/resnet/resblock.py: `extractor/conv1_1..conv1_3`, `extractor/res2..5/
{a,b1,..}/conv1..3` (+ `a/residual_conv`), `ppm/0..3` for levels [6, 3, 2, 1], `head_conv1`,
`head_conv2`), and ChainerCV's forward is written out from it: BN eps 2e-5, pooling windows
(input // 8) // bins rounded down, aligned-corner resizing, concat(x, ppm/0, .., ppm/3).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sceneparse.config import load_preset
from sceneparse.convert import convert_checkpoint
from sceneparse.errors import CheckpointError
from sceneparse.models import build_segmentor

BLOCKS = (3, 4, 6, 3)
STEM = (4, 4, 8)
PLANES = (4, 8, 16, 32)
FEATURES = PLANES[-1] * 4
HEAD = FEATURES // 4  # ChainerCV: in_channels // len(pyramids) per level; head_conv1 -> 512 = 2048 // 4
CLASSES = 5
SIZE = 73  # input_size of the model; feature 10, ChainerCV's feat_size 73 // 8 = 9
PYRAMIDS = (6, 3, 2, 1)


def tiny_overrides() -> list[str]:
    return [f"model.num_classes={CLASSES}", f"model.backbone.stem_channels={STEM[-1]}",
            f"model.backbone.base_channels={PLANES[0]}", f"model.decode_head.channels={HEAD}",
            f"model.decode_head.pool_input_size=[{SIZE // 8},{SIZE // 8}]"]


def _cba(arrays: dict, name: str, out_c: int, in_c: int, k: int, rng: np.random.RandomState) -> None:
    """A Conv2DBNActiv link: conv/W (no bias) and a BatchNormalization with its counter N."""
    arrays[f"{name}/conv/W"] = rng.normal(0, (in_c * k * k) ** -0.5, (out_c, in_c, k, k)).astype(np.float32)
    arrays[f"{name}/bn/gamma"] = rng.uniform(0.5, 1.5, out_c).astype(np.float32)
    arrays[f"{name}/bn/beta"] = rng.normal(0, 0.1, out_c).astype(np.float32)
    arrays[f"{name}/bn/avg_mean"] = rng.normal(0, 0.1, out_c).astype(np.float32)
    arrays[f"{name}/bn/avg_var"] = rng.uniform(1e-4, 1.5, out_c).astype(np.float32)  # small: eps matters
    arrays[f"{name}/bn/N"] = np.array(1000)


def chainercv_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    a: dict[str, np.ndarray] = {}
    c_in = 3
    for name, c in zip(("conv1_1", "conv1_2", "conv1_3"), STEM):
        _cba(a, f"extractor/{name}", c, c_in, 3, rng)
        c_in = c
    for stage, (n, mid) in enumerate(zip(BLOCKS, PLANES), 2):
        for b in range(n):
            p = f"extractor/res{stage}/{'a' if b == 0 else f'b{b}'}"
            _cba(a, f"{p}/conv1", mid, c_in, 1, rng)
            _cba(a, f"{p}/conv2", mid, mid, 3, rng)
            _cba(a, f"{p}/conv3", mid * 4, mid, 1, rng)
            if b == 0:
                _cba(a, f"{p}/residual_conv", mid * 4, c_in, 1, rng)
            c_in = mid * 4
    for level in range(4):
        _cba(a, f"ppm/{level}", HEAD, FEATURES, 1, rng)
    _cba(a, "head_conv1", HEAD, 2 * FEATURES, 3, rng)
    a["head_conv2/W"] = rng.normal(0, HEAD**-0.5, (CLASSES, HEAD, 1, 1)).astype(np.float32)
    a["head_conv2/b"] = rng.normal(0, 0.1, CLASSES).astype(np.float32)
    return a


# ---------------------------------------------------------------- ChainerCV's forward, from its layout


def cba(x: torch.Tensor, a: dict, name: str, stride: int = 1, pad: int = 0, dilate: int = 1,
        relu: bool = True) -> torch.Tensor:
    t = {k: torch.from_numpy(v) for k, v in a.items() if k.startswith(name + "/")}
    y = F.conv2d(x, t[f"{name}/conv/W"], stride=stride, padding=pad, dilation=dilate)
    y = F.batch_norm(y, t[f"{name}/bn/avg_mean"], t[f"{name}/bn/avg_var"], t[f"{name}/bn/gamma"],
                     t[f"{name}/bn/beta"], False, 0.0, 2e-5)  # chainer's default eps
    return F.relu(y) if relu else y


def chainercv_pspnet(a: dict, x: torch.Tensor) -> torch.Tensor:
    size = tuple(x.shape[-2:])
    h = cba(x, a, "extractor/conv1_1", 2, 1)
    h = cba(h, a, "extractor/conv1_2", 1, 1)
    h = cba(h, a, "extractor/conv1_3", 1, 1)
    h = F.max_pool2d(h, 3, 2, 1)
    for stage, (n, stride, dilate) in enumerate(zip(BLOCKS, (1, 2, 1, 1), (1, 1, 2, 4)), 2):
        for b in range(n):
            p = f"extractor/res{stage}/{'a' if b == 0 else f'b{b}'}"
            s = stride if b == 0 else 1
            y = cba(h, a, f"{p}/conv1")
            y = cba(y, a, f"{p}/conv2", s, dilate, dilate)  # stride_first=False: stride on the 3x3
            y = cba(y, a, f"{p}/conv3", relu=False)
            h = F.relu(y + (cba(h, a, f"{p}/residual_conv", s, relu=False) if b == 0 else h))
    feat = SIZE // 8
    ys = [h]
    for level, bins in enumerate(PYRAMIDS):
        k = feat // bins
        y = cba(F.avg_pool2d(h, k, k), a, f"ppm/{level}")  # chainer's average_pooling_2d: floor
        ys.append(F.interpolate(y, size=tuple(h.shape[-2:]), mode="bilinear", align_corners=True))
    h = cba(torch.cat(ys, 1), a, "head_conv1", 1, 1)
    h = F.conv2d(h, torch.from_numpy(a["head_conv2/W"]), torch.from_numpy(a["head_conv2/b"]))
    return F.interpolate(h, size=size, mode="bilinear", align_corners=True)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("pool_scales", ["[1,2,3,6]", "[6,3,2,1]"])
def test_converted_model_gives_chainercvs_logits(pool_scales: str, tmp_path: Path) -> None:
    preset = load_preset("chainercv_pspnet_resnet50_ade20k",
                         tiny_overrides() + [f"model.decode_head.pool_scales={pool_scales}"])
    arrays = chainercv_arrays(seed=0)
    np.savez(tmp_path / "pspnet.npz", **arrays)
    converted = convert_checkpoint("chainercv", tmp_path / "pspnet.npz", preset)
    net = build_segmentor(preset.model).eval()
    net.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, SIZE, SIZE) * 50
    with torch.no_grad():
        ours, theirs = net(x)["out"], chainercv_pspnet(arrays, x)
    assert ours.shape == theirs.shape == (1, CLASSES, SIZE, SIZE)
    assert float((ours - theirs).norm() / theirs.norm()) < 1e-4


def test_every_chainercv_preset_computes_as_chainercv() -> None:
    for name in ("chainercv_pspnet_resnet101_cityscapes_converted", "chainercv_pspnet_resnet50_ade20k"):
        preset = load_preset(name)
        head = preset.model.decode_head
        crop = preset.data.crop_size[0]
        assert preset.model.align_corners and not preset.model.aux_head.enabled
        assert head.pool_mode == "fixed" and not head.pool_ceil_mode and head.pool_input_size == [crop // 8] * 2
        assert preset.published.weights_format == "chainercv"


def test_bad_npz_files_are_named(tmp_path: Path) -> None:
    preset = load_preset("chainercv_pspnet_resnet50_ade20k", tiny_overrides())
    arrays = chainercv_arrays(seed=1)
    missing = {k: v for k, v in arrays.items() if not k.startswith("extractor/res4/b2/conv3/")}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(CheckpointError, match=r"missing .*backbone\.layer3\.2\.conv3\.weight"):
        convert_checkpoint("chainercv", tmp_path / "missing.npz", preset)

    np.savez(tmp_path / "extra.npz", **arrays, **{"extractor/res6/a/conv1/conv/W": np.zeros((1, 1, 1, 1))})
    with pytest.raises(CheckpointError, match=r"extractor/res6/a/conv1/conv/W"):
        convert_checkpoint("chainercv", tmp_path / "extra.npz", preset)

    arrays["head_conv2/W"] = np.zeros((CLASSES + 2, HEAD, 1, 1), np.float32)
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"decode_head\.classifier\.weight: checkpoint \(7, 32, 1, 1\)"):
        convert_checkpoint("chainercv", tmp_path / "shape.npz", preset)


def test_pickled_npz_is_refused_and_aux_presets_rejected(tmp_path: Path) -> None:
    preset = load_preset("chainercv_pspnet_resnet50_ade20k", tiny_overrides())
    arrays = chainercv_arrays(seed=2)
    arrays["head_conv2/b"] = np.array([object()] * CLASSES, dtype=object)
    np.savez(tmp_path / "objects.npz", **arrays)
    with pytest.raises(CheckpointError, match="pickled objects"):
        convert_checkpoint("chainercv", tmp_path / "objects.npz", preset)
    with_aux = load_preset("chainercv_pspnet_resnet50_ade20k", tiny_overrides() + ["model.aux_head.enabled=true"])
    np.savez(tmp_path / "ok.npz", **chainercv_arrays(seed=2))
    with pytest.raises(CheckpointError, match="no auxiliary head"):
        convert_checkpoint("chainercv", tmp_path / "ok.npz", with_aux)
