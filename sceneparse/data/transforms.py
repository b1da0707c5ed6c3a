"""The image/label operations of the published training and test pipelines, with OpenCV's pixels.

The source toolboxes (mmsegmentation, sssegmentation, hszhao/semseg) resize, colour-convert and
distort images with OpenCV; so does this module, so that a preset sees the pixels its published
model was trained and tested on:

- images: `cv2.resize(..., INTER_LINEAR)` on uint8 at mmcv's rescale size (`rescale_size`);
- labels: OpenCV's nearest neighbour, which takes source index floor(i * in / out) (not the
  pixel centre); `nearest_indices` asks OpenCV itself for those indices, so a label crop can be
  taken without resizing the whole label map;
- photometric distortion: each step is mmseg's `convert` (float32 multiply-add, clip, truncate to
  uint8) of a uint8 image, i.e. a function of the 256 input values: it runs as one 256-entry
  lookup table per step (`cv2.LUT`), equal to the float arithmetic pixel for pixel; saturation and
  hue go through OpenCV's uint8 HSV (hue in 0..179, shifted modulo 180), one round trip each, as
  the sources do.

Every random step is split into "draw the parameters" (from the `numpy.random.Generator` the
dataset derives from (seed, epoch, index)) and "apply the parameters" (deterministic), so a test
can apply exactly the parameters a source toolbox drew. How the steps are put together per source
is in `sceneparse.data.pipelines`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

Size = tuple[int, int]  # (height, width)

# OpenCV's own thread pool does not survive fork(): a DataLoader worker forked after the parent ran a
# threaded cv2.resize can deadlock in its first resize. Loader workers are the parallelism, so OpenCV
# runs single-threaded in every process that uses these transforms.
cv2.setNumThreads(1)


# ---------------------------------------------------------------- geometry


def rescale_size(hw: Size, scale: tuple[int, int]) -> Size:
    """mmcv.rescale_size: the largest size that fits `hw` into `scale` = (long, short) edges,
    aspect kept, each side rounded half up (`int(x * factor + 0.5)`)."""
    h, w = hw
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def resize_image(image: np.ndarray, hw: Size) -> np.ndarray:
    """Bilinear resize as the sources do it: `cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)`."""
    if image.shape[:2] == tuple(hw):
        return image
    return cv2.resize(image, (int(hw[1]), int(hw[0])), interpolation=cv2.INTER_LINEAR)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """The source index of each output pixel of OpenCV's INTER_NEAREST resize along one axis.

    OpenCV picks floor(i * in / out) (its own double arithmetic); resizing an index ramp with
    OpenCV returns exactly those indices, so no rounding rule is re-implemented here.
    """
    ramp = np.arange(in_size, dtype=np.int32)[None, :]
    return cv2.resize(ramp, (int(out_size), 1), interpolation=cv2.INTER_NEAREST)[0].astype(np.intp)


def resize_label(label: np.ndarray, hw: Size) -> np.ndarray:
    """OpenCV's nearest-neighbour resize of a label map, for any integer dtype: every output value
    is an input value (no class is invented by interpolation)."""
    if label.shape[:2] == tuple(hw):
        return label
    if label.dtype == np.uint8:
        return cv2.resize(label, (int(hw[1]), int(hw[0])), interpolation=cv2.INTER_NEAREST)
    return take_grid(label, nearest_indices(label.shape[0], hw[0]), nearest_indices(label.shape[1], hw[1]))


def take_grid(array: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """array[rows][:, cols] for index vectors (a nearest-neighbour resize and crop in one): two
    `np.take` passes, 5x faster than 2-D fancy indexing."""
    return np.take(np.take(array, rows, axis=0), cols, axis=1)


def draw_rescale_ratio(ratio_range: tuple[float, float], rng: np.random.Generator) -> float:
    """mmcv RandomResize / sssegmentation Resize: ratio = low + u * (high - low), u uniform in [0, 1)."""
    low, high = ratio_range
    return float(rng.random() * (high - low) + low)


def ratio_size(hw: Size, scale: tuple[int, int], ratio: float) -> Size:
    """The resized size for a drawn ratio: the base scale times the ratio, truncated to integers,
    then `rescale_size` (mmcv RandomResize with keep_ratio; sssegmentation's Resize is the same)."""
    return rescale_size(hw, (int(scale[0] * ratio), int(scale[1] * ratio)))


# ---------------------------------------------------------------- crop


@dataclass(frozen=True)
class Window:
    """A crop window in the (resized) image: top-left corner and size."""

    top: int
    left: int
    height: int
    width: int

    def of(self, array: np.ndarray) -> np.ndarray:
        return array[self.top : self.top + self.height, self.left : self.left + self.width]


def draw_window(hw: Size, crop: Size, rng: np.random.Generator) -> Window:
    """A uniformly placed window of the crop size, smaller where the image is smaller
    (offsets drawn height first, as both sources do)."""
    height, width = min(crop[0], hw[0]), min(crop[1], hw[1])
    top = int(rng.integers(0, hw[0] - height + 1))
    left = int(rng.integers(0, hw[1] - width + 1))
    return Window(top, left, height, width)


def passes_cat_max_ratio(label: np.ndarray, cat_max_ratio: float, ignore_index: int) -> bool:
    """The sources' test of a crop: at least two labelled classes, none covering `cat_max_ratio`
    or more of the labelled pixels (ignored pixels not counted)."""
    if label.dtype == np.uint8:  # OpenCV's histogram: exact counts, 6x faster than np.bincount
        counts = cv2.calcHist([label], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    else:
        counts = np.bincount(label.ravel())
    if 0 <= ignore_index < len(counts):
        counts[ignore_index] = 0
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def choose_window(
    window_label: Callable[[Window], np.ndarray], hw: Size, crop: Size, cat_max_ratio: float,
    ignore_index: int, rng: np.random.Generator, checked_tries: int, extra_unchecked_draw: bool,
) -> Window:
    """The crop with cat_max_ratio, as the sources try it.

    Up to `checked_tries` windows are drawn and tested; the first that passes is kept. When none
    passes, mmsegmentation (`extra_unchecked_draw=True`) keeps one more window drawn after the last
    test and never tested; sssegmentation keeps the last tested one. With cat_max_ratio >= 1
    mmsegmentation draws once; sssegmentation still tests (its configs all use 0.75).
    """
    window = draw_window(hw, crop, rng)
    if extra_unchecked_draw and cat_max_ratio >= 1.0:
        return window
    for attempt in range(checked_tries):
        if passes_cat_max_ratio(window_label(window), cat_max_ratio, ignore_index):
            return window
        if attempt + 1 < checked_tries or extra_unchecked_draw:
            window = draw_window(hw, crop, rng)
    return window


# ---------------------------------------------------------------- colour


@dataclass(frozen=True)
class Photometric:
    """The drawn parameters of a PhotoMetricDistortion; None = that step is skipped.

    `contrast_first` is mmseg's `mode == 1`: contrast right after brightness, else last.
    """

    brightness: float | None = None  # beta added to every channel
    contrast_first: bool = True
    contrast: float | None = None  # alpha multiplying every channel
    saturation: float | None = None  # alpha multiplying HSV saturation
    hue: int | None = None  # added to OpenCV's hue (0..179), modulo 180


def draw_photometric(
    rng: np.random.Generator, brightness_delta: float = 32, contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18,
) -> Photometric:
    """mmseg's draws, in its order: each step with probability 1/2; brightness uniform in
    [-delta, delta), contrast and saturation uniform in their ranges, hue an integer in
    [-hue_delta, hue_delta) (numpy's randint excludes the high end)."""
    brightness = float(rng.uniform(-brightness_delta, brightness_delta)) if rng.integers(2) else None
    contrast_first = bool(rng.integers(2))
    contrast = None
    if contrast_first and rng.integers(2):
        contrast = float(rng.uniform(*contrast_range))
    saturation = float(rng.uniform(*saturation_range)) if rng.integers(2) else None
    hue = int(rng.integers(-hue_delta, hue_delta)) if rng.integers(2) else None
    if not contrast_first and rng.integers(2):
        contrast = float(rng.uniform(*contrast_range))
    return Photometric(brightness, contrast_first, contrast, saturation, hue)


_IDENTITY = np.arange(256, dtype=np.uint8)


def convert_table(table: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg's `convert` (x.astype(float32) * alpha + beta, clipped to 0..255, cast to uint8)
    applied to a 256-entry lookup table: the table of the step composed after `table`."""
    return np.clip(table.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def _apply_table(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    return cv2.LUT(image, table)


def _hsv_step(image: np.ndarray, channel: int, table: np.ndarray, swap_red_blue: bool) -> np.ndarray:
    """RGB -> HSV, one channel through `table`, back to RGB: one OpenCV uint8 round trip.

    `swap_red_blue` converts as if the image were BGR (sssegmentation calls RGB2HSV on the BGR
    images cv2.imread gives it: its hue and saturation see red and blue swapped).
    """
    to_hsv, to_rgb = (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR) if swap_red_blue else (cv2.COLOR_RGB2HSV,
                                                                                     cv2.COLOR_HSV2RGB)
    hsv = cv2.cvtColor(image, to_hsv)
    tables = [_IDENTITY, _IDENTITY, _IDENTITY]
    tables[channel] = table
    hsv = cv2.LUT(hsv, np.stack(tables, axis=-1)[:, None, :])
    return cv2.cvtColor(hsv, to_rgb)


def apply_photometric(image: np.ndarray, p: Photometric, swap_red_blue: bool = False) -> np.ndarray:
    """Apply drawn parameters to an HxWx3 uint8 RGB image, pixel for pixel as mmseg's
    PhotoMetricDistortion (brightness, [contrast], saturation, hue, [contrast]).

    Brightness and an early contrast compose into one lookup table (two uint8->uint8 maps in a row).
    """
    table, changed = _IDENTITY, False
    if p.brightness is not None:
        table, changed = convert_table(table, beta=p.brightness), True
    if p.contrast_first and p.contrast is not None:
        table, changed = convert_table(table, alpha=p.contrast), True
    if changed:
        image = _apply_table(image, table)
    if p.saturation is not None:
        image = _hsv_step(image, 1, convert_table(_IDENTITY, alpha=p.saturation), swap_red_blue)
    if p.hue is not None:
        hue_table = ((np.arange(256) + p.hue) % 180).astype(np.uint8)
        image = _hsv_step(image, 0, hue_table, swap_red_blue)
    if not p.contrast_first and p.contrast is not None:
        image = _apply_table(image, convert_table(_IDENTITY, alpha=p.contrast))
    return image


# ---------------------------------------------------------------- to tensors


def normalize(image: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32, (x - mean) / std per channel in float32 (as mmseg's
    SegDataPreProcessor). The layout changes on the uint8 pixels before the conversion to float."""
    planes = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()  # a fresh copy
    planes.sub_(torch.tensor(mean, dtype=torch.float32).view(3, 1, 1))
    return planes.div_(torch.tensor(std, dtype=torch.float32).view(3, 1, 1))


def label_tensor(label: np.ndarray, keep_uint8: bool = False) -> torch.Tensor:
    """The label as an int64 tensor, or (`keep_uint8`, for uint8 labels) as uint8: an eighth of the
    bytes through the loader; the trainer widens it on the device."""
    if keep_uint8 and label.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(label))
    return torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))


def pad_offsets(hw: Size, target: Size, centred: bool) -> tuple[int, int]:
    """(top, left) of an image of size `hw` inside the padded `target`: 0, 0 for mmsegmentation
    (pads bottom and right), half the padding rounded down for sssegmentation (centred)."""
    if not centred:
        return 0, 0
    return max(target[0] - hw[0], 0) // 2, max(target[1] - hw[1], 0) // 2


def pad_to(
    image: torch.Tensor, label: torch.Tensor, hw: Size, ignore_index: int, centred: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a normalised 3xHxW image with 0 and its label with the ignore index up to `hw`."""
    height, width = image.shape[1:]
    if height >= hw[0] and width >= hw[1]:
        return image, label
    top, left = pad_offsets((height, width), hw, centred)
    padded_image = image.new_zeros((3, max(hw[0], height), max(hw[1], width)))
    padded_image[:, top : top + height, left : left + width] = image
    padded_label = label.new_full(padded_image.shape[1:], ignore_index)
    padded_label[top : top + height, left : left + width] = label
    return padded_image, padded_label
