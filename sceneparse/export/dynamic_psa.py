"""PSANet's decode head in a form whose sizes follow the input when traced for ONNX.

`PSAHead` picks the shrunk size and the resize mode (align_corners) with Python branches on the
feature map's parity, as mmsegmentation does. A trace records one branch only, so an ONNX graph
exported at an even size would compute the wrong shapes at an odd one. Here both choices are made
with tensor operations (`torch.where`), and the resizes are two small interpolation matrices built
from the runtime sizes: the same numbers as `F.interpolate(mode="bilinear")` for any height and
width. The head's own modules (and weights) are used as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from sceneparse.models.psa_head import PSAHead


def _size(x: torch.Tensor, dim: int) -> torch.Tensor:
    """A dimension as a 0-d tensor: already one while tracing for ONNX, made one in eager mode."""
    size = x.shape[dim]
    return size if isinstance(size, torch.Tensor) else torch.tensor(size, device=x.device)


def interpolation_matrix(in_size: torch.Tensor, out_size: torch.Tensor, align_corners: torch.Tensor,
                         dtype: torch.dtype) -> torch.Tensor:
    """(out, in) weights of 1-D linear interpolation, as `F.interpolate` computes them for a given size.

    align_corners: source = i * (in - 1) / (out - 1); else source = max((i + 0.5) * in / out - 0.5, 0).
    """
    device = in_size.device
    i = torch.arange(out_size, device=device).to(torch.float64)
    n_in, n_out = in_size.to(torch.float64), out_size.to(torch.float64)
    aligned = i * (n_in - 1) / torch.clamp(n_out - 1, min=1)
    half_pixel = torch.clamp((i + 0.5) * n_in / n_out - 0.5, min=0)
    source = torch.where(align_corners, aligned, half_pixel)
    low = torch.minimum(torch.floor(source), n_in - 1)
    high = torch.minimum(low + 1, n_in - 1)
    frac = (source - low).unsqueeze(1)
    columns = torch.arange(in_size, device=device).to(torch.float64).unsqueeze(0)
    weights = (columns == low.unsqueeze(1)).to(torch.float64) * (1 - frac)
    weights = weights + (columns == high.unsqueeze(1)).to(torch.float64) * frac
    return weights.to(dtype)


def resize_bilinear(x: torch.Tensor, height: torch.Tensor, width: torch.Tensor,
                    align_corners: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of an N x C x H x W map to height x width; every argument may be a runtime value."""
    rows = interpolation_matrix(_size(x, -2), height, align_corners, x.dtype)
    cols = interpolation_matrix(_size(x, -1), width, align_corners, x.dtype)
    return torch.matmul(torch.matmul(rows, x), cols.t())


class DynamicSizePSAHead(nn.Module):
    """`PSAHead.forward` with the size rules as tensor operations; same modules, same outputs."""

    def __init__(self, head: PSAHead) -> None:
        super().__init__()
        self.head = head

    def _shrunk_size(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`PSAHead._shrink`: halve (rounding up, aligned corners) when both sides are odd, else floor."""
        h, w, s = _size(x, -2), _size(x, -1), self.head.shrink_factor
        if s == 1:
            return h, w, torch.tensor(self.head.align_corners, device=x.device)
        both_odd = (h % s != 0) & (w % s != 0)
        return (torch.where(both_odd, (h - 1) // s + 1, h // s), torch.where(both_odd, (w - 1) // s + 1, w // s),
                both_odd)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        head = self.head
        x = features[-1]
        h, w, align = self._shrunk_size(x)
        if head.psa_type == "bi-direction":
            col = resize_bilinear(head.reduce(x), h, w, align)
            dis = resize_bilinear(head.reduce_p(x), h, w, align)
            out = torch.cat([head._attend(col, head.attention, "collect", transpose_compact=False),
                             head._attend(dis, head.attention_p, "distribute", transpose_compact=True)], dim=1)
        else:
            out = head._attend(resize_bilinear(head.reduce(x), h, w, align), head.attention, head.psa_type,
                               transpose_compact=head.psa_type == "collect")
        out = resize_bilinear(head.proj(out), _size(x, -2), _size(x, -1), align)
        return head.classify(head.bottleneck(torch.cat([x, out], dim=1)))
