"""Test-time modes: whole image, sliding window, and multi-scale + flip.

All return class probabilities (softmax) at the input resolution, N x C x H x W:
- whole: one forward;
- slide: windows of `crop` every `stride`, the last one clamped to the edge, logits averaged where
  windows overlap (as mmsegmentation), then softmax;
- multi-scale + flip: the image resized by each scale (and mirrored), probabilities averaged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sceneparse.models.layers import resize
from sceneparse.models.segmentor import Segmentor


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets covering [0, size): every `stride`, the last window clamped to end at the edge."""
    if size <= crop:
        return [0]
    count = (size - crop + stride - 1) // stride + 1
    return sorted({min(i * stride, size - crop) for i in range(count)})


def slide_logits(model: Segmentor, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Logits of overlapping windows, averaged; memory stays that of one window plus the output."""
    n, _, h, w = x.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    logits = x.new_zeros(n, model.num_classes, h, w)
    count = x.new_zeros(1, 1, h, w)
    for top in window_starts(h, ch, stride[0]):
        for left in window_starts(w, cw, stride[1]):
            window = x[:, :, top:top + ch, left:left + cw]
            logits[:, :, top:top + ch, left:left + cw] += model(window)["out"]
            count[:, :, top:top + ch, left:left + cw] += 1
    return logits / count


def logits_once(model: Segmentor, x: torch.Tensor, mode: str, crop: tuple[int, int],
                stride: tuple[int, int]) -> torch.Tensor:
    if mode == "whole":
        return model(x)["out"]
    if mode == "slide":
        return slide_logits(model, x, crop, stride)
    raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")


@torch.no_grad()
def predict_proba(
    model: Segmentor,
    x: torch.Tensor,
    mode: str = "whole",
    crop: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
    scales: tuple[float, ...] | list[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Class probabilities N x C x H x W for a normalised batch, averaged over scales and flips."""
    h, w = x.shape[-2:]
    total = None
    for scale in scales:
        size = (int(h * scale + 0.5), int(w * scale + 0.5))
        scaled = resize(x, size, model.align_corners)
        views = [False, True] if flip else [False]
        for mirrored in views:
            inp = scaled.flip(-1) if mirrored else scaled
            logits = logits_once(model, inp, mode, crop, stride)
            if mirrored:
                logits = logits.flip(-1)
            probs = F.softmax(resize(logits, (h, w), model.align_corners), dim=1)
            total = probs if total is None else total + probs
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))
