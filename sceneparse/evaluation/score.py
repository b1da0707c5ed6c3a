"""`sceneparse score`: metrics of predictions made elsewhere, with the same code as `sceneparse test`.

Predictions are label PNGs of training ids (a palette PNG is fine), one per ground-truth sample,
named by the sample's key (`sceneparse.data.registry.pred_name`): Cityscapes
"frankfurt/frankfurt_000000_000294.png", ADE20K "ADE_val_00000001.png". The ground truth is either
the dataset root (its layout and `split` locate the labels) or the label folder itself (every
file ending in the dataset's label suffix, keyed by its path without that suffix). As with
cityscapesScripts, every ground-truth label needs its prediction: a missing one is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sceneparse.data.files import check_same_size, encode_label, read_label, read_lines
from sceneparse.data.layout import CustomLayout, FolderLayout, ListLayout
from sceneparse.data.registry import DatasetInfo, pred_name
from sceneparse.errors import DataError
from sceneparse.evaluation.confusion import ConfusionMatrix


@dataclass(frozen=True)
class ScoredPair:
    key: str
    label: Path
    prediction: Path


def _labels_under(folder: Path, suffix: str) -> dict[str, Path]:
    """key -> label path for every file under `folder` (recursively) whose name ends in `suffix`."""
    found = {}
    for path in sorted(folder.rglob(f"*{suffix}")):
        if path.is_file() and not path.name.startswith("."):
            relative = path.relative_to(folder).as_posix()
            found[relative[: -len(suffix)]] = path
    return found


def _list_labels(info: DatasetInfo, layout: ListLayout, root: Path, split: str) -> dict[str, Path] | None:
    """The labels a ListLayout split names (VOC, Pascal Context), or None if `root` is not the dataset root."""
    parts = dict(layout.lists).get(info.split_dir(split), ())
    if not parts or not all((root / list_file).is_file() for list_file, _ in parts):
        return None
    found: dict[str, Path] = {}
    for list_file, label_dir in parts:
        for name in read_lines(root / list_file):
            found.setdefault(name, root / label_dir / (name + layout.label_suffix))
    missing = [path for path in found.values() if not path.is_file()]
    if missing:
        raise DataError(f"{root}: {len(missing)} labels named by the {split} list are missing, e.g. {missing[0]}")
    return found


def ground_truth_labels(info: DatasetInfo, gt_dir: str | Path, split: str) -> dict[str, Path]:
    """key -> label file for the ground truth at `gt_dir` (dataset root or label folder)."""
    root = Path(gt_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: ground-truth folder not found")
    layout = info.layout
    if isinstance(layout, FolderLayout):
        folder = root / layout.label_dir.format(split=info.split_dir(split))
        labels = _labels_under(folder if folder.is_dir() else root, layout.label_suffix)
    elif isinstance(layout, ListLayout):
        listed = _list_labels(info, layout, root, split)
        labels = listed if listed is not None else _labels_under(root, layout.label_suffix)
    elif isinstance(layout, CustomLayout):
        split_dir = info.split_dir(split)
        folder = next((f for f in (root / "labels" / split_dir, root / "labels") if f.is_dir()), root)
        labels = _labels_under(folder, layout.label_suffix)
    else:  # pragma: no cover - every layout is handled above
        raise DataError(f"{info.name}: cannot locate ground truth for layout {type(layout).__name__}")
    if not labels:
        raise DataError(f"{root}: no {info.name} ground-truth labels found (neither the dataset root with split "
                        f"{split!r} nor a folder of label files)")
    return labels


def match_predictions(labels: dict[str, Path], pred_dir: str | Path) -> list[ScoredPair]:
    """Each label with its prediction `pred_dir/pred_name(key)`; DataError naming what is missing."""
    pred_root = Path(pred_dir).expanduser()
    if not pred_root.is_dir():
        raise DataError(f"{pred_root}: prediction folder not found")
    pairs = [ScoredPair(key, label, pred_root / pred_name(key)) for key, label in sorted(labels.items())]
    missing = [pair.prediction for pair in pairs if not pair.prediction.is_file()]
    if missing:
        raise DataError(
            f"{pred_root}: {len(missing)} of {len(pairs)} ground-truth samples have no prediction, e.g. "
            f"{missing[0]} (predictions are named by the sample's key: "
            f"{pred_name(pairs[0].key)} for {pairs[0].label.name})"
        )
    return pairs


def read_prediction(path: Path, num_classes: int) -> np.ndarray:
    """A predicted label map; values must be class ids (training ids) of the dataset."""
    pred = read_label(path)
    if pred.size and int(pred.max()) >= num_classes:
        bad = np.unique(pred[pred >= num_classes])[:10].tolist()
        raise DataError(f"{path}: predicted values {bad} are not among the {num_classes} classes (training ids "
                        f"0..{num_classes - 1} expected)")
    return pred


def score_folder(info: DatasetInfo, pred_dir: str | Path, gt_dir: str | Path, split: str = "val",
                 ignore_index: int = 255, progress: bool = True) -> tuple[ConfusionMatrix, int]:
    """The confusion matrix of every prediction against its label, and the number of samples scored."""
    pairs = match_predictions(ground_truth_labels(info, gt_dir, split), pred_dir)
    matrix = ConfusionMatrix(info.num_classes, ignore_index)
    for pair in tqdm(pairs, desc="score", unit="image", disable=not progress, leave=False):
        raw = read_label(pair.label)
        label = encode_label(raw, info.reduce_zero_label, info.ignore_index, ignore_index)
        pred = read_prediction(pair.prediction, info.num_classes)
        check_same_size(pair.prediction, pred.shape, pair.label, label.shape)
        try:
            matrix.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(label.astype(np.int64)))
        except ValueError as exc:
            raise DataError(f"{pair.label}: {exc}") from None
    return matrix, len(pairs)
