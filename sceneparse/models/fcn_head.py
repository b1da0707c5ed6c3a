"""The auxiliary FCN head: one 3x3 ConvBNReLU on a middle stage, then a classifier (training loss only)."""
from __future__ import annotations

import torch
from torch import nn

from sceneparse.models.layers import ConvBNReLU, SegHead


class FCNHead(SegHead):
    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float, in_index: int) -> None:
        super().__init__(channels, num_classes, dropout)
        self.in_index = in_index
        self.convs = nn.Sequential(ConvBNReLU(in_channels, channels, 3, padding=1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.convs(features[self.in_index]))
