"""`sceneparse score`: metrics of predictions made elsewhere, with the same code as `sceneparse test`.

Ground truth: the dataset root (its layout and `split` locate the labels) or the label folder
itself (every file ending in the dataset's label suffix, keyed by its path without that suffix).
For Cityscapes the release's `*_gtFine_labelIds.png` serve when no `*_labelTrainIds.png` are there,
and `*_gtFine_instanceIds.png` beside the labels give the official iIoU.

Predictions are matched to each ground-truth sample, first match wins:
1. `pred_dir/pred_name(key)`, what `sceneparse test --save-pred` writes ("frankfurt/frankfurt_000000_000294.png",
   "ADE_val_00000001.png", "2007_000033.png");
2. Cityscapes-like: any PNG under `pred_dir` whose name holds the sample's "<city>_<seq>_<frame>",
   flat or in city folders, as cityscapesScripts matches them (`--cityscapes-format`, mmsegmentation's
   `format_only`, the server's layout); two candidates for one sample are an error;
3. any PNG under `pred_dir` named as the sample's image ("<image name>.png").
As with cityscapesScripts, every ground-truth label needs its prediction: a missing one is an error.
The predictions' encoding (training ids, Cityscapes labelIds, 1-based SceneParsing) is detected or
given (`sceneparse.evaluation.pred_encoding`).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sceneparse.data.files import encode_label, read_label, read_lines
from sceneparse.data.idmaps import cityscapes_lut
from sceneparse.data.layout import CustomLayout, FolderLayout, ListLayout
from sceneparse.data.registry import DatasetInfo, pred_name
from sceneparse.errors import DataError
from sceneparse.evaluation import pred_encoding
from sceneparse.evaluation.cityscapes import CITYSCAPES_LIKE
from sceneparse.evaluation.cityscapes_official import CityscapesOfficial, instance_file_for
from sceneparse.evaluation.confusion import ConfusionMatrix
from sceneparse.evaluation.per_image import PerImageScores, score_image

CITYSCAPES_LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
_FRAME = re.compile(r"([A-Za-z][A-Za-z-]*)_(\d{6})_(\d{6})")


@dataclass(frozen=True)
class ScoredPair:
    key: str
    label: Path
    prediction: Path


@dataclass
class ScoreResult:
    matrix: ConfusionMatrix  # C x (C + 1): the last column counts void predictions
    count: int  # samples scored
    encoding: str  # of the predictions
    official: CityscapesOfficial | None = None  # Cityscapes-like datasets only
    per_image: PerImageScores = field(default_factory=PerImageScores)


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
    """key -> label file for the ground truth at `gt_dir` (dataset root or label folder).

    For Cityscapes without training-id labels, the release's labelIds files (`is_label_ids`).
    """
    root = Path(gt_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: ground-truth folder not found")
    layout = info.layout
    if isinstance(layout, FolderLayout):
        folder = root / layout.label_dir.format(split=info.split_dir(split))
        folder = folder if folder.is_dir() else root
        labels = _labels_under(folder, layout.label_suffix)
        if not labels and info.name == "cityscapes":
            labels = _labels_under(folder, CITYSCAPES_LABEL_IDS_SUFFIX)
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


def is_label_ids(label: Path) -> bool:
    """A Cityscapes release label (labelIds 0..33) rather than a training-id label."""
    return label.name.endswith(CITYSCAPES_LABEL_IDS_SUFFIX)


def _frame_of(key: str) -> str | None:
    """"frankfurt/frankfurt_000000_000294" -> "frankfurt_000000_000294" (None if the key has no frame)."""
    found = _FRAME.search(Path(key).name)
    return found.group(0) if found else None


def match_predictions(labels: dict[str, Path], pred_dir: str | Path, dataset: str = "") -> list[ScoredPair]:
    """Each label with its prediction (see the module's matching rules); DataError naming what is missing."""
    pred_root = Path(pred_dir).expanduser()
    if not pred_root.is_dir():
        raise DataError(f"{pred_root}: prediction folder not found")
    files = [p for p in sorted(pred_root.rglob("*.png")) if p.is_file() and not p.name.startswith(".")]
    by_frame: dict[str, list[Path]] = defaultdict(list)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_stem[path.stem].append(path)
        if dataset in CITYSCAPES_LIKE:
            for frame in {m.group(0) for m in _FRAME.finditer(path.name)}:
                by_frame[frame].append(path)
    pairs, missing = [], []
    for key, label in sorted(labels.items()):
        exact = pred_root / pred_name(key)
        frame = _frame_of(key) if dataset in CITYSCAPES_LIKE else None
        candidates = [exact] if exact.is_file() else by_frame.get(frame, []) if frame else []
        if not candidates:
            candidates = by_stem.get(Path(key).name, [])
        if len(candidates) > 1:
            raise DataError(f"{pred_root}: {len(candidates)} predictions for {label.name}: "
                            f"{', '.join(str(c) for c in candidates[:3])}; keep one per image")
        if candidates:
            pairs.append(ScoredPair(key, label, candidates[0]))
        else:
            missing.append(exact)
    if missing:
        example = next(iter(sorted(labels)))
        raise DataError(
            f"{pred_root}: {len(missing)} of {len(labels)} ground-truth samples have no prediction, e.g. "
            f"{missing[0]} (a prediction is named by the sample's key, {pred_name(example)}"
            + (", or holds its <city>_<seq>_<frame> in its name" if dataset in CITYSCAPES_LIKE else "")
            + ")"
        )
    return pairs


def _read_ground_truth(info: DatasetInfo, label: Path, ignore_index: int) -> np.ndarray:
    raw = read_label(label)
    if is_label_ids(label):
        return cityscapes_lut()[np.clip(raw, 0, 255).astype(np.uint8)].astype(np.int64)
    return encode_label(raw, info.reduce_zero_label, info.ignore_index, ignore_index).astype(np.int64)


def score_folder(info: DatasetInfo, pred_dir: str | Path, gt_dir: str | Path, split: str = "val",
                 ignore_index: int = 255, progress: bool = True, encoding: str = pred_encoding.AUTO) -> ScoreResult:
    """Every prediction scored against its label: the confusion matrix, the Cityscapes official
    counts (Cityscapes-like datasets) and each image's scores."""
    pred_encoding.check_encoding(info, encoding)
    pairs = match_predictions(ground_truth_labels(info, gt_dir, split), pred_dir, info.name)
    if encoding == pred_encoding.AUTO:
        encoding = pred_encoding.detect_encoding(info, [p.prediction for p in pairs], progress)
    official = CityscapesOfficial() if info.name in CITYSCAPES_LIKE else None
    result = ScoreResult(ConfusionMatrix(info.num_classes, ignore_index, void_column=True), len(pairs), encoding,
                         official)
    for pair in tqdm(pairs, desc="score", unit="image", disable=not progress, leave=False):
        label = _read_ground_truth(info, pair.label, ignore_index)
        raw = read_label(pair.prediction)
        if raw.shape != label.shape:
            raise DataError(f"{pair.prediction}: prediction is {raw.shape[1]}x{raw.shape[0]} but its label "
                            f"{pair.label.name} is {label.shape[1]}x{label.shape[0]} (width x height); predictions "
                            "must be at the label's full size")
        pred = pred_encoding.to_train_ids(raw, encoding, info, pair.prediction)
        try:
            result.matrix.update(torch.from_numpy(pred), torch.from_numpy(label))
        except ValueError as exc:
            raise DataError(f"{pair.label}: {exc}") from None
        result.per_image.add(score_image(pair.key, pred, label, info.classes, ignore_index))
        if official is not None:
            gt_ids = read_label(pair.label) if is_label_ids(pair.label) else pred_encoding.to_label_ids(label, "")
            instances = instance_file_for(pair.label)
            official.update(pred_encoding.to_label_ids(raw, encoding), gt_ids,
                            read_label(instances) if instances is not None else None, str(pair.label))
    return result
