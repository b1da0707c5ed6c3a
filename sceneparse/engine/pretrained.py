"""ImageNet-pretrained backbones from a local file, through an explicit key map, loaded strictly.

The published recipes start from ImageNet weights: mmsegmentation from its ResNet-V1c files
(`open-mmlab://resnet50_v1c`, deep 3x3 stem), others from torchvision or timm ResNets. Each format
has a list of renaming rules and a list of keys dropped on purpose (the ImageNet classifier); every
other key must match the backbone exactly, and a mismatch names the keys.

    format        stem keys in the file                         backbone stem
    torchvision   conv1, bn1                                    "b"
    timm          conv1, bn1 (resnet50) or conv1.0/1/3/4/6, bn1 "b", or "v1c" for resnet*c (deep stem)
    mmseg         stem.0 .. stem.7 (V1c), optionally backbone.* "v1c"
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from sceneparse.convert.common import KeyRule, load_state_strict, read_torch_checkpoint, rename_keys
from sceneparse.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

CLASSIFIER = [r"^fc\.", r"^head\.", r"^classifier\.", r"^backbone\.fc\."]  # ImageNet heads: never part of a segmentation backbone

KEY_MAPS: dict[str, list[KeyRule]] = {
    "torchvision": [],  # conv1, bn1, layer1..4: the names sceneparse's ResNet uses
    "mmseg": [(r"^backbone\.", "")],  # mmcls/mmpretrain files wrap the trunk in `backbone.`
    "timm": [  # the deep stem of resnet*c / resnet*d is a Sequential named conv1, with bn1 after it
        (r"^conv1\.0\.", "stem.0."),
        (r"^conv1\.1\.", "stem.1."),
        (r"^conv1\.3\.", "stem.3."),
        (r"^conv1\.4\.", "stem.4."),
        (r"^conv1\.6\.", "stem.6."),
        (r"^bn1\.", "stem.7."),
    ],
}
FORMATS = ("torchvision", "timm", "mmseg")


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a `.safetensors` file or a weights-only `.pth` (envelopes unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained backbone file not found (train.pretrained)")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    return read_torch_checkpoint(path)


def detect_format(state: dict[str, torch.Tensor]) -> str:
    """Which toolbox wrote an ImageNet ResNet, from its stem keys."""
    keys = set(state)
    if any(k.startswith(("stem.", "backbone.stem.")) for k in keys):
        return "mmseg"
    if "conv1.0.weight" in keys:
        return "timm"
    if "conv1.weight" in keys:
        return "torchvision"  # timm's plain ResNets use the same names
    sample = ", ".join(sorted(keys)[:5])
    raise CheckpointError(f"cannot tell the format of this ResNet from its keys ({sample}, ...); set "
                          f"train.pretrained_format to one of {', '.join(FORMATS)}")


def map_keys(state: dict[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """The file's keys renamed for sceneparse's ResNet; the ImageNet classifier dropped explicitly."""
    if fmt not in KEY_MAPS:
        raise ConfigError(f"train.pretrained_format = {fmt!r}: expected auto, {', '.join(FORMATS)}")
    rules = KEY_MAPS[fmt]
    if fmt == "timm" and "conv1.0.weight" not in state:
        rules = []  # a plain timm ResNet (7x7 stem): names as torchvision
    return rename_keys(state, rules, drop=CLASSIFIER)


def fill_bn_counters(backbone: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BatchNorm's `num_batches_tracked` counters, absent from torchvision files, start at 0."""
    out = dict(state)
    for key in backbone.state_dict():
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.tensor(0, dtype=torch.long)
    return out


def load_pretrained_backbone(backbone: nn.Module, path: str | Path, fmt: str = "auto") -> str:
    """Load ImageNet weights into `backbone` strictly; returns the format used.

    Missing, unexpected or misshapen keys raise CheckpointError naming them, with the stem and
    depth the backbone expects (the usual cause is a torchvision file for a V1c-stem preset).
    """
    state = read_state(path)
    if fmt == "auto":
        fmt = detect_format(state)
    mapped = fill_bn_counters(backbone, map_keys(state, fmt))
    try:
        load_state_strict(backbone, mapped, f"{path} ({fmt} format)")
    except CheckpointError as exc:
        depth, stem = getattr(backbone, "depth", "?"), getattr(backbone, "stem_type", "?")
        raise CheckpointError(
            f"{exc} The backbone is ResNet-{depth} with stem {stem!r}: torchvision and plain timm ResNets have "
            "the 7x7 stem 'b'; mmsegmentation V1c and timm resnet*c files have the deep stem 'v1c' "
            "(set model.backbone.stem to match, or use the matching file)."
        ) from exc
    log.info("loaded ImageNet backbone weights from %s (%s format)", path, fmt)
    return fmt
