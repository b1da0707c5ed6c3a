"""The training and test pipelines of each source toolbox, chosen by `data.pipeline`.

Where the sources differ, the preset's source wins; the differences are the rows of one table:

| definition                          | "mmseg" (mmsegmentation 0.x/1.x)     | "ssseg" (sssegmentation)             |
|-------------------------------------|--------------------------------------|--------------------------------------|
| random rescale                      | ratio in [lo, hi) x base scale, mmcv rounding, cv2 bilinear / nearest (same)    |
| crop tries with cat_max_ratio       | 10 tests; none passes: an 11th draw, untested | 10 tests; none passes: the 10th |
| crop padding                        | bottom / right                       | centred                              |
| HSV conversion of the distortion    | on the image's channels              | RGB2HSV on BGR (red/blue swapped)    |
| flip, distortion ranges and order   | the same                             | the same                             |
| normalisation, pad values           | (x - mean) / std on the device; image 0, label ignore (the same)            |

"semseg" (hszhao/semseg) is a different pipeline (`SemsegTrainTransform`): float32 pixels, a
random scale relative to the image, rotation, Gaussian blur, flip, a crop padded with the mean.
"chainercv" (ChainerCV's examples/pspnet/train_multi.py) is another (`ChainerCVTrainTransform`):
float32 pixels, a random scale, crop, rotation, resize up to the crop, flip, minus the mean.

Random steps draw their parameters from the per-sample Generator first, then apply them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from sceneparse.config.schema import DataConfig
from sceneparse.data import transforms as T
from sceneparse.errors import ConfigError

PIPELINES = ("mmseg", "ssseg", "semseg", "chainercv")


@dataclass(frozen=True)
class Definition:
    """How one source does the steps where the mmseg-style sources differ (the table above)."""

    source: str
    checked_crop_tries: int
    extra_unchecked_crop: bool
    pad_centred: bool
    hsv_swap_red_blue: bool


DEFINITIONS = {
    "mmseg": Definition("mmsegmentation: mmseg/datasets/transforms/transforms.py (RandomCrop, "
                        "PhotoMetricDistortion), mmcv RandomResize/Resize/RandomFlip, SegDataPreProcessor",
                        checked_crop_tries=10, extra_unchecked_crop=True, pad_centred=False,
                        hsv_swap_red_blue=False),
    "ssseg": Definition("sssegmentation: ssseg/modules/datasets/pipelines/transforms.py (Resize, RandomCrop, "
                        "RandomFlip, PhotoMetricDistortion, Normalize, Padding)",
                        checked_crop_tries=10, extra_unchecked_crop=False, pad_centred=True,
                        hsv_swap_red_blue=True),
}


@dataclass(frozen=True)
class TrainDraw:
    """Everything a training sample's randomness decides (mmseg / ssseg pipelines)."""

    ratio: float
    window: T.Window
    flip: bool
    photometric: T.Photometric | None
    # the label under `window`, when the draw already cut it (testing cat_max_ratio): not cut twice
    label_crop: np.ndarray | None = field(default=None, compare=False, repr=False)


class TrainTransform:
    """The mmseg / ssseg training pipeline of a DataConfig: random rescale -> crop with cat_max_ratio
    -> horizontal flip -> photometric distortion -> pad to the crop size (-> normalise, on the device).

    Call with the decoded RGB image, the encoded label and a Generator; returns the uint8 crop padded
    to exactly the crop size, its label and the box of real pixels (see `finish`). The crop window is
    chosen on the label's nearest-neighbour index maps (the resized label is never built); the image
    is resized whole with OpenCV, then cropped, as the sources do (so its pixels are theirs).
    """

    def __init__(self, cfg: DataConfig, ignore_index: int | None = None) -> None:
        if cfg.pipeline not in DEFINITIONS:
            raise ConfigError(f"data.pipeline = {cfg.pipeline!r} has no mmseg-style definition; "
                              f"use one of {', '.join(PIPELINES)}")
        self.definition = DEFINITIONS[cfg.pipeline]
        self.scale = (int(cfg.scale[0]), int(cfg.scale[1]))
        self.ratio_range = (float(cfg.ratio_range[0]), float(cfg.ratio_range[1]))
        self.crop = (int(cfg.crop_size[0]), int(cfg.crop_size[1]))
        self.cat_max_ratio = float(cfg.cat_max_ratio)
        self.flip_prob = float(cfg.flip_prob)
        self.photometric = bool(cfg.photometric)
        self.mean, self.std = list(cfg.mean), list(cfg.std)
        self.ignore_index = cfg.ignore_index if ignore_index is None else ignore_index

    def draw(self, label: np.ndarray, rng: np.random.Generator) -> TrainDraw:
        """The random parameters of one sample (the label decides which crops pass cat_max_ratio)."""
        d = self.definition
        ratio = T.draw_rescale_ratio(self.ratio_range, rng)
        hw = T.ratio_size(label.shape[:2], self.scale, ratio)
        rows, cols = T.nearest_indices(label.shape[0], hw[0]), T.nearest_indices(label.shape[1], hw[1])

        last: dict[T.Window, np.ndarray] = {}

        def window_label(window: T.Window) -> np.ndarray:
            last.clear()
            last[window] = T.take_grid(label, rows[window.top : window.top + window.height],
                                       cols[window.left : window.left + window.width])
            return last[window]

        window = T.choose_window(window_label, hw, self.crop, self.cat_max_ratio, self.ignore_index, rng,
                                 d.checked_crop_tries, d.extra_unchecked_crop)
        flip = bool(rng.random() < self.flip_prob)
        photometric = T.draw_photometric(rng) if self.photometric else None
        return TrainDraw(ratio, window, flip, photometric, label_crop=last.get(window))

    def apply(self, image: np.ndarray, label: np.ndarray, p: TrainDraw) -> tuple[np.ndarray, np.ndarray]:
        """The drawn parameters applied: uint8 image crop and label crop, before normalisation."""
        hw = T.ratio_size(label.shape[:2], self.scale, p.ratio)
        image = p.window.of(T.resize_image(image, hw))
        if p.label_crop is not None:
            label = p.label_crop
        else:
            rows = T.nearest_indices(label.shape[0], hw[0])[p.window.top : p.window.top + p.window.height]
            cols = T.nearest_indices(label.shape[1], hw[1])[p.window.left : p.window.left + p.window.width]
            label = T.take_grid(label, rows, cols)
        if p.flip:
            image, label = cv2.flip(image, 1), label[:, ::-1]
        if p.photometric is not None:
            image = T.apply_photometric(np.ascontiguousarray(image), p.photometric,
                                        self.definition.hsv_swap_red_blue)
        return image, label

    def finish(self, image: np.ndarray, label: np.ndarray) -> dict[str, torch.Tensor]:
        """Pad to the crop size: {"image": HxWx3 uint8, "label": HxW (uint8 for uint8 labels, else
        int64; padding = the ignore index), "valid": [top, left, height, width] of the real pixels}.
        Normalisation, and zeroing the padding after it (the value the sources pad with), happen on
        the device (`sceneparse.data.device_batch.model_input`), as mmseg's SegDataPreProcessor does."""
        height, width = label.shape
        top, left = T.pad_offsets((height, width), self.crop, self.definition.pad_centred)
        full = (max(self.crop[0], height), max(self.crop[1], width))
        if full != (height, width):
            padded_image = np.zeros((*full, 3), np.uint8)
            padded_image[top : top + height, left : left + width] = image
            padded_label = np.full(full, self.ignore_index, label.dtype)
            padded_label[top : top + height, left : left + width] = label
            image, label = padded_image, padded_label
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "label": T.label_tensor(label, keep_uint8=True),
                "valid": torch.tensor([top, left, height, width], dtype=torch.int64)}

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        return self.finish(*self.apply(image, label, self.draw(label, rng)))


@dataclass(frozen=True)
class SemsegDraw:
    """Everything a training sample's randomness decides in hszhao/semseg's pipeline."""

    scale: float
    angle: float | None  # degrees, None = no rotation
    blur: bool
    flip: bool
    top: int  # crop offset in the (padded) image
    left: int


class _FloatPipeline:
    """What semseg's and ChainerCV's pipelines share: float32 pixels throughout, scaled relative to the
    image by `data.ratio_range`, cropped to `data.crop_size`, normalised at the end on the CPU."""

    def __init__(self, cfg: DataConfig, ignore_index: int | None = None) -> None:
        self.ratio_range = (float(cfg.ratio_range[0]), float(cfg.ratio_range[1]))
        self.crop = (int(cfg.crop_size[0]), int(cfg.crop_size[1]))
        self.flip_prob = float(cfg.flip_prob)
        self.mean, self.std = list(cfg.mean), list(cfg.std)
        self.ignore_index = cfg.ignore_index if ignore_index is None else ignore_index

    def to_tensors(self, image: np.ndarray, label: np.ndarray) -> dict[str, torch.Tensor]:
        """ToTensor + Normalize: (x - mean) / std per channel on the float crop."""
        planes = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        planes = planes.sub(torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1))
        planes.div_(torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1))
        return {"image": planes, "label": T.label_tensor(label)}


class SemsegTrainTransform(_FloatPipeline):
    """hszhao/semseg's training pipeline (util/transform.py, tool/train.py), on float32 pixels as its
    dataset hands them over: RandScale([lo, hi]) relative to the image (cv2 with fx = fy) ->
    RandRotate([-10, 10], p 0.5; image bilinear padded with the mean, label nearest padded with the
    ignore index) -> RandomGaussianBlur (5x5, sigma from the size, p 0.5) -> horizontal flip (p 0.5)
    -> random crop, padded centred with the mean / ignore first if smaller -> normalise.

    data.scale, cat_max_ratio and photometric play no part here (semseg has no such steps).
    """

    rotate = (-10.0, 10.0)
    blur_size = 5

    def _scaled_size(self, hw: T.Size, scale: float) -> T.Size:
        """OpenCV's output size for fx = fy = scale: round(side * scale)."""
        return int(round(hw[0] * scale)), int(round(hw[1] * scale))

    def draw(self, hw: T.Size, rng: np.random.Generator) -> SemsegDraw:
        low, high = self.ratio_range
        scale = float(low + (high - low) * rng.random())
        angle = float(self.rotate[0] + (self.rotate[1] - self.rotate[0]) * rng.random()) if rng.random() < 0.5 else None
        blur = bool(rng.random() < 0.5)
        flip = bool(rng.random() < self.flip_prob)
        h, w = self._scaled_size(hw, scale)
        top = int(rng.integers(0, max(h, self.crop[0]) - self.crop[0] + 1))
        left = int(rng.integers(0, max(w, self.crop[1]) - self.crop[1] + 1))
        return SemsegDraw(scale, angle, blur, flip, top, left)

    def apply(self, image: np.ndarray, label: np.ndarray, p: SemsegDraw) -> tuple[np.ndarray, np.ndarray]:
        """The drawn parameters applied: float32 image crop and label crop, before normalisation."""
        image = image.astype(np.float32)
        work_label = label if label.dtype == np.uint8 else label.astype(np.int32)
        image = cv2.resize(image, None, fx=p.scale, fy=p.scale, interpolation=cv2.INTER_LINEAR)
        work_label = cv2.resize(work_label, None, fx=p.scale, fy=p.scale, interpolation=cv2.INTER_NEAREST)
        h, w = work_label.shape
        if p.angle is not None:
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), p.angle, 1)
            image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=self.mean)
            work_label = cv2.warpAffine(work_label, matrix, (w, h), flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=self.ignore_index)
        if p.blur:
            image = cv2.GaussianBlur(image, (self.blur_size, self.blur_size), 0)
        if p.flip:
            image, work_label = cv2.flip(image, 1), cv2.flip(work_label, 1)
        pad_h, pad_w = max(self.crop[0] - h, 0), max(self.crop[1] - w, 0)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2,
                                       cv2.BORDER_CONSTANT, value=self.mean)
            work_label = cv2.copyMakeBorder(work_label, pad_h // 2, pad_h - pad_h // 2, pad_w // 2,
                                            pad_w - pad_w // 2, cv2.BORDER_CONSTANT, value=self.ignore_index)
        window = T.Window(p.top, p.left, self.crop[0], self.crop[1])
        return window.of(image), window.of(work_label)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """{"image": 3xHxW float32 normalised (semseg normalises after its float pipeline), "label"}."""
        return self.to_tensors(*self.apply(image, label, self.draw(label.shape[:2], rng)))


@dataclass(frozen=True)
class ChainerCVDraw:
    """Everything a training sample's randomness decides in ChainerCV's PSPNet example."""

    scale: float
    top: int  # crop offset in the scaled image
    left: int
    side: tuple[int, int]  # the crop taken before rotation: the crop size, or a square of the shorter side
    angle: float  # degrees, counter-clockwise
    flip: bool


class ChainerCVTrainTransform(_FloatPipeline):
    """ChainerCV's PSPNet training pipeline (examples/pspnet/train_multi.py `Transform`), on float32
    pixels as its datasets hand them over: random scale s in [lo, hi) to (int(s H), int(s W)) (image
    bicubic, label nearest) -> random crop of the crop size, or of a square of the shorter side when
    the scaled image is smaller -> rotate by U(-10, 10) degrees about the centre, same size (image
    bilinear filled with 0, label nearest filled with the ignore index, ChainerCV's -1) -> resize up
    to the crop size if smaller (bicubic / nearest) -> horizontal flip p 0.5 -> minus the mean.

    chainercv.transforms.resize / rotate use OpenCV when it is importable (train_multi.py imports it
    and sets its threads, so the published runs used it): cv2.resize INTER_CUBIC / INTER_NEAREST and
    cv2.warpAffine with getRotationMatrix2D((W / 2, H / 2)); the PIL fallback is not followed.
    Its random_crop offsets are random.choice(range(n - crop)): the last offset is never drawn.
    data.scale, cat_max_ratio and photometric play no part (the example has no such steps);
    data.std divides after the mean (the ChainerCV recipe sets it to 1: no std).
    """

    rotate = (-10.0, 10.0)

    @staticmethod
    def _offset(size: int, crop: int, rng: np.random.Generator) -> int:
        """random_crop's offset: 0 when the sizes are equal, else uniform in [0, size - crop)."""
        return 0 if size == crop else int(rng.integers(0, size - crop))

    def draw(self, hw: T.Size, rng: np.random.Generator) -> ChainerCVDraw:
        low, high = self.ratio_range
        scale = float(low + (high - low) * rng.random())
        h, w = int(scale * hw[0]), int(scale * hw[1])
        side = self.crop if h >= self.crop[0] and w >= self.crop[1] else (min(h, w), min(h, w))
        top, left = self._offset(h, side[0], rng), self._offset(w, side[1], rng)
        angle = float(self.rotate[0] + (self.rotate[1] - self.rotate[0]) * rng.random())
        flip = bool(rng.random() < self.flip_prob)
        return ChainerCVDraw(scale, top, left, side, angle, flip)

    def apply(self, image: np.ndarray, label: np.ndarray, p: ChainerCVDraw) -> tuple[np.ndarray, np.ndarray]:
        """The drawn parameters applied: float32 image (before the mean) and label, both the crop size."""
        image = image.astype(np.float32)
        work_label = label if label.dtype == np.uint8 else label.astype(np.int32)
        h, w = int(p.scale * label.shape[0]), int(p.scale * label.shape[1])
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
        work_label = cv2.resize(work_label, (w, h), interpolation=cv2.INTER_NEAREST)
        window = T.Window(p.top, p.left, p.side[0], p.side[1])
        image, work_label = window.of(image), window.of(work_label)
        matrix = cv2.getRotationMatrix2D((p.side[1] / 2, p.side[0] / 2), p.angle, 1)
        size = (p.side[1], p.side[0])
        image = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
        work_label = cv2.warpAffine(work_label, matrix, size, flags=cv2.INTER_NEAREST,
                                    borderValue=self.ignore_index)
        if p.side[0] < self.crop[0] or p.side[1] < self.crop[1]:
            size = (self.crop[1], self.crop[0])
            image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
            work_label = cv2.resize(work_label, size, interpolation=cv2.INTER_NEAREST)
        if p.flip:
            image, work_label = cv2.flip(image, 1), cv2.flip(work_label, 1)
        return image, work_label

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """{"image": 3xHxW float32 minus the mean (over std), "label"}."""
        return self.to_tensors(*self.apply(image, label, self.draw(label.shape[:2], rng)))


class TestTransform:
    """The test pipeline: resize the image to the base scale (aspect kept, mmcv rounding, cv2
    bilinear, as mmseg's test Resize with keep_ratio) and normalise; the label keeps its original
    size (scores are computed at the original resolution). `rng` is accepted and unused."""

    def __init__(self, cfg: DataConfig) -> None:
        self.scale = (int(cfg.scale[0]), int(cfg.scale[1]))
        self.mean, self.std = list(cfg.mean), list(cfg.std)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """{"image": 3xHxW float32 normalised, "label": HxW int64 at the original size}."""
        image = T.resize_image(image, T.rescale_size(image.shape[:2], self.scale))
        return {"image": T.normalize(image, self.mean, self.std), "label": T.label_tensor(label)}


def build_train_transform(
    cfg: DataConfig, ignore_index: int | None = None
) -> TrainTransform | SemsegTrainTransform | ChainerCVTrainTransform:
    """The training pipeline that `data.pipeline` names."""
    if cfg.pipeline == "semseg":
        return SemsegTrainTransform(cfg, ignore_index)
    if cfg.pipeline == "chainercv":
        return ChainerCVTrainTransform(cfg, ignore_index)
    if cfg.pipeline in DEFINITIONS:
        return TrainTransform(cfg, ignore_index)
    raise ConfigError(f"data.pipeline = {cfg.pipeline!r} is unknown; use one of {', '.join(PIPELINES)}")
