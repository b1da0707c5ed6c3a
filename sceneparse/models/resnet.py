"""Dilated ResNet backbones (ResNet-18/34/50/101/152) that return the four stage features.

The output stride is turned into per-stage strides and dilations, as torchvision's
`replace_stride_with_dilation`. Module names follow torchvision and mmsegmentation
(`conv1`/`bn1` or `stem`, `layer1`..`layer4`, `downsample.0/.1`), so weight maps stay simple.
Normalisation is plain BatchNorm2d; the engine converts it to SyncBatchNorm for multi-process runs.
"""
from __future__ import annotations

import torch
from torch import nn

# output stride -> (strides of layer1..4, dilations of layer1..4)
STRIDES_AND_DILATIONS = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}

# stem name -> default stem width; "b" is the 7x7 conv, the others are three 3x3 convs (w/2, w/2, w)
STEM_WIDTHS = {"b": 64, "v1c": 64, "semseg": 128}


class BasicBlock(nn.Module):
    """Two 3x3 convs; as mmsegmentation, only the first one is dilated."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision: one full-size tensor fewer per block
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, dilated) -> 1x1, the "pytorch" style (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as torchvision: one full-size tensor fewer per block
        return self.relu(out)


ARCHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def make_stage(block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, num_blocks: int,
               stride: int, dilations: list[int]) -> nn.Sequential:
    """One ResNet stage; the first block changes stride and width through a 1x1 `downsample`."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    blocks = [block(inplanes, planes, stride, dilations[0], downsample)]
    blocks += [block(planes * block.expansion, planes, 1, dilations[i]) for i in range(1, num_blocks)]
    return nn.Sequential(*blocks)


def stage_dilations(dilation: int, num_blocks: int, contract_dilation: bool, multi_grid: list[int]) -> list[int]:
    """Per-block dilations of a stage: contracted first block (mmsegmentation) or multi-grid multipliers."""
    if multi_grid:
        if len(multi_grid) != num_blocks:
            raise ValueError(f"multi_grid {multi_grid} needs one entry per block ({num_blocks})")
        return [dilation * g for g in multi_grid]
    dilations = [dilation] * num_blocks
    if contract_dilation and dilation > 1:
        dilations[0] = dilation // 2
    return dilations


class ResNet(nn.Module):
    """A ResNet trunk without the classifier; `forward` returns the outputs of layer1..layer4."""

    def __init__(
        self,
        depth: int = 50,
        stem: str = "v1c",
        stem_channels: int = 0,
        base_channels: int = 64,
        output_stride: int = 8,
        contract_dilation: bool = True,
        multi_grid: list[int] | None = None,
    ) -> None:
        super().__init__()
        if depth not in ARCHS:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCHS)}, got {depth}")
        if stem not in STEM_WIDTHS:
            raise ValueError(f"stem must be one of {sorted(STEM_WIDTHS)}, got {stem!r}")
        if output_stride not in STRIDES_AND_DILATIONS:
            raise ValueError(f"output_stride must be one of {sorted(STRIDES_AND_DILATIONS)}, got {output_stride}")
        block, layers = ARCHS[depth]
        stem_channels = stem_channels or STEM_WIDTHS[stem]
        self.depth, self.stem_type, self.output_stride = depth, stem, output_stride

        if stem == "b":
            self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_channels)
            self.relu = nn.ReLU(inplace=True)
        else:
            half = stem_channels // 2
            self.stem = nn.Sequential(
                nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                nn.Conv2d(half, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels),
                nn.ReLU(inplace=True),
            )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        strides, dilations = STRIDES_AND_DILATIONS[output_stride]
        inplanes = stem_channels
        self.out_channels: list[int] = []
        for i, num_blocks in enumerate(layers):
            planes = base_channels * 2**i
            grid = list(multi_grid or []) if i == 3 else []
            stage = make_stage(block, inplanes, planes, num_blocks, strides[i],
                               stage_dilations(dilations[i], num_blocks, contract_dilation, grid))
            self.add_module(f"layer{i + 1}", stage)
            inplanes = planes * block.expansion
            self.out_channels.append(inplanes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.stem_type == "b":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.stem(x)
        x = self.maxpool(x)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features
