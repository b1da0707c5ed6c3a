"""Cityscapes benchmark-server format: predictions as labelIds PNGs under the official names.

The server (and cityscapesScripts' evalPixelLevelSemanticLabeling) matches a result to its image by
"{city}_{seq}_{frame}" in the file name and reads full labelIds (7 = road, 26 = car, ...), not the
19 training ids. The names written here are the image names, as mmsegmentation's `format_results`
writes them: "berlin_000000_000019_leftImg8bit.png", all in one folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sceneparse.data.idmaps import CITYSCAPES_LABELS
from sceneparse.errors import ConfigError

# Datasets whose 19 classes are the Cityscapes training ids.
CITYSCAPES_LIKE = ("cityscapes", "dark_zurich", "night_driving")


def train_to_label_ids() -> np.ndarray:
    """256-entry lookup: training id (0..18) -> labelId; anything else -> 0 ("unlabeled")."""
    lut = np.zeros(256, dtype=np.uint8)
    for _name, label_id, train_id in CITYSCAPES_LABELS:
        if train_id != 255:
            lut[train_id] = label_id
    return lut


def to_label_ids(pred: np.ndarray) -> np.ndarray:
    """H x W training ids -> H x W uint8 labelIds."""
    return train_to_label_ids()[np.clip(np.asarray(pred), 0, 255).astype(np.uint8)]


def result_name(image_path: str | Path) -> str:
    """The file name the benchmark expects for `image_path`: the image's name as a PNG
    ("X_leftImg8bit.png" stays "X_leftImg8bit.png"; the night sets keep their own image names)."""
    return Path(image_path).name.split(".")[0] + ".png"


def check_dataset(dataset: str) -> None:
    """--cityscapes-format only makes sense for the 19 Cityscapes classes."""
    if dataset not in CITYSCAPES_LIKE:
        raise ConfigError(
            f"--cityscapes-format writes Cityscapes labelIds; dataset {dataset!r} is not one of "
            f"{', '.join(CITYSCAPES_LIKE)}"
        )
