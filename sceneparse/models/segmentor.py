"""A segmentor is a backbone, a decode head and an optional auxiliary head.

`forward` takes a normalised float batch (N x 3 x H x W) and returns a dict of logits at the input
resolution (or the heads' own, with `upsample=False`): "out" always, "aux" in training mode when
there is an auxiliary head. Losses live in the
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

    def forward(self, x: torch.Tensor, upsample: bool = True) -> dict[str, torch.Tensor]:
        """Logits at the input size; with `upsample=False` at the heads' own size (the training loop's
        loss upsamples them band by band, `sceneparse.engine.upsampled_loss`, to save memory)."""
        size = x.shape[-2:]
        features = self.backbone(x)
        logits = {"out": self.decode_head(features)}
        if self.training and self.aux_head is not None:
            logits["aux"] = self.aux_head(features)
        if not upsample:
            return logits
        return {name: resize(value, size, self.align_corners) for name, value in logits.items()}
