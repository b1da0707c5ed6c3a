"""PSPNet's decode head (CVPR'17): pyramid pooling on the last stage, then a classifier."""
from __future__ import annotations

import torch

from sceneparse.models.layers import SegHead
from sceneparse.models.ppm import PyramidPooling


class PSPHead(SegHead):
    def __init__(self, in_channels: int, channels: int, num_classes: int, pool_scales: list[int],
                 dropout: float, align_corners: bool, pool_mode: str = "adaptive",
                 pool_input_size: list[int] | None = None, pool_ceil_mode: bool = True) -> None:
        super().__init__(channels, num_classes, dropout)
        self.ppm = PyramidPooling(in_channels, channels, pool_scales, align_corners, pool_mode, pool_input_size,
                                  pool_ceil_mode)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.ppm(features[-1]))
