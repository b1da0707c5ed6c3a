"""The torch Dataset: pairs from the registry, decoded, encoded and transformed.

A sample's randomness is a pure function of (seed, epoch, index): the loader's sampler hands the
dataset keys of that form (see `sceneparse.data.loader`), so a run is reproducible whatever the
number of workers, and `dataset[i]` (seed 0, epoch 0) is reproducible too.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from sceneparse.config.schema import DataConfig
from sceneparse.data.files import check_same_size, encode_label, read_image, read_label
from sceneparse.data.pipelines import (
    ChainerCVTrainTransform,
    SemsegTrainTransform,
    TestTransform,
    TrainTransform,
    build_train_transform,
)
from sceneparse.data.registry import DatasetInfo, dataset_info
from sceneparse.errors import DataError

log = logging.getLogger(__name__)

SampleKey = int | tuple[int, int, int]  # index, or (seed, epoch, index)


class SegmentationDataset(Dataset):
    """Yields {"image", "label": HxW int64, "path": image path, "key": sample key}; the image is 3xHxW
    float32 (normalised) from the test pipeline, and from the training pipeline either HxWx3 uint8 with
    "valid" (the box of real pixels; `sceneparse.data.device_batch.model_input` normalises it on the
    device) or 3xHxW float32 (semseg's and ChainerCV's float pipelines).

    The key names the prediction file (`sceneparse.data.registry.pred_name(key)`).

    Labels come out in training ids with unscored pixels = `ignore_index`, whatever the files store.
    """

    def __init__(
        self, info: DatasetInfo, root: str | Path, split: str, transform: TrainTransform | SemsegTrainTransform | ChainerCVTrainTransform | TestTransform,
        ignore_index: int = 255,
    ) -> None:
        self.info = info
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.ignore_index = ignore_index
        self.samples = info.keyed_pairs(root, split)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded image and its label in training ids, before any transform."""
        sample = self.samples[index]
        image = read_image(sample.image)
        raw = read_label(sample.label)
        check_same_size(sample.image, image.shape[:2], sample.label, raw.shape)
        label = encode_label(raw, self.info.reduce_zero_label, self.info.ignore_index, self.ignore_index)
        self._check_range(label, raw, sample.label)
        return image, label

    def _check_range(self, label: np.ndarray, raw: np.ndarray, path: Path) -> None:
        """A value outside the classes would crash the loss (or a CUDA assert) far from its cause."""
        if int(label.max()) < self.info.num_classes:
            return
        bad = (label >= self.info.num_classes) & (label != self.ignore_index)
        if bad.any():
            values = np.unique(raw[bad])[:10].tolist()
            raise DataError(
                f"{path}: label values {values} are outside the {self.info.num_classes} classes of "
                f"{self.info.name}; run `sceneparse data check {self.info.name} {self.root} --split {self.split}`"
            )

    def __getitem__(self, key: SampleKey) -> dict:
        seed, epoch, index = (0, 0, key) if isinstance(key, (int, np.integer)) else key
        image, label = self.load(int(index))
        rng = np.random.default_rng([int(seed), int(epoch), int(index)])
        sample = self.samples[int(index)]
        return {**self.transform(image, label, rng), "path": str(sample.image), "key": sample.key}


def config_dataset_info(cfg: DataConfig) -> DatasetInfo:
    """The DatasetInfo a run reads with: the registry's, with the config's reduce_zero_label.

    For a registry dataset the config decides reduce_zero_label (mmseg configs set it per dataset);
    the sanity check flags a value that contradicts the dataset's encoding. For "custom" the
    classes TOML describes the files and wins.
    """
    classes_file = cfg.custom_classes_file
    if cfg.dataset == "custom" and not classes_file:
        classes_file = str(Path(cfg.root) / "classes.toml")
    info = dataset_info(cfg.dataset, classes_file)
    if cfg.dataset == "custom":
        if cfg.reduce_zero_label and not info.reduce_zero_label:
            log.warning("data.reduce_zero_label is ignored for a custom dataset; set it in %s", classes_file)
        return info
    return dataclasses.replace(info, reduce_zero_label=cfg.reduce_zero_label)


def build_dataset(cfg: DataConfig, split: str, train: bool, check: bool = True) -> SegmentationDataset:
    """The dataset of `split` with the training (`train=True`) or test pipeline of `cfg`.

    For training, the cheap part of `sceneparse data check` runs first (`check=False` skips it) and
    a dataset whose labels cannot be right is refused with the check's message.
    """
    if not cfg.root:
        raise DataError(f"data.root is empty: where is the {cfg.dataset} dataset? Set it or pass --data-root")
    info = config_dataset_info(cfg)
    if train and info.eval_only:
        raise DataError(f"{info.name} is an evaluation-only dataset (no training split); train on cityscapes")
    if train and check:
        from sceneparse.data.check import quick_check

        quick_check(info, cfg.root, split)
    transform = build_train_transform(cfg) if train else TestTransform(cfg)
    return SegmentationDataset(info, cfg.root, split, transform, ignore_index=cfg.ignore_index)
