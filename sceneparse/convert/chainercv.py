"""ChainerCV PSPNet `.npz` weights -> sceneparse.

ChainerCV (`chainercv.experimental.links.model.pspnet`) saves its links with
`chainer.serializers.save_npz`: one array per parameter, keyed by the link path, e.g.
`extractor/res4/b3/conv2/conv/W`. The layout:

    extractor/conv1_1, conv1_2, conv1_3      deep stem 64-64-128 (Conv2DBNActiv: conv/W, bn/*)
    extractor/res2..res5/{a,b1,b2,...}       bottlenecks conv1..conv3, `a` also residual_conv;
                                             the stride sits on the 3x3 conv, dilation 2 / 4 on every
                                             block of res4 / res5 (not contracted)
    ppm/0..3                                 one 1x1 Conv2DBNActiv per pyramid level, levels [6, 3, 2, 1]
    head_conv1                               3x3 Conv2DBNActiv on concat(x, ppm/0, ppm/1, ppm/2, ppm/3)
    head_conv2                               1x1 classifier with bias

Chainer's BatchNormalization adds eps = 2e-5 to the variance where PyTorch adds 1e-5: the
difference is added to the running variance, so the converted model computes the same values.
ChainerCV models have no auxiliary head. The npz is read with `allow_pickle=False`.
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from sceneparse.convert.common import KeyRule, rename_keys
from sceneparse.errors import CheckpointError

CHAINER_BN_EPS = 2e-5
TORCH_BN_EPS = 1e-5
PYRAMID_LEVELS = (6, 3, 2, 1)  # bins of ppm/0..3, also their order in head_conv1's input

STEM = {"conv1_1": (0, 1), "conv1_2": (3, 4), "conv1_3": (6, 7)}  # ChainerCV name -> (conv, bn) index of our stem
BN_FIELDS = {"gamma": "weight", "beta": "bias", "avg_mean": "running_mean", "avg_var": "running_var"}


def read_npz(path: str | Path) -> dict[str, torch.Tensor]:
    """Every array of a ChainerCV `.npz` as a tensor; object arrays (pickles) are refused, not loaded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ChainerCV weights file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key.lstrip("/"): npz[key] for key in npz.files}
    except ValueError as exc:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise CheckpointError(f"{path}: refused: the npz holds pickled objects, not plain arrays ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable .npz file ({exc})") from exc
    bad = [k for k, a in arrays.items() if a.dtype.kind not in "fiub"]
    if bad:
        raise CheckpointError(f"{path}: arrays that are not numbers: {', '.join(bad[:5])}")
    return {key: torch.from_numpy(np.array(array)) for key, array in arrays.items()}


def _bottleneck_rules() -> list[KeyRule]:
    rules: list[KeyRule] = []
    for stage in (2, 3, 4, 5):
        layer = f"backbone.layer{stage - 1}"
        rules += [
            (rf"^extractor/res{stage}/a/residual_conv/conv/W$", f"{layer}.0.downsample.0.weight"),
            (rf"^extractor/res{stage}/a/residual_conv/bn/(\w+)$", rf"{layer}.0.downsample.1.\1"),
            (rf"^extractor/res{stage}/a/conv([123])/conv/W$", rf"{layer}.0.conv\1.weight"),
            (rf"^extractor/res{stage}/a/conv([123])/bn/(\w+)$", rf"{layer}.0.bn\1.\2"),
            (rf"^extractor/res{stage}/b(\d+)/conv([123])/conv/W$", rf"{layer}.\1.conv\2.weight"),
            (rf"^extractor/res{stage}/b(\d+)/conv([123])/bn/(\w+)$", rf"{layer}.\1.bn\2.\3"),
        ]
    return rules


def _rules(pool_scales: list[int]) -> list[KeyRule]:
    rules: list[KeyRule] = []
    for name, (conv, bn) in STEM.items():
        rules += [(rf"^extractor/{name}/conv/W$", f"backbone.stem.{conv}.weight"),
                  (rf"^extractor/{name}/bn/(\w+)$", rf"backbone.stem.{bn}.\1")]
    rules += _bottleneck_rules()
    for level, bins in enumerate(PYRAMID_LEVELS):
        stage = pool_scales.index(bins)
        rules += [(rf"^ppm/{level}/conv/W$", f"decode_head.ppm.stages.{stage}.1.conv.weight"),
                  (rf"^ppm/{level}/bn/(\w+)$", rf"decode_head.ppm.stages.{stage}.1.bn.\1")]
    rules += [
        (r"^head_conv1/conv/W$", "decode_head.ppm.bottleneck.conv.weight"),
        (r"^head_conv1/bn/(\w+)$", r"decode_head.ppm.bottleneck.bn.\1"),
        (r"^head_conv2/W$", "decode_head.classifier.weight"),
        (r"^head_conv2/b$", "decode_head.classifier.bias"),
    ]
    return rules


def _rename_bn_fields(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """gamma/beta/avg_mean/avg_var -> weight/bias/running_mean/running_var, with chainer's eps folded in."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, field = key.rpartition(".")
        if field in BN_FIELDS:
            if field == "avg_var":
                value = value + (CHAINER_BN_EPS - TORCH_BN_EPS)
            key = f"{head}.{BN_FIELDS[field]}"
        out[key] = value
    return out


def reorder_pyramid_input(weight: torch.Tensor, in_channels: int, branch_channels: int,
                          source_order: list[int] | tuple[int, ...], target_order: list[int]) -> torch.Tensor:
    """Permute the input channels of the conv after the pyramid concat from `source_order` to `target_order`.

    Both concatenate the features (`in_channels`) first, then one `branch_channels` block per level.
    """
    if sorted(source_order) != sorted(target_order):
        raise CheckpointError(f"the checkpoint pools at {sorted(source_order)} bins but the preset at "
                              f"{sorted(target_order)} (model.decode_head.pool_scales)")
    expected = in_channels + len(source_order) * branch_channels
    if weight.shape[1] != expected:
        return weight  # misshapen: load_state_strict names it with both shapes
    blocks = {bins: weight[:, in_channels + i * branch_channels: in_channels + (i + 1) * branch_channels]
              for i, bins in enumerate(source_order)}
    return torch.cat([weight[:, :in_channels]] + [blocks[bins] for bins in target_order], dim=1)


def convert_chainercv(arrays: Mapping[str, torch.Tensor], pool_scales: list[int]) -> dict[str, torch.Tensor]:
    """Rename a ChainerCV PSPNet's arrays for a sceneparse PSPNet pooling at `pool_scales`."""
    if sorted(pool_scales) != sorted(PYRAMID_LEVELS):
        raise CheckpointError(f"ChainerCV's PSPNet pools at {list(PYRAMID_LEVELS)} bins; the preset's "
                              f"model.decode_head.pool_scales is {pool_scales}")
    # chainer's BatchNormalization keeps a sample counter `N`: not a weight of the model
    state = rename_keys(arrays, _rules(list(pool_scales)), drop=[r"/bn/N$"])
    state = _rename_bn_fields(state)
    unmapped = [k for k in state if "/" in k]
    if unmapped:
        raise CheckpointError(f"ChainerCV arrays that no rule maps (not a ChainerCV PSPNet?): {', '.join(unmapped[:8])}")
    key = "decode_head.ppm.bottleneck.conv.weight"
    stage0 = "decode_head.ppm.stages.0.1.conv.weight"
    if key in state and stage0 in state:
        branch, in_channels = state[stage0].shape[:2]
        state[key] = reorder_pyramid_input(state[key], in_channels, branch, PYRAMID_LEVELS, list(pool_scales))
    return state


def is_chainercv_npz(path: str | Path) -> bool:
    """Whether `path` looks like a ChainerCV PSPNet npz (without loading its arrays)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return any(re.match(r"/?extractor/conv1_1/", k) for k in npz.files)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
