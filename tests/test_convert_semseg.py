"""semseg (hszhao/semseg) checkpoints: the converted model computes what semseg's PSPNet / PSANet compute.

semseg's code does not run here, so the test builds a state dict from its documented layout
(model/resnet.py, model/pspnet.py, model/psanet.py: `layer0` deep stem, `ppm.features`, `psa.*`,
`cls`, `aux`, saved under `module.`) and runs semseg's forward written out functionally from that
layout, independently of sceneparse's modules. Widths are tiny; the structure is the released one.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sceneparse.config import load_preset
from sceneparse.convert import convert_checkpoint
from sceneparse.errors import CheckpointError
from sceneparse.models import build_segmentor
from sceneparse.models.psa_mask import psa_mask_reference

BLOCKS = (3, 4, 6, 3)  # ResNet-50
STEM = (4, 4, 8)  # semseg's 64-64-128, scaled down
PLANES = (4, 8, 16, 32)  # bottleneck widths of layer1..4 (x4 out)
FEATURES = PLANES[-1] * 4  # 128, semseg's 2048
HEAD = FEATURES // 4  # ppm reduction = fea_dim / len(bins) = cls width, as 512 for 2048
AUX = 8
CLASSES = 5
SIZE = 65  # semseg needs (size - 1) % 8 == 0; feature 9, shrunk 5 for PSA
MASK = 2 * ((SIZE - 1) // 16 + 1) - 1  # semseg's default mask for the crop


def tiny_overrides(model: str) -> list[str]:
    sets = [f"model.num_classes={CLASSES}", f"model.backbone.stem_channels={STEM[-1]}",
            f"model.backbone.base_channels={PLANES[0]}", f"model.decode_head.channels={HEAD}",
            f"model.aux_head.channels={AUX}"]
    if model == "psanet":
        sets.append(f"model.decode_head.mask_size=[{MASK},{MASK}]")
    return sets


def _bn(shapes: dict, name: str, c: int) -> None:
    for field in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.{field}"] = (c,)
    shapes[f"{name}.num_batches_tracked"] = ()


def semseg_layout(model: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a semseg PSPNet / PSANet state dict (before the `module.` prefix)."""
    s: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for conv, c in zip((0, 3, 6), STEM):
        s[f"layer0.{conv}.weight"] = (c, c_in, 3, 3)
        _bn(s, f"layer0.{conv + 1}", c)
        c_in = c
    for li, (n, planes) in enumerate(zip(BLOCKS, PLANES), 1):
        for b in range(n):
            p = f"layer{li}.{b}"
            s[f"{p}.conv1.weight"] = (planes, c_in, 1, 1)
            _bn(s, f"{p}.bn1", planes)
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            _bn(s, f"{p}.bn2", planes)
            s[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            _bn(s, f"{p}.bn3", planes * 4)
            if b == 0:
                s[f"{p}.downsample.0.weight"] = (planes * 4, c_in, 1, 1)
                _bn(s, f"{p}.downsample.1", planes * 4)
            c_in = planes * 4
    if model == "pspnet":
        for i in range(4):
            s[f"ppm.features.{i}.1.weight"] = (HEAD, FEATURES, 1, 1)
            _bn(s, f"ppm.features.{i}.2", HEAD)
    else:
        for branch in ("", "_p"):
            s[f"psa.reduce{branch}.0.weight"] = (HEAD, FEATURES, 1, 1)
            _bn(s, f"psa.reduce{branch}.1", HEAD)
            s[f"psa.attention{branch}.0.weight"] = (HEAD, HEAD, 1, 1)
            _bn(s, f"psa.attention{branch}.1", HEAD)
            s[f"psa.attention{branch}.3.weight"] = (MASK * MASK, HEAD, 1, 1)
        s["psa.proj.0.weight"] = (FEATURES, 2 * HEAD, 1, 1)
        _bn(s, "psa.proj.1", FEATURES)
    s["cls.0.weight"] = (HEAD, 2 * FEATURES, 3, 3)
    _bn(s, "cls.1", HEAD)
    s["cls.4.weight"], s["cls.4.bias"] = (CLASSES, HEAD, 1, 1), (CLASSES,)
    s["aux.0.weight"] = (AUX, PLANES[2] * 4, 3, 3)
    _bn(s, "aux.1", AUX)
    s["aux.4.weight"], s["aux.4.bias"] = (CLASSES, AUX, 1, 1), (CLASSES,)
    return s


def random_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):  # BN var, scale
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


# ---------------------------------------------------------------- semseg's forward, from its layout


def bn(x: torch.Tensor, sd: dict, name: str, eps: float = 1e-5) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                        sd[f"{name}.bias"], False, 0.0, eps)


def semseg_backbone(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """layer0 (3 convs, stride 2 on the first, max pool); layer2 strided on conv2; layer3/4 dilated 2/4 throughout."""
    for i, conv in enumerate((0, 3, 6)):
        x = F.relu(bn(F.conv2d(x, sd[f"layer0.{conv}.weight"], stride=2 if i == 0 else 1, padding=1), sd,
                      f"layer0.{conv + 1}"))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for li, (stride, dilation) in enumerate(((1, 1), (2, 1), (1, 2), (1, 4)), 1):
        b = 0
        while f"layer{li}.{b}.conv1.weight" in sd:
            p, s = f"layer{li}.{b}", stride if b == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=s, padding=dilation, dilation=dilation),
                            sd, f"{p}.bn2"))
            out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s), sd, f"{p}.downsample.1")
            x = F.relu(out + identity)
            b += 1
        outs.append(x)
    return outs[2], outs[3]


def up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def semseg_pspnet(sd: dict, x: torch.Tensor) -> torch.Tensor:
    size = tuple(x.shape[-2:])
    _, f = semseg_backbone(sd, x)
    outs = [f]
    for i, bins in enumerate((1, 2, 3, 6)):
        y = F.relu(bn(F.conv2d(F.adaptive_avg_pool2d(f, bins), sd[f"ppm.features.{i}.1.weight"]), sd,
                      f"ppm.features.{i}.2"))
        outs.append(up(y, tuple(f.shape[-2:])))
    return up(_cls(sd, torch.cat(outs, 1)), size)


def _cls(sd: dict, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(bn(F.conv2d(x, sd["cls.0.weight"], padding=1), sd, "cls.1"))
    return F.conv2d(x, sd["cls.4.weight"], sd["cls.4.bias"])


def semseg_psanet(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """semseg's PSA, bi-direction, shrink 2, unpadded projection, upsampled to (h-1)*2+1."""
    size = tuple(x.shape[-2:])
    _, f = semseg_backbone(sd, x)
    n, _, h, w = f.shape
    h2, w2 = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    branches = []
    for branch, kind in (("", "collect"), ("_p", "distribute")):
        r = F.relu(bn(F.conv2d(f, sd[f"psa.reduce{branch}.0.weight"]), sd, f"psa.reduce{branch}.1"))
        r = up(r, (h2, w2))
        y = F.relu(bn(F.conv2d(r, sd[f"psa.attention{branch}.0.weight"]), sd, f"psa.attention{branch}.1"))
        y = F.conv2d(y, sd[f"psa.attention{branch}.3.weight"])
        y = F.softmax(psa_mask_reference(y, kind, (MASK, MASK)), dim=1)
        c = r.shape[1]
        branches.append(torch.bmm(r.reshape(n, c, h2 * w2), y.reshape(n, h2 * w2, h2 * w2)).reshape(n, c, h2, w2))
    p = F.relu(bn(F.conv2d(torch.cat(branches, 1), sd["psa.proj.0.weight"]), sd, "psa.proj.1"))
    p = up(p, ((h2 - 1) * 2 + 1, (w2 - 1) * 2 + 1))
    return up(_cls(sd, torch.cat([f, p], 1)), size)


# ---------------------------------------------------------------- tests


def save_semseg(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """semseg's train.py checkpoint: {"epoch", "state_dict" (module.*), "optimizer"}."""
    torch.save({"epoch": 100, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("model", ["pspnet", "psanet"])
def test_converted_model_gives_semsegs_logits(model: str, tmp_path: Path) -> None:
    preset = load_preset(f"semseg_{model}50_ade20k", tiny_overrides(model))
    source = random_state(semseg_layout(model), seed=1)
    converted = convert_checkpoint("semseg", save_semseg(tmp_path / "train_epoch_100.pth", source), preset)
    net = build_segmentor(preset.model).eval()
    net.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        ours = net(x)["out"]
        theirs = semseg_pspnet(source, x) if model == "pspnet" else semseg_psanet(source, x)
    assert ours.shape == theirs.shape == (2, CLASSES, SIZE, SIZE)
    assert rel_l2(ours, theirs) < 1e-4
    # the auxiliary head is semseg's aux on layer3
    assert torch.equal(converted["aux_head.convs.0.conv.weight"], source["aux.0.weight"])


def test_missing_extra_and_misshapen_tensors_are_named(tmp_path: Path) -> None:
    preset = load_preset("semseg_pspnet50_ade20k", tiny_overrides("pspnet"))
    source = random_state(semseg_layout("pspnet"), seed=2)

    missing = dict(source)
    del missing["layer3.2.conv2.weight"]
    with pytest.raises(CheckpointError, match=r"missing 1: backbone\.layer3\.2\.conv2\.weight"):
        convert_checkpoint("semseg", save_semseg(tmp_path / "missing.pth", missing), preset)

    extra = dict(source, **{"psa.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected 1: psa\.extra\.weight"):
        convert_checkpoint("semseg", save_semseg(tmp_path / "extra.pth", extra), preset)

    misshapen = dict(source, **{"cls.4.weight": torch.zeros(CLASSES + 1, HEAD, 1, 1),
                                "cls.4.bias": torch.zeros(CLASSES + 1)})
    with pytest.raises(CheckpointError, match=r"misshapen 2: decode_head\.classifier\.weight: checkpoint "
                                              rf"\({CLASSES + 1}, {HEAD}, 1, 1\) vs model \({CLASSES}, {HEAD}, 1, 1\)"):
        convert_checkpoint("semseg", save_semseg(tmp_path / "shape.pth", misshapen), preset)


class Planted:
    """Unpickling this would create a file: the proof that a checkpoint's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pickled_object_is_refused_not_executed(tmp_path: Path) -> None:
    preset = load_preset("semseg_pspnet50_ade20k", tiny_overrides("pspnet"))
    marker = tmp_path / "code-ran"
    state = {f"module.{k}": v for k, v in random_state(semseg_layout("pspnet"), seed=3).items()}
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": state, "extra": Planted(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        convert_checkpoint("semseg", path, preset)
    assert not marker.exists()
    # the same object pickled plainly, outside torch's zip container
    path.write_bytes(pickle.dumps({"state_dict": Planted(marker)}))
    with pytest.raises(CheckpointError, match="refused"):
        convert_checkpoint("semseg", path, preset)
    assert not marker.exists()


def test_psanet_checkpoint_into_pspnet_preset_fails_naming_keys(tmp_path: Path) -> None:
    preset = load_preset("semseg_pspnet50_ade20k", tiny_overrides("pspnet"))
    source = random_state(semseg_layout("psanet"), seed=4)
    with pytest.raises(CheckpointError, match=r"missing .*decode_head\.ppm\.stages\.0\.1\.conv\.weight"):
        convert_checkpoint("semseg", save_semseg(tmp_path / "psa.pth", source), preset)
