"""The images of a split, labelled or not, for format-only runs (the test splits have no public labels).

Each sample has the same shape as `SegmentationDataset`'s: the image through the test pipeline and a
label of the image's size, here all `ignore_index`, so the evaluation loop runs unchanged and
predicts at the original resolution; no pixel is scored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from sceneparse.config.schema import DataConfig
from sceneparse.data.dataset import config_dataset_info
from sceneparse.data.files import read_image
from sceneparse.data.layout import Pair
from sceneparse.data.pipelines import TestTransform
from sceneparse.errors import DataError


class UnlabelledImages(Dataset):
    """Yields {"image", "label" (all ignore), "path", "key"} for every image of `split`."""

    def __init__(self, cfg: DataConfig, split: str) -> None:
        if not cfg.root:
            raise DataError(f"data.root is empty: where is the {cfg.dataset} dataset? Set it or pass --data-root")
        self.info = config_dataset_info(cfg)
        self.root = Path(cfg.root)
        scan = self.info.scan(cfg.root, split)
        self.samples: list[Pair] = sorted([*scan.pairs, *scan.missing_labels], key=lambda p: p.key)
        if not self.samples:
            raise DataError(f"{cfg.root} ({self.info.name}, split {split}): no images found")
        self.transform = TestTransform(cfg)
        self.ignore_index = cfg.ignore_index

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[int(index)]
        image = read_image(sample.image)
        label = np.full(image.shape[:2], self.ignore_index, dtype=np.int64)
        return {**self.transform(image, label), "path": str(sample.image), "key": sample.key}
