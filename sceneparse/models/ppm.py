"""The pyramid pooling module of PSPNet, shared by PSPHead and UPerHead.

Each branch pools the feature map into `scale x scale` bins, projects it with a 1x1 conv and is
upsampled back; the branches are concatenated with the input and fused by a 3x3 `bottleneck`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.layers import ConvBNReLU, resize


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def _bin_matrix(size: torch.Tensor, bins: int, dtype: torch.dtype) -> torch.Tensor:
    """(bins, size) averaging weights of adaptive pooling: bin i spans [floor(i*n/b), ceil((i+1)*n/b))."""
    idx = torch.arange(bins, device=size.device)
    start = torch.div(idx * size, bins, rounding_mode="floor")
    end = torch.div((idx + 1) * size + bins - 1, bins, rounding_mode="floor")
    pos = torch.arange(size, device=size.device)  # type: ignore[call-overload]
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    weights = inside.to(dtype)
    return weights / weights.sum(dim=1, keepdim=True)


class AdaptiveAvgPool(nn.Module):
    """`F.adaptive_avg_pool2d`, written as two small matrix products while tracing or exporting.

    ONNX has no adaptive pooling for sizes that are not multiples of the bins; the matrix form
    computes exactly the same bins for any (dynamic) height and width.
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _exporting():
            if x.is_cuda and not x.is_contiguous():
                # CUDA's channels_last kernel is ~50x slower than a copy plus the NCHW kernel (H100, torch 2.11)
                x = x.contiguous()
            return F.adaptive_avg_pool2d(x, self.bins)
        h = torch.tensor(x.shape[-2], device=x.device) if isinstance(x.shape[-2], int) else x.shape[-2]
        w = torch.tensor(x.shape[-1], device=x.device) if isinstance(x.shape[-1], int) else x.shape[-1]
        rows = _bin_matrix(torch.as_tensor(h), self.bins, x.dtype)
        cols = _bin_matrix(torch.as_tensor(w), self.bins, x.dtype)
        return torch.einsum("bh,nchw,gw->ncbg", rows, x, cols)


class FixedAvgPool(nn.Module):
    """Average pooling with windows fixed for one feature size, as the original Caffe PSPNet.

    At its training crop (713 -> feature 90) the windows equal adaptive pooling; at other sizes they
    keep their size, which is what the released Caffe models compute.
    """

    def __init__(self, bins: int, input_size: tuple[int, int], ceil_mode: bool = True) -> None:
        super().__init__()
        self.bins = bins
        self.kernel = (input_size[0] // bins, input_size[1] // bins)
        self.ceil_mode = ceil_mode  # Caffe: True; ChainerCV: False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=self.kernel, stride=self.kernel, ceil_mode=self.ceil_mode)


class PyramidPooling(nn.Module):
    """PPM + bottleneck: `stages[i]` = pool -> 1x1 ConvBNReLU; output = 3x3 ConvBNReLU(concat(x, stages))."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        pool_scales: list[int],
        align_corners: bool,
        pool_mode: str = "adaptive",
        pool_input_size: list[int] | None = None,
        pool_ceil_mode: bool = True,
    ) -> None:
        super().__init__()
        if pool_mode not in ("adaptive", "fixed"):
            raise ValueError(f"pool_mode must be 'adaptive' or 'fixed', got {pool_mode!r}")
        if pool_mode == "fixed" and not pool_input_size:
            raise ValueError("pool_mode 'fixed' needs pool_input_size (feature size at the training crop)")
        self.align_corners = align_corners
        self.stages = nn.ModuleList()
        for scale in pool_scales:
            pool = (AdaptiveAvgPool(scale) if pool_mode == "adaptive"
                    else FixedAvgPool(scale, (pool_input_size[0], pool_input_size[-1]), pool_ceil_mode))  # type: ignore[index]
            self.stages.append(nn.Sequential(pool, ConvBNReLU(in_channels, channels, 1)))
        self.bottleneck = ConvBNReLU(in_channels + len(pool_scales) * channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [resize(stage(x), size, self.align_corners) for stage in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))
