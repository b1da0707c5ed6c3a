"""UPerNet's decode head (ECCV'18): pyramid pooling on the last stage + an FPN over all stages."""
from __future__ import annotations

import torch
from torch import nn

from sceneparse.models.layers import ConvBNReLU, SegHead, resize
from sceneparse.models.ppm import PyramidPooling


class UPerHead(SegHead):
    """Laterals (1x1) + PPM on the top level, top-down bilinear sums, 3x3 FPN convs, concat, 3x3 fuse."""

    def __init__(self, in_channels: list[int], channels: int, num_classes: int, pool_scales: list[int],
                 dropout: float, align_corners: bool, in_index: list[int] | None = None) -> None:
        super().__init__(channels, num_classes, dropout)
        self.align_corners = align_corners
        self.in_index = list(in_index) if in_index is not None else list(range(len(in_channels)))
        self.ppm = PyramidPooling(in_channels[-1], channels, pool_scales, align_corners)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3, padding=1) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        features = [features[i] for i in self.in_index]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features[:-1])]
        laterals.append(self.ppm(features[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add each level to the one below
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:], self.align_corners)
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = torch.cat([resize(o, size, self.align_corners) for o in outs], dim=1)
        return self.classify(self.fpn_bottleneck(fused))
