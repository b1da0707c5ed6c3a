"""ImageNet-pretrained backbones: named by URL and checksum, fetched once, loaded strictly by key map.

The published recipes start from ImageNet weights, and every preset names its file
(`train.pretrained`, with `train.pretrained_sha256`): mmsegmentation's ResNet-V1c files
(`open-mmlab://resnet50_v1c`, deep 3x3 stem; sssegmentation's `resnet50conv3x3stem` is the same file),
torchvision's files for the 7x7-stem `b` rows (`torchvision://resnet50`, the URLs mmcv/mmengine map
that name to), and semseg's `resnet50_v2.pth` (no public URL: `semseg://resnet50_v2` says where to
get it). `train.pretrained` is a file, a URL or such a name; URLs go through `sceneparse.hub.fetch`,
the cache and the SHA-256 check of published weights (the file names carry the first 8 hex digits of
the SHA-256, the mmcv/torchvision convention). Offline, a file put by hand at
`<cache>/pretrained/<file name>` is used when its SHA-256 matches.

Each file format has a list of renaming rules and a list of keys dropped on purpose (the ImageNet
classifier); every other key must match the backbone exactly, and a mismatch names the keys.

    format        stem keys in the file                         backbone stem
    torchvision   conv1, bn1                                    "b"
    timm          conv1, bn1 (resnet50) or conv1.0/1/3/4/6, bn1 "b", or "v1c" for resnet*c (deep stem)
    mmseg         stem.0 .. stem.7 (V1c), optionally backbone.* "v1c"
    semseg        conv1, bn1, conv2, bn2, conv3, bn3 (deep_base) "semseg"
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from sceneparse.convert.common import KeyRule, load_state_strict, read_torch_checkpoint, rename_keys
from sceneparse.errors import CheckpointError, ConfigError
from sceneparse.hub import DownloadError, cache_dir, fetch, file_sha256, is_url, url_filename

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
    "semseg": [  # semseg's ResNet(deep_base=True): conv1/bn1, conv2/bn2, conv3/bn3 become its layer0
        (r"^conv1\.", "stem.0."),
        (r"^bn1\.", "stem.1."),
        (r"^conv2\.", "stem.3."),
        (r"^bn2\.", "stem.4."),
        (r"^conv3\.", "stem.6."),
        (r"^bn3\.", "stem.7."),
    ],
}
FORMATS = ("torchvision", "timm", "mmseg", "semseg")
NO_BACKBONE = ("", "none")  # train.pretrained values that mean random initialisation


@dataclass(frozen=True)
class BackboneFile:
    """An ImageNet backbone file: where it is published and the start of its SHA-256."""

    url: str
    sha256_prefix: str
    where: str = ""  # for files with no public URL: how to get them


SEMSEG_WHERE = ("semseg publishes its ImageNet ResNets ({name}.pth) on Google Drive only, with no direct URL: "
                "follow 'Download ImageNet pre-trained models' in https://github.com/hszhao/semseg#usage, "
                "then pass --pretrained path/to/{name}.pth")
OPENMMLAB = "https://download.openmmlab.com/pretrain/third_party"
TORCHVISION = "https://download.pytorch.org/models"
# mmcv/mmengine's open-mmlab:// and torchvision:// names (mmengine/hub/openmmlab.json, torchvision_0.12.json)
IMAGENET_BACKBONES: dict[str, BackboneFile] = {
    "open-mmlab://resnet18_v1c": BackboneFile(f"{OPENMMLAB}/resnet18_v1c-b5776b93.pth", "b5776b93"),
    "open-mmlab://resnet50_v1c": BackboneFile(f"{OPENMMLAB}/resnet50_v1c-2cccc1ad.pth", "2cccc1ad"),
    "open-mmlab://resnet101_v1c": BackboneFile(f"{OPENMMLAB}/resnet101_v1c-e67eebb6.pth", "e67eebb6"),
    "torchvision://resnet18": BackboneFile(f"{TORCHVISION}/resnet18-f37072fd.pth", "f37072fd"),
    "torchvision://resnet34": BackboneFile(f"{TORCHVISION}/resnet34-b627a593.pth", "b627a593"),
    "torchvision://resnet50": BackboneFile(f"{TORCHVISION}/resnet50-0676ba61.pth", "0676ba61"),
    "torchvision://resnet101": BackboneFile(f"{TORCHVISION}/resnet101-63fe2227.pth", "63fe2227"),
    "torchvision://resnet152": BackboneFile(f"{TORCHVISION}/resnet152-394f9c45.pth", "394f9c45"),
    "semseg://resnet50_v2": BackboneFile("", "", SEMSEG_WHERE.format(name="resnet50_v2")),
    "semseg://resnet101_v2": BackboneFile("", "", SEMSEG_WHERE.format(name="resnet101_v2")),
}


def imagenet_backbone_name(source: str, depth: int, stem: str) -> str:
    """The ImageNet file a source's recipe starts from, by its scheme name ("" when there is none).

    mmsegmentation: open-mmlab://resnetN_v1c (V1c stem) or torchvision://resnetN (7x7 stem, the `b`
    rows); sssegmentation's resnetNconv3x3stem is the same V1c file; semseg: its resnetN_v2.pth."""
    if source in ("mmsegmentation", "sssegmentation"):
        name = f"open-mmlab://resnet{depth}_v1c" if stem == "v1c" else f"torchvision://resnet{depth}"
    elif source == "semseg":
        name = f"semseg://resnet{depth}_v2"
    else:
        return ""
    return name if name in IMAGENET_BACKBONES else ""


def sha256_prefix_of(url: str) -> str:
    """The hex digits a published file name ends in (`resnet50_v1c-2cccc1ad.pth` -> 2cccc1ad), or ""."""
    match = re.search(r"-([0-9a-f]{8,64})\.(?:pth|pt|safetensors)$", url_filename(url))
    return match.group(1) if match else ""


def manual_path(url: str) -> Path:
    """Where a backbone downloaded by hand is looked for before the network (`<cache>/pretrained/<name>`)."""
    return cache_dir() / "pretrained" / url_filename(url)


def resolve_pretrained(spec: str, sha256_prefix: str = "", progress: bool = True) -> Path | None:
    """The local file `train.pretrained` names (None for random initialisation).

    A scheme name is looked up in IMAGENET_BACKBONES; a URL is downloaded through the cache (its
    SHA-256 checked against `sha256_prefix`, else against the prefix in its file name); a path is
    taken as it is. Offline: an error naming the URL and where to put the file.
    """
    spec = spec.strip()
    if spec.lower() in NO_BACKBONE:
        return None
    if spec in IMAGENET_BACKBONES:
        entry = IMAGENET_BACKBONES[spec]
        if not entry.url:
            raise CheckpointError(f"train.pretrained = {spec!r}: {entry.where}")
        url, sha256_prefix = entry.url, sha256_prefix or entry.sha256_prefix
    elif is_url(spec):
        in_name = sha256_prefix_of(spec)
        if sha256_prefix and in_name and not (in_name.startswith(sha256_prefix) or sha256_prefix.startswith(in_name)):
            raise ConfigError(f"train.pretrained_sha256 = {sha256_prefix!r}, but the file name of train.pretrained "
                              f"({url_filename(spec)}) says {in_name!r}: set train.pretrained_sha256 to match, or to \"\"")
        url, sha256_prefix = spec, sha256_prefix or in_name
    elif "://" in spec:
        raise ConfigError(f"train.pretrained = {spec!r}: unknown name; known: {', '.join(IMAGENET_BACKBONES)}, "
                          "an http(s) URL, a file, or none")
    else:
        return Path(spec)
    by_hand = manual_path(url)
    if by_hand.is_file():
        if sha256_prefix and not file_sha256(by_hand).startswith(sha256_prefix.lower()):
            raise CheckpointError(f"{by_hand}: its SHA-256 does not start with {sha256_prefix}, so it is not {url}; "
                                  "replace it with that file, or delete it")
        return by_hand
    try:
        return fetch(url, sha256_prefix, progress=progress, manual=f"put it at {by_hand} or pass --pretrained FILE")
    except DownloadError as exc:
        raise DownloadError(f"the ImageNet backbone {url} could not be fetched ({exc}). Download it yourself and "
                            f"put it at {by_hand}, or pass --pretrained FILE (--pretrained none trains from random "
                            "initialisation)") from None


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
    if "conv2.weight" in keys and "conv3.weight" in keys:
        return "semseg"
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
