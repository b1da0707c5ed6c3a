"""PSANet's decode head (ECCV'18): point-wise spatial attention, collect / distribute / bi-direction.

Features are reduced to `channels`, shrunk by `shrink_factor`, and each position predicts an
attention mask over the others (`sceneparse.models.psa_mask`). The attended features are projected
back to the input width, resized to the feature size, concatenated with the input and classified.
The size rules (shrinking, the projection's padding of 1) follow mmsegmentation and sssegmentation,
so their weights give their outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.layers import ConvBNReLU, SegHead, resize
from sceneparse.models.psa_mask import psa_mask


def _attention(channels: int, mask_cells: int) -> nn.Sequential:
    return nn.Sequential(ConvBNReLU(channels, channels, 1), nn.Conv2d(channels, mask_cells, 1, bias=False))


class PSAHead(SegHead):
    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float, align_corners: bool,
                 mask_size: list[int], psa_type: str = "bi-direction", compact: bool = False,
                 shrink_factor: int = 2, normalization_factor: float = 1.0, psa_softmax: bool = True,
                 proj_padding: int = 1) -> None:
        super().__init__(channels, num_classes, dropout)
        if psa_type not in ("collect", "distribute", "bi-direction"):
            raise ValueError(f"psa_type must be collect, distribute or bi-direction, got {psa_type!r}")
        self.psa_type, self.compact, self.shrink_factor = psa_type, compact, shrink_factor
        self.mask_size = (int(mask_size[0]), int(mask_size[1]))
        self.psa_softmax = psa_softmax
        self.normalization_factor = normalization_factor or float(self.mask_size[0] * self.mask_size[1])
        self.align_corners = align_corners
        cells = self.mask_size[0] * self.mask_size[1]
        self.reduce = ConvBNReLU(in_channels, channels, 1)
        self.attention = _attention(channels, cells)
        if psa_type == "bi-direction":
            self.reduce_p = ConvBNReLU(in_channels, channels, 1)
            self.attention_p = _attention(channels, cells)
        branches = 2 if psa_type == "bi-direction" else 1
        # mmsegmentation pads this 1x1 conv by 1 (its output is resized anyway); semseg does not
        self.proj = ConvBNReLU(channels * branches, in_channels, 1, padding=proj_padding)
        self.bottleneck = ConvBNReLU(in_channels * 2, channels, 3, padding=1)

    def _shrink(self, h: int, w: int) -> tuple[int, int, bool]:
        """Shrunk size and the align_corners used for it (True when both sides are odd-ish, as the peers)."""
        s = self.shrink_factor
        if s == 1:
            return h, w, self.align_corners
        if h % s and w % s:
            return (h - 1) // s + 1, (w - 1) // s + 1, True
        return h // s, w // s, False

    def _attend(self, feats: torch.Tensor, attention: nn.Module, kind: str, transpose_compact: bool) -> torch.Tensor:
        """Attention-weighted sum over positions: (n, c, h, w) -> (n, c, h, w).

        A compact map is used as predicted, or transposed: the peers transpose it for a lone
        "collect" head and for the distribute branch of "bi-direction"; `transpose_compact` says which.
        """
        n, c, h, w = feats.shape
        y = attention(feats)
        if self.compact:
            if h * w != y.shape[1]:
                raise ValueError(f"compact PSA needs mask_h*mask_w == h*w of the shrunk map ({h}x{w}), "
                                 f"got mask {self.mask_size}")
            if transpose_compact:
                y = y.reshape(n, h * w, h * w).transpose(1, 2).reshape(n, h * w, h, w)
        else:
            y = psa_mask(y, kind, self.mask_size)
        if self.psa_softmax:
            y = F.softmax(y, dim=1)
        out = torch.bmm(feats.reshape(n, c, h * w), y.reshape(n, h * w, h * w))
        return out.reshape(n, c, h, w) * (1.0 / self.normalization_factor)

    def _to_shrunk(self, features: torch.Tensor, size: tuple[int, int], align: bool) -> torch.Tensor:
        """The reduced features at the shrunk size (bilinear, as the peers)."""
        return resize(features, size, align)

    def attend_all(self, x: torch.Tensor) -> torch.Tensor:
        """The attention branches' output on the shrunk map (before `proj`)."""
        h, w, align = self._shrink(x.shape[-2], x.shape[-1])
        if self.psa_type == "bi-direction":
            col = self._to_shrunk(self.reduce(x), (h, w), align)
            dis = self._to_shrunk(self.reduce_p(x), (h, w), align)
            return torch.cat([self._attend(col, self.attention, "collect", transpose_compact=False),
                              self._attend(dis, self.attention_p, "distribute", transpose_compact=True)], dim=1)
        return self._attend(self._to_shrunk(self.reduce(x), (h, w), align), self.attention, self.psa_type,
                            transpose_compact=self.psa_type == "collect")

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        align = self._shrink(x.shape[-2], x.shape[-1])[2]
        out = resize(self.proj(self.attend_all(x)), x.shape[-2:], align)
        return self.classify(self.bottleneck(torch.cat([x, out], dim=1)))
