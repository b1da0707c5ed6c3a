"""Cross-entropy of bilinearly upsampled logits, without the full-resolution logits map.

The heads predict at 1/8 (or 1/4) of the input size; the loss is taken at the label's size. Done
plainly, a training step holds the upsampled logits, their log-softmax (kept for backward), and in
backward two more maps of that size, per head: at 512x512, 150 classes and batch 8 that is 1.2 GiB
each. Bilinear upsampling is separable and linear, `up = R @ small @ C.T` with interpolation
matrices R (H x h) and C (W x w), so the loss can be summed over bands of rows, each upsampled,
scored and dropped, and backward can do the same: for a band, the gradient of the summed loss
with respect to its logits is `weight[label] * (softmax - onehot)` (zero where ignored), and it goes
back to the small logits through R and C. Only the small logits are kept.

The sums are those of `F.cross_entropy(F.interpolate(small, size, "bilinear"), label,
reduction="sum")` up to rounding (the interpolation weights are F.interpolate's own,
`sceneparse.export.dynamic_psa.interpolation_matrix`).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from sceneparse.export.dynamic_psa import interpolation_matrix

BAND_ELEMENTS = 1 << 20  # logits per band (4 MiB in float32) at least ...
MAX_BANDS = 16  # ... and at most this many bands: each a few kernel launches, which a GPU step notices


def scoring_precision(small: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) are scored in float32; float32 and float64 as they are."""
    return small.float() if small.dtype in (torch.float16, torch.bfloat16) else small


@functools.lru_cache(maxsize=32)
def _matrix(n_in: int, n_out: int, align_corners: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # cached: every training step asks for the same few, and building them on the host and copying
    # them to a GPU each step would stall it; the tensors are only read
    return interpolation_matrix(torch.tensor(n_in), torch.tensor(n_out), torch.tensor(align_corners),
                                dtype).to(device)


def interpolation_matrices(small: torch.Tensor, size: tuple[int, int], align_corners: bool
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C): the (H, h) and (W, w) matrices of F.interpolate's bilinear resize of `small` to `size`,
    in `small`'s dtype and on its device."""
    return (_matrix(small.shape[-2], size[0], align_corners, small.dtype, small.device),
            _matrix(small.shape[-1], size[1], align_corners, small.dtype, small.device))


def band_rows(small: torch.Tensor, height: int, width: int) -> int:
    """Rows per band: about BAND_ELEMENTS logits, but no more than MAX_BANDS bands (a band is then
    1/16 of the full map: 16x less memory than the full map, a few dozen launches per head)."""
    return max(1, BAND_ELEMENTS // max(1, small.shape[0] * small.shape[1] * width), -(-height // MAX_BANDS))


def band_logits(small: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The upsampled logits of one band of rows: (n, k, h, w) -> (n, k, len(rows), W)."""
    return torch.matmul(torch.matmul(rows, small), cols.t())


class _UpsampledCrossEntropySum(torch.autograd.Function):
    """sum over pixels of weight[label] * -log softmax(upsample(small))[label], ignored pixels 0."""

    @staticmethod
    def forward(ctx, small: torch.Tensor, label: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                weight: torch.Tensor | None, ignore_index: int) -> torch.Tensor:
        step = band_rows(small, rows.shape[0], cols.shape[0])
        total = small.new_zeros(())
        for top in range(0, rows.shape[0], step):
            total = total + F.cross_entropy(band_logits(small, rows[top:top + step], cols), label[:, top:top + step],
                                            weight=weight, ignore_index=ignore_index, reduction="sum")
        ctx.save_for_backward(small, label, rows, cols, weight)
        ctx.ignore_index = ignore_index
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        small, label, rows, cols, weight = ctx.saved_tensors
        grad_small = torch.zeros_like(small)
        step = band_rows(small, rows.shape[0], cols.shape[0])
        for top in range(0, rows.shape[0], step):
            band = rows[top:top + step]
            grad = band_logits(small, band, cols).softmax(dim=1)  # d(-log p_y)/dz = p - onehot(y)
            target = label[:, top:top + step]
            valid = target != ctx.ignore_index
            safe = torch.where(valid, target, torch.zeros_like(target))
            grad.scatter_add_(1, safe.unsqueeze(1), -torch.ones_like(grad[:, :1]))
            scale = valid.to(grad.dtype) if weight is None else weight[safe] * valid
            grad = grad * (scale * grad_total).unsqueeze(1)
            grad_small += torch.matmul(band.t(), torch.matmul(grad, cols))  # back through the interpolation
        return grad_small, None, None, None, None, None


def upsampled_cross_entropy_sum(small: torch.Tensor, label: torch.Tensor, align_corners: bool,
                                ignore_index: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """`F.cross_entropy(resize(small, label.shape[-2:]), label, weight, ignore_index, reduction="sum")`
    without the resized map (half precision scored in float32)."""
    small = scoring_precision(small)
    rows, cols = interpolation_matrices(small, (label.shape[-2], label.shape[-1]), align_corners)
    if weight is not None:
        weight = weight.to(small.dtype)
    return _UpsampledCrossEntropySum.apply(small, label, rows, cols, weight, ignore_index)


@torch.no_grad()
def upsampled_true_class_probability(small: torch.Tensor, label: torch.Tensor, align_corners: bool,
                                     ignore_index: int) -> torch.Tensor:
    """softmax(resize(small))[label] per pixel (N x H x W; 0 where ignored), band by band (for OHEM)."""
    small = scoring_precision(small)
    rows, cols = interpolation_matrices(small, (label.shape[-2], label.shape[-1]), align_corners)
    out = small.new_zeros(label.shape)
    step = band_rows(small, rows.shape[0], cols.shape[0])
    for top in range(0, rows.shape[0], step):
        target = label[:, top:top + step]
        valid = target != ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        prob = band_logits(small, rows[top:top + step], cols).softmax(dim=1).gather(1, safe.unsqueeze(1))
        out[:, top:top + step] = prob.squeeze(1) * valid
    return out
