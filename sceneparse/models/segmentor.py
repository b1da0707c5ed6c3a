"""A segmentor is a backbone, a decode head and an optional auxiliary head.

`forward` takes a normalised float batch (N x 3 x H x W) and returns a dict of logits at the input
resolution: "out" always, "aux" in training mode when there is an auxiliary head. Losses live in the
engine; test-time modes (slide, multi-scale + flip) live in `sceneparse.models.inference`.
"""
from __future__ import annotations

import torch
from torch import nn

from sceneparse.models.layers import resize


class Segmentor(nn.Module):
    def __init__(self, backbone: nn.Module, decode_head: nn.Module, aux_head: nn.Module | None,
                 num_classes: int, align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.num_classes = num_classes
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        result = {"out": resize(self.decode_head(features), size, self.align_corners)}
        if self.training and self.aux_head is not None:
            result["aux"] = resize(self.aux_head(features), size, self.align_corners)
        return result
