"""Test-time modes: whole image, sliding window, and multi-scale + flip.

All return class probabilities (softmax) N x C x H x W, at the input resolution or at `out_size`:
- whole: one forward;
- slide: windows of `crop` every `stride`, the last one clamped to the edge, logits averaged where
  windows overlap (as mmsegmentation), then softmax; with `slide_style="semseg"` (the `semseg_*`
  presets) as hszhao/semseg's test.py instead: small images padded with the mean, every window also
  mirrored, probabilities averaged (`slide_probs_semseg`);
- multi-scale + flip: the image resized by each scale (and mirrored), probabilities averaged.

`out_size` is where scores are computed: the test pipeline resizes the image to the preset's base
scale but keeps the label at its original size, so the logits of every view are resized straight
to the label's size before the softmax (as mmsegmentation's `rescale=True`).

The model is anything called as `model(x)["out"]` with `num_classes` and `align_corners`
attributes: a `Segmentor`, or an ONNX Runtime wrapper.

Memory. The views run at the test scale (the preset's base scale times the TTA scale), so their
logits are bounded by the preset, whatever the image's size; only the probabilities at the
output size grow with it (an 8000 x 8000 image and 150 classes: 38 GB). `predict_labels`, which
is what class ids need, builds the full map only when it is small (`LABELS_BUDGET`); beyond that
it resizes the views' logits to the output band of rows by band of rows (the same numbers
`F.interpolate` gives: the band formula below is its own, checked bit for bit by the tests),
averages their softmax per band and keeps only the class ids. `probability_map_bytes` says what
`predict_proba` needs, which `Segmenter.predict_proba` checks against the free memory.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sceneparse.config.schema import SLIDE_STYLES, TestConfig
from sceneparse.models.layers import resize


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets covering [0, size): every `stride`, the last window clamped to end at the edge."""
    if size <= crop:
        return [0]
    count = (size - crop + stride - 1) // stride + 1
    return sorted({min(i * stride, size - crop) for i in range(count)})


def slide_logits(model: nn.Module, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int],
                 window_batch: int = 1) -> torch.Tensor:
    """Logits of overlapping windows, averaged.

    Memory is bounded by `window_batch` windows plus the output, whatever the image size; more
    windows per forward are faster on a GPU. All windows have the same size (the last ones are
    clamped to the edge), so they stack.
    """
    n, _, h, w = x.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    tops, lefts = window_starts(h, ch, stride[0]), window_starts(w, cw, stride[1])
    logits = x.new_zeros(n, model.num_classes, h, w)
    boxes = [(top, left) for top in tops for left in lefts]
    for first in range(0, len(boxes), max(1, window_batch)):
        group = boxes[first:first + max(1, window_batch)]
        windows = torch.cat([x[:, :, top:top + ch, left:left + cw] for top, left in group])
        out = model(windows)["out"]
        for i, (top, left) in enumerate(group):
            logits[:, :, top:top + ch, left:left + cw] += out[i * n:(i + 1) * n]
    # windows form a grid, so how often a pixel is covered is (rows covering it) x (columns covering it)
    cover_h, cover_w = x.new_zeros(h), x.new_zeros(w)
    for top in tops:
        cover_h[top:top + ch] += 1
    for left in lefts:
        cover_w[left:left + cw] += 1
    return logits / (cover_h[:, None] * cover_w[None, :])


def slide_probs_semseg(model: nn.Module, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int],
                       window_batch: int = 1) -> torch.Tensor:
    """Probabilities of overlapping windows, averaged, as hszhao/semseg's `scale_process` (tool/test.py).

    An image smaller than the window is padded, centred, with the mean pixel (zero once normalised)
    up to the window, not shrunk to it; every window runs with its mirror, the mirror's softmax flipped
    back and averaged with the window's (`net_process(flip=True)`); the probabilities, not the logits,
    are averaged where windows overlap; the padding is cut off again.
    """
    n, _, h, w = x.shape
    ch, cw = crop
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    top0, left0 = pad_h // 2, pad_w // 2
    padded = F.pad(x, (left0, pad_w - left0, top0, pad_h - top0))  # semseg's mean pixel is 0 after normalising
    ph, pw = padded.shape[-2:]
    tops, lefts = window_starts(ph, ch, stride[0]), window_starts(pw, cw, stride[1])
    probs = x.new_zeros(n, model.num_classes, ph, pw)
    boxes = [(top, left) for top in tops for left in lefts]
    for first in range(0, len(boxes), max(1, window_batch)):
        group = boxes[first:first + max(1, window_batch)]
        windows = torch.cat([padded[:, :, top:top + ch, left:left + cw] for top, left in group])
        out = F.softmax(model(torch.cat([windows, windows.flip(-1)]))["out"], dim=1)
        out = (out[:len(windows)] + out[len(windows):].flip(-1)) / 2
        for i, (top, left) in enumerate(group):
            probs[:, :, top:top + ch, left:left + cw] += out[i * n:(i + 1) * n]
    cover_h, cover_w = x.new_zeros(ph), x.new_zeros(pw)
    for top in tops:
        cover_h[top:top + ch] += 1
    for left in lefts:
        cover_w[left:left + cw] += 1
    probs = probs / (cover_h[:, None] * cover_w[None, :])
    return probs[:, :, top0:top0 + h, left0:left0 + w]


def logits_once(model: nn.Module, x: torch.Tensor, mode: str, crop: tuple[int, int],
                stride: tuple[int, int], window_batch: int = 1) -> torch.Tensor:
    if mode == "whole":
        return model(x)["out"]
    if mode == "slide":
        return slide_logits(model, x, crop, stride, window_batch)
    raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")


def _is_semseg(mode: str, slide_style: str) -> bool:
    """Whether the views are semseg's windows (probabilities, mirrored inside) rather than logits."""
    if slide_style not in SLIDE_STYLES:
        raise ValueError(f"slide style must be one of {SLIDE_STYLES}, got {slide_style!r}")
    return mode == "slide" and slide_style == "semseg"


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    x: torch.Tensor,
    mode: str = "whole",
    crop: Sequence[int] = (512, 512),
    stride: Sequence[int] = (341, 341),
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_size: Sequence[int] | None = None,
    window_batch: int = 1,
    slide_style: str = "mmseg",
) -> torch.Tensor:
    """Class probabilities N x C x H x W for a normalised batch, averaged over scales and flips.

    H x W is `out_size` when given, else the input's size. Views run one after another, so memory
    is that of the largest view plus the running sum. `slide_style` "semseg" (slide mode only) takes
    `slide_probs_semseg`'s probabilities, always mirrored, resized half-pixel as semseg's cv2
    INTER_LINEAR; `flip` then adds nothing.
    """
    semseg = _is_semseg(mode, slide_style)
    h, w = x.shape[-2:]
    target = (int(out_size[0]), int(out_size[1])) if out_size is not None else (h, w)
    crop_hw, stride_hw = (int(crop[0]), int(crop[1])), (int(stride[0]), int(stride[1]))
    views = [False, True] if flip and not semseg else [False]
    total = None
    for scale in scales:
        size = (int(h * scale + 0.5), int(w * scale + 0.5))
        scaled = resize(x, size, model.align_corners)
        if semseg:
            probs = resize(slide_probs_semseg(model, scaled, crop_hw, stride_hw, window_batch), target, False)
            total = probs if total is None else total.add_(probs)
            continue
        for mirrored in views:
            inp = scaled.flip(-1) if mirrored else scaled
            logits = logits_once(model, inp, mode, crop_hw, stride_hw, window_batch)
            if mirrored:
                logits = logits.flip(-1)
            probs = F.softmax(resize(logits, target, model.align_corners), dim=1)
            total = probs if total is None else total.add_(probs)
    if total is None:
        raise ValueError("predict_proba needs at least one scale")
    return total / (len(scales) * len(views))


# Output maps smaller than this (N x C x H x W float32 bytes) take the plain path of `predict_proba`.
LABELS_BUDGET = 1 << 30


def probability_map_bytes(num_images: int, num_classes: int, height: int, width: int) -> int:
    """Bytes of the float32 probabilities `predict_proba` returns; it holds about three such maps at its peak
    (the resized logits, their softmax and the running sum)."""
    return 4 * num_images * num_classes * height * width


def _source_rows(out_len: int, in_len: int, align_corners: bool, start: int, stop: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For output rows [start, stop): the two source rows and their weights, as PyTorch's bilinear
    kernel computes them (float32 scale, source position in double, then float32)."""
    dst = torch.arange(start, stop, dtype=torch.float64)
    if align_corners:
        scale = float(torch.tensor(in_len - 1, dtype=torch.float32) / (out_len - 1)) if out_len > 1 else 0.0
        src = (scale * dst).to(torch.float32)
    else:
        scale = float(torch.tensor(in_len, dtype=torch.float32) / out_len)
        src = (scale * (dst + 0.5) - 0.5).clamp_min(0).to(torch.float32)
    low = src.to(torch.long)
    weight_high = src - low
    high = torch.where(low < in_len - 1, low + 1, low)
    return low, high, 1 - weight_high, weight_high


def resize_band(x: torch.Tensor, size: tuple[int, int], align_corners: bool, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of `resize(x, size)`, computed from the source rows they need only."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x[:, :, start:stop]
    low, high, w_low, w_high = _source_rows(size[0], x.shape[-2], align_corners, start, stop)
    rows = torch.unique(torch.cat([low, high]))
    # along the width first (F.interpolate itself, the height left as it is), then the height as its kernel does
    wide = F.interpolate(x[:, :, rows.to(x.device)], size=(len(rows), size[1]), mode="bilinear",
                         align_corners=align_corners)
    a = wide.index_select(2, torch.searchsorted(rows, low).to(x.device))
    b = wide.index_select(2, torch.searchsorted(rows, high).to(x.device))
    w_low = w_low.to(x.device)[:, None]
    w_high = w_high.to(x.device)[:, None]
    # as the kernel: b * w_high + a * w_low, the second product fused into the addition (addcmul fuses too)
    return torch.addcmul(b * w_high, a, w_low)


@torch.no_grad()
def predict_labels(
    model: nn.Module,
    x: torch.Tensor,
    mode: str = "whole",
    crop: Sequence[int] = (512, 512),
    stride: Sequence[int] = (341, 341),
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_size: Sequence[int] | None = None,
    window_batch: int = 1,
    budget: int | None = None,
    slide_style: str = "mmseg",
) -> torch.Tensor:
    """Class ids N x H x W: `predict_proba(...).argmax(1)`, in bounded memory for large outputs.

    Up to `budget` bytes of probabilities the full map is made; beyond, the output is made in bands
    of rows, each holding about `budget` / 8 bytes, with a progress bar where the output is a terminal.
    `budget` None is `LABELS_BUDGET`.
    """
    budget = LABELS_BUDGET if budget is None else budget
    semseg = _is_semseg(mode, slide_style)
    h, w = x.shape[-2:]
    target = (int(out_size[0]), int(out_size[1])) if out_size is not None else (h, w)
    n, classes = x.shape[0], int(model.num_classes)
    if probability_map_bytes(n, classes, *target) <= budget:
        return predict_proba(model, x, mode, crop, stride, scales, flip, target, window_batch,
                             slide_style).argmax(dim=1)
    crop_hw, stride_hw = (int(crop[0]), int(crop[1])), (int(stride[0]), int(stride[1]))
    views = []  # logits (semseg: probabilities) of each view at its own (test-scale) size, mirrored back
    for scale in scales:
        scaled = resize(x, (int(h * scale + 0.5), int(w * scale + 0.5)), model.align_corners)
        if semseg:
            views.append(slide_probs_semseg(model, scaled, crop_hw, stride_hw, window_batch))
            continue
        for mirrored in ([False, True] if flip else [False]):
            logits = logits_once(model, scaled.flip(-1) if mirrored else scaled, mode, crop_hw, stride_hw, window_batch)
            views.append(logits.flip(-1) if mirrored else logits)
    if not views:
        raise ValueError("predict_labels needs at least one scale")
    labels = torch.empty(n, *target, dtype=torch.long, device=x.device)
    rows = max(1, budget // (8 * probability_map_bytes(n, classes, 1, target[1])))
    starts = range(0, target[0], rows)
    align = False if semseg else model.align_corners  # semseg resizes its probabilities with cv2 (half-pixel)
    for start in tqdm(starts, desc="labels", unit="band", disable=None, leave=False):
        stop = min(target[0], start + rows)
        if len(views) == 1:  # softmax keeps the order: the logits' argmax (unless two are within 6e-8)
            labels[:, start:stop] = resize_band(views[0], target, align, start, stop).argmax(dim=1)
            continue
        total = None
        for scores in views:
            probs = resize_band(scores, target, align, start, stop)
            probs = probs if semseg else F.softmax(probs, dim=1)
            total = probs if total is None else total.add_(probs)
        labels[:, start:stop] = total.argmax(dim=1)
    return labels


@dataclass(frozen=True)
class InferenceSettings:
    """How to turn an image into probabilities: the mode, its window, and the test-time augmentation.

    One object shared by `sceneparse test`, `sceneparse infer`, `Segmenter` and validation during
    training, so they cannot drift apart.
    """

    mode: str = "whole"  # "whole" or "slide"
    crop: tuple[int, int] = (512, 512)  # slide window (height, width)
    stride: tuple[int, int] = (341, 341)  # slide step (height, width)
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    window_batch: int = 1  # slide windows per forward
    slide_style: str = "mmseg"  # TestConfig.slide_style: "mmseg" or "semseg"

    @classmethod
    def from_config(cls, test: TestConfig, mode: str | None = None, tta: bool = False,
                    window_batch: int = 1) -> InferenceSettings:
        """The preset's test settings; `mode` overrides its mode, `tta` turns on its scales and flip."""
        mode = mode or test.mode
        if mode not in ("whole", "slide"):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")
        return cls(
            mode=mode,
            crop=(int(test.crop_size[0]), int(test.crop_size[1])),
            stride=(int(test.stride[0]), int(test.stride[1])),
            scales=tuple(float(s) for s in test.scales) if tta else (1.0,),
            flip=bool(test.flip) if tta else False,
            window_batch=window_batch,
            slide_style=test.slide_style,
        )

    def describe(self) -> str:
        """One line for logs, e.g. "slide 769x769 stride 513x513, scales 0.5-1.75 + flip"."""
        text = self.mode
        if self.mode == "slide":
            text += f" {self.crop[0]}x{self.crop[1]} stride {self.stride[0]}x{self.stride[1]}"
            if self.slide_style == "semseg":
                text += " (semseg: mean-padded, mirrored, probabilities averaged)"
        if self.scales != (1.0,):
            text += ", scales " + ",".join(f"{s:g}" for s in self.scales)
        if self.flip:
            text += " + flip"
        return text

    def predict_proba(self, model: nn.Module, x: torch.Tensor, out_size: Sequence[int] | None = None) -> torch.Tensor:
        """`predict_proba` with these settings."""
        return predict_proba(model, x, self.mode, self.crop, self.stride, self.scales, self.flip, out_size,
                             self.window_batch, self.slide_style)

    def predict_labels(self, model: nn.Module, x: torch.Tensor, out_size: Sequence[int] | None = None,
                       budget: int | None = None) -> torch.Tensor:
        """`predict_labels` (class ids in bounded memory) with these settings."""
        return predict_labels(model, x, self.mode, self.crop, self.stride, self.scales, self.flip, out_size,
                              self.window_batch, budget, self.slide_style)
