"""Joint image/label transforms of the published training and test recipes (mmsegmentation's).

Train: random resize (ratio 0.5-2.0 of the base scale, aspect kept) -> random crop (cat_max_ratio,
up to 10 tries) -> horizontal flip -> photometric distortion -> normalise -> pad to the crop. The
first two run fused (`random_resized_crop`): only the pixels under the crop are resampled.
Test: resize to the base scale, aspect kept; the label stays at its original size, because
scores are computed at the original resolution (resize the logits to the label, as mmseg does).

Rules that keep labels honest: a label is only ever resized with nearest neighbour (no value is
invented by interpolation), the ignore index survives every step, and padding uses it.

Randomness comes only from the `numpy.random.Generator` passed in, which the dataset derives from
(seed, epoch, sample index): the same sample with the same seed is the same, whatever worker
draws it. Everything is vectorised (Pillow for image resizing and colour space, numpy indexing).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from sceneparse.config.schema import DataConfig

Size = tuple[int, int]  # (height, width)


# ---------------------------------------------------------------- geometry


def rescale_size(hw: Size, scale: tuple[int, int]) -> Size:
    """The size that fits `hw` into `scale` = (long, short) edges, aspect kept (mmcv.rescale_size)."""
    h, w = hw
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def resize_image(image: np.ndarray, hw: Size) -> np.ndarray:
    """Bilinear resize of an HxWx3 uint8 image."""
    if image.shape[:2] == tuple(hw):
        return image
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.Resampling.BILINEAR))


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output pixel of a nearest-neighbour resize (pixel centres)."""
    return np.minimum(((np.arange(out_size) + 0.5) * (in_size / out_size)).astype(np.int64), in_size - 1)


def resize_label(label: np.ndarray, hw: Size) -> np.ndarray:
    """Nearest-neighbour resize by index arithmetic: every output value is an input value."""
    if label.shape[:2] == tuple(hw):
        return label
    rows, cols = _nearest_indices(label.shape[0], hw[0]), _nearest_indices(label.shape[1], hw[1])
    return label[rows[:, None], cols[None, :]]


def random_resize(
    image: np.ndarray, label: np.ndarray, scale: tuple[int, int], ratio_range: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Resize to the base scale times a ratio drawn from `ratio_range`, aspect kept (mmseg RandomResize)."""
    ratio = rng.uniform(ratio_range[0], ratio_range[1])
    target = (int(scale[0] * ratio), int(scale[1] * ratio))
    hw = rescale_size(image.shape[:2], target)
    return resize_image(image, hw), resize_label(label, hw)


Window = tuple[int, int, int, int]  # (top, left, height, width)


def _pick_window(
    window_label: Callable[[Window], np.ndarray], hw: Size, crop: Size, cat_max_ratio: float, ignore_index: int,
    rng: np.random.Generator, tries: int,
) -> Window:
    """mmseg RandomCrop's choice: up to `tries` random windows until no class covers `cat_max_ratio`
    of the labelled pixels; if none does, the try with the smallest dominant-class share."""
    h, w = hw
    ch, cw = min(crop[0], h), min(crop[1], w)
    best, best_share = None, 2.0
    for _ in range(tries if cat_max_ratio < 1.0 else 1):
        window = (int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)
        if cat_max_ratio >= 1.0:
            return window
        counts = np.bincount(window_label(window).ravel().astype(np.int64))
        if ignore_index < len(counts):
            counts[ignore_index] = 0
        counts = counts[counts > 0]
        share = counts.max() / counts.sum() if len(counts) > 1 else 1.0
        if share < best_share:
            best, best_share = window, share
        if share < cat_max_ratio:
            break
    return best


def random_crop(
    image: np.ndarray, label: np.ndarray, crop: Size, cat_max_ratio: float, ignore_index: int,
    rng: np.random.Generator, tries: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """A random crop (smaller where the image is smaller) in which no class covers more than
    `cat_max_ratio` of the labelled pixels, tried up to `tries` times (mmseg RandomCrop).

    When no try succeeds, the try with the smallest dominant-class share is kept.
    """
    def window_label(window: Window) -> np.ndarray:
        y, x, ch, cw = window
        return label[y : y + ch, x : x + cw]

    y, x, ch, cw = _pick_window(window_label, label.shape, crop, cat_max_ratio, ignore_index, rng, tries)
    return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]


def random_resized_crop(
    image: np.ndarray, label: np.ndarray, scale: tuple[int, int], ratio_range: tuple[float, float], crop: Size,
    cat_max_ratio: float, ignore_index: int, rng: np.random.Generator, tries: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """`random_resize` then `random_crop` with the same draws and the same crop, without resizing
    the pixels the crop throws away.

    A Cityscapes image grows up to 4096x2048 before a 1024x512 crop; here the crop is chosen on the
    label's nearest-neighbour index maps (the resized label is never built: the label crop is
    identical), and only the source box under the crop is resampled with Pillow's `box` (same
    bilinear filter; Pillow's fixed-point weights differ by at most 2 grey levels from a full resize).
    """
    ratio = rng.uniform(ratio_range[0], ratio_range[1])
    hw = rescale_size(image.shape[:2], (int(scale[0] * ratio), int(scale[1] * ratio)))
    rows, cols = _nearest_indices(label.shape[0], hw[0]), _nearest_indices(label.shape[1], hw[1])

    def window_label(window: Window) -> np.ndarray:
        y, x, ch, cw = window
        return label[rows[y : y + ch, None], cols[None, x : x + cw]]

    window = _pick_window(window_label, hw, crop, cat_max_ratio, ignore_index, rng, tries)
    y, x, ch, cw = window
    if image.shape[:2] == tuple(hw):
        return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]
    sy, sx = image.shape[0] / hw[0], image.shape[1] / hw[1]
    box = (x * sx, y * sy, (x + cw) * sx, (y + ch) * sy)
    pixels = Image.fromarray(image).resize((cw, ch), Image.Resampling.BILINEAR, box=box)
    return np.asarray(pixels), window_label(window)


def random_flip(
    image: np.ndarray, label: np.ndarray, prob: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < prob:
        return image[:, ::-1], label[:, ::-1]
    return image, label


# ---------------------------------------------------------------- colour


def _affine(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """values * alpha + beta, clipped to 0..255 and back to uint8 (as mmseg's `convert`)."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(
    image: np.ndarray, rng: np.random.Generator, brightness_delta: float = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5), saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg's PhotoMetricDistortion: each step with probability 0.5; contrast goes either second or
    last (chosen at random); saturation and hue are changed in HSV space.

    `hue_delta` is in OpenCV's hue unit (2 degrees); Pillow's HSV hue runs 0..255 over 360 degrees.
    """
    if rng.integers(2):
        image = _affine(image, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        image = _affine(image, alpha=rng.uniform(*contrast_range))
    change_saturation = bool(rng.integers(2))
    saturation = rng.uniform(*saturation_range) if change_saturation else 1.0
    change_hue = bool(rng.integers(2))
    hue_shift = int(rng.integers(-hue_delta, hue_delta)) if change_hue else 0
    if change_saturation or change_hue:
        hsv = np.array(Image.fromarray(np.ascontiguousarray(image)).convert("HSV"))
        if change_saturation:
            hsv[..., 1] = _affine(hsv[..., 1], alpha=saturation)
        if change_hue:
            shift = round(hue_shift * 256 / 180)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 256).astype(np.uint8)
        image = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
    if not contrast_first and rng.integers(2):
        image = _affine(image, alpha=rng.uniform(*contrast_range))
    return image


# ---------------------------------------------------------------- to tensors


def normalize(image: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32, (x - mean) / std per channel.

    The layout changes on the uint8 pixels (a quarter of the bytes) before the conversion to float,
    and the arithmetic runs on contiguous channel planes: 10x faster than doing it in HWC order.
    """
    planes = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()  # a fresh copy
    planes.sub_(torch.tensor(mean, dtype=torch.float32).view(3, 1, 1))
    return planes.div_(torch.tensor(std, dtype=torch.float32).view(3, 1, 1))


def label_tensor(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))


def pad_to(image: torch.Tensor, label: torch.Tensor, hw: Size, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom/right to `hw`: the (normalised) image with 0, the label with the ignore index."""
    pad_h, pad_w = hw[0] - image.shape[1], hw[1] - image.shape[2]
    if pad_h <= 0 and pad_w <= 0:
        return image, label
    padded_image = image.new_zeros((3, max(hw[0], image.shape[1]), max(hw[1], image.shape[2])))
    padded_image[:, : image.shape[1], : image.shape[2]] = image
    padded_label = label.new_full(padded_image.shape[1:], ignore_index)
    padded_label[: label.shape[0], : label.shape[1]] = label
    return padded_image, padded_label


# ---------------------------------------------------------------- pipelines


class TrainTransform:
    """The training pipeline of a DataConfig. Call with the decoded image, the encoded label and a
    Generator; returns (image 3xHxW float32, label HxW int64) of exactly the crop size."""

    def __init__(self, cfg: DataConfig, ignore_index: int | None = None) -> None:
        self.scale = (int(cfg.scale[0]), int(cfg.scale[1]))
        self.ratio_range = (float(cfg.ratio_range[0]), float(cfg.ratio_range[1]))
        self.crop = (int(cfg.crop_size[0]), int(cfg.crop_size[1]))
        self.cat_max_ratio = float(cfg.cat_max_ratio)
        self.flip_prob = float(cfg.flip_prob)
        self.photometric = bool(cfg.photometric)
        self.mean, self.std = list(cfg.mean), list(cfg.std)
        self.ignore_index = cfg.ignore_index if ignore_index is None else ignore_index

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = random_resized_crop(
            image, label, self.scale, self.ratio_range, self.crop, self.cat_max_ratio, self.ignore_index, rng
        )
        image, label = random_flip(image, label, self.flip_prob, rng)
        if self.photometric:
            image = photometric_distortion(image, rng)
        return pad_to(normalize(image, self.mean, self.std), label_tensor(label), self.crop, self.ignore_index)


class TestTransform:
    """The test pipeline: resize the image to the base scale (aspect kept) and normalise; the label
    is returned at its original size. `rng` is accepted and unused, so both pipelines are called alike."""

    def __init__(self, cfg: DataConfig) -> None:
        self.scale = (int(cfg.scale[0]), int(cfg.scale[1]))
        self.mean, self.std = list(cfg.mean), list(cfg.std)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = resize_image(image, rescale_size(image.shape[:2], self.scale))
        return normalize(image, self.mean, self.std), label_tensor(label)
