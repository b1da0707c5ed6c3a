"""The Cityscapes benchmark's own metrics, as cityscapesScripts' evalPixelLevelSemanticLabeling computes them.

Besides class IoU, the benchmark reports category IoU (7 groups: flat, construction, object,
nature, sky, human, vehicle) and the instance-level iIoU of classes and categories, where each
ground-truth instance (from `*_gtFine_instanceIds.png`, values labelId * 1000 + k) weighs in
inversely to its size: its true and false negative pixels are scaled by the class's average
instance size over its own size, so small people count as much as large ones. False positives
are not weighted. The definitions follow cityscapesScripts 2.x
(`getIouScoreForLabel`, `getIouScoreForCategory`, `getInstanceIouScoreFor*`, `evaluatePair`):

* everything is counted on labelIds (0..33); ground-truth pixels of labels that are not evaluated
  (void, parking, caravan, ...) count nowhere except as their own row;
* a prediction of a label that is not evaluated (or 255, or anything outside 0..33, which this
  module reads as 0 "unlabeled") is a false negative of the ground-truth class and nobody's false
  positive;
* an undefined score (0 / 0) is left out of the means.

`CityscapesOfficial` accumulates the confusion matrix over labelIds and the weighted instance
counts (summed over processes with `all_reduce`); `official_metrics` turns them into the
"cityscapes" section of metrics.json. The tests check every figure against cityscapesScripts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sceneparse.data.files import read_label
from sceneparse.data.idmaps import CITYSCAPES_LABELS, CITYSCAPES_NUM_LABEL_IDS
from sceneparse.errors import DataError
from sceneparse.evaluation.cityscapes import CITYSCAPES_LIKE, train_to_label_ids

NUM_IDS = CITYSCAPES_NUM_LABEL_IDS  # labelIds 0..33
NAMES = {label_id: name for name, label_id, _ in CITYSCAPES_LABELS}
EVALUATED = tuple(label_id for _, label_id, train_id in CITYSCAPES_LABELS if train_id != 255)

# cityscapesScripts' labels.py: each label's category (license plate, id -1, never occurs in files).
CATEGORIES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("void", (0, 1, 2, 3, 4, 5, 6)),
    ("flat", (7, 8, 9, 10)),
    ("construction", (11, 12, 13, 14, 15, 16)),
    ("object", (17, 18, 19, 20)),
    ("nature", (21, 22)),
    ("sky", (23,)),
    ("human", (24, 25)),
    ("vehicle", (26, 27, 28, 29, 30, 31, 32, 33)),
)
# Labels with instances (hasInstances); the categories whose every label has them get a category iIoU.
INSTANCE_LABELS = tuple(range(24, 34))
INSTANCE_CATEGORIES = ("human", "vehicle")

# The average instance size of each class over the training set: the weights' numerators
# (cityscapesScripts' `args.avgClassSize`, the values the benchmark server uses).
AVG_CLASS_SIZE = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}

INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
_CATEGORY_OF = {label_id: name for name, ids in CATEGORIES for label_id in ids}


def instance_file_for(label_path: str | Path) -> Path | None:
    """The `*_gtFine_instanceIds.png` beside a Cityscapes label file (labelIds or labelTrainIds), if any."""
    path = Path(label_path)
    for suffix in ("_gtFine_labelTrainIds.png", "_gtFine_labelIds.png"):
        if path.name.endswith(suffix):
            candidate = path.with_name(path.name[: -len(suffix)] + INSTANCE_SUFFIX)
            return candidate if candidate.is_file() else None
    return None


class CityscapesOfficial:
    """Confusion matrix over labelIds and the instance counts of the official evaluator.

    `instances` says whether every scored image came with its instanceIds file: iIoU is only
    reported then (the benchmark's iIoU needs them all).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.matrix = torch.zeros(NUM_IDS, NUM_IDS, dtype=torch.int64, device=device)
        # per labelId, then per instance category: weighted true positives, weighted false negatives
        self.weighted = torch.zeros(NUM_IDS + len(INSTANCE_CATEGORIES), 2, dtype=torch.float64, device=device)
        self.images = torch.zeros(2, dtype=torch.int64, device=device)  # scored, scored with instances

    @property
    def instances(self) -> bool:
        return int(self.images[0]) > 0 and int(self.images[0]) == int(self.images[1])

    def update(self, pred: np.ndarray, gt: np.ndarray, instance_ids: np.ndarray | None = None,
               where: str = "") -> None:
        """Add one image: H x W labelIds of the prediction and the ground truth, and optionally the
        ground truth's instanceIds. `where` names the file in errors."""
        pred = np.asarray(pred).astype(np.int64)
        gt = np.asarray(gt).astype(np.int64)
        pred[(pred < 0) | (pred >= NUM_IDS)] = 0  # 255 and the like: void, as "unlabeled"
        if gt.size and (int(gt.min()) < 0 or int(gt.max()) >= NUM_IDS):
            bad = np.unique(gt[(gt < 0) | (gt >= NUM_IDS)])[:10].tolist()
            raise DataError(f"{where or 'ground truth'}: values {bad} are not Cityscapes labelIds (0..33)")
        counts = np.bincount((gt * NUM_IDS + pred).ravel(), minlength=NUM_IDS * NUM_IDS)
        self.matrix += torch.from_numpy(counts.reshape(NUM_IDS, NUM_IDS)).to(self.matrix.device)
        self.images[0] += 1
        if instance_ids is not None:
            if instance_ids.shape != gt.shape:
                raise DataError(f"{where or 'instanceIds'}: instanceIds are {instance_ids.shape[::-1]} but the "
                                f"labels are {gt.shape[::-1]} (width x height)")
            self._add_instances(pred, np.asarray(instance_ids).astype(np.int64))
            self.images[1] += 1

    def _add_instances(self, pred: np.ndarray, instance_ids: np.ndarray) -> None:
        """Each instance's true positives and false negatives, weighted by average size / its size."""
        inside = instance_ids > 1000  # below: stuff, crowd regions and unlabelled (no instance)
        ids, inverse = np.unique(instance_ids[inside], return_inverse=True)
        if not ids.size:
            return
        label_of = ids // 1000
        sizes = np.bincount(inverse, minlength=ids.size).astype(np.float64)
        pred_inside = pred[inside]
        correct = np.bincount(inverse, weights=(pred_inside == label_of[inverse]), minlength=ids.size)
        rows = np.zeros((NUM_IDS + len(INSTANCE_CATEGORIES), 2), dtype=np.float64)
        category_hits = {
            name: np.bincount(inverse, weights=np.isin(pred_inside, dict(CATEGORIES)[name]), minlength=ids.size)
            for name in INSTANCE_CATEGORIES
        }
        for index, label_id in enumerate(label_of.tolist()):
            if label_id not in EVALUATED:
                continue
            weight = AVG_CLASS_SIZE[NAMES[label_id]] / sizes[index]
            rows[label_id] += (correct[index] * weight, (sizes[index] - correct[index]) * weight)
            category = _CATEGORY_OF[label_id]
            if category in INSTANCE_CATEGORIES:
                hits = category_hits[category][index]
                rows[NUM_IDS + INSTANCE_CATEGORIES.index(category)] += (hits * weight, (sizes[index] - hits) * weight)
        self.weighted += torch.from_numpy(rows).to(self.weighted.device)

    def update_train_ids(self, pred: np.ndarray, label: np.ndarray, instance_file: Path | None = None) -> None:
        """Add one image given in training ids (255 = void on either side), as `sceneparse test` has it."""
        lut = train_to_label_ids()
        instances = read_label(instance_file) if instance_file is not None else None
        self.update(lut[np.clip(pred, 0, 255).astype(np.uint8)], lut[np.clip(label, 0, 255).astype(np.uint8)],
                    instances, str(instance_file or ""))

    def all_reduce(self) -> None:
        """Sum over all processes (no-op without an initialised process group)."""
        if dist.is_available() and dist.is_initialized():
            for tensor in (self.matrix, self.weighted, self.images):
                dist.all_reduce(tensor)


class OfficialCollector:
    """`evaluate`'s on_prediction for a Cityscapes-like dataset: adds each image, with the instanceIds
    file beside its label when there is one, and gives the official section at the end."""

    def __init__(self, samples: list[Any], device: torch.device | str = "cpu") -> None:
        self.acc = CityscapesOfficial(device)
        self.instances = {str(sample.image): instance_file_for(sample.label) for sample in samples}

    def __call__(self, pred: np.ndarray, label: np.ndarray, image_path: str) -> None:
        self.acc.update_train_ids(pred, label, self.instances[image_path])

    def metrics(self) -> dict[str, Any]:
        """The "cityscapes" section, summed over all processes."""
        self.acc.all_reduce()
        return official_metrics(self.acc)


def official_collector(dataset: Any, device: torch.device | str = "cpu") -> OfficialCollector | None:
    """An `OfficialCollector` for a dataset on the Cityscapes classes (with `.info` and `.samples`), else
    None. `device`: where its counts live, the device the process group reduces on (CUDA for NCCL)."""
    if dataset.info.name not in CITYSCAPES_LIKE:
        return None
    return OfficialCollector(dataset.samples, device)


def _iou(tp: float, fp: float, fn: float) -> float | None:
    denominator = tp + fp + fn
    return None if denominator == 0 else float(tp) / float(denominator)


def _mean(values: dict[str, float | None]) -> float | None:
    defined = [v for v in values.values() if v is not None]
    return sum(defined) / len(defined) if defined else None


def official_metrics(acc: CityscapesOfficial) -> dict[str, Any]:
    """The "cityscapes" section of metrics.json: class and category IoU, and their iIoU when the
    instance files were there (None otherwise, and for undefined scores)."""
    m = acc.matrix.cpu().numpy().astype(np.int64)
    weighted = acc.weighted.cpu().numpy()
    instances = acc.instances
    classes: dict[str, dict[str, float | None]] = {}
    for label_id in EVALUATED:
        others = [i for i in EVALUATED if i != label_id]
        tp = int(m[label_id, label_id])
        fn = int(m[label_id].sum()) - tp
        fp = int(m[others, label_id].sum())
        scores: dict[str, float | None] = {"IoU": _iou(tp, fp, fn), "iIoU": None}
        if instances and label_id in INSTANCE_LABELS:
            scores["iIoU"] = _iou(weighted[label_id, 0], fp, weighted[label_id, 1])
        classes[NAMES[label_id]] = scores
    categories: dict[str, dict[str, float | None]] = {}
    for name, ids in CATEGORIES:
        evaluated = [i for i in ids if i in EVALUATED]
        if not evaluated:
            continue  # void: nothing evaluated, undefined, as in cityscapesScripts
        outside = [i for i in EVALUATED if _CATEGORY_OF[i] != name]
        tp = int(m[np.ix_(evaluated, evaluated)].sum())
        fn = int(m[evaluated].sum()) - tp
        scores = {"IoU": _iou(tp, int(m[np.ix_(outside, evaluated)].sum()), fn), "iIoU": None}
        if instances and name in INSTANCE_CATEGORIES:
            row = weighted[NUM_IDS + INSTANCE_CATEGORIES.index(name)]
            # here the columns are all of the category's labels, evaluated or not (as the official code)
            scores["iIoU"] = _iou(row[0], int(m[np.ix_(outside, list(ids))].sum()), row[1])
        categories[name] = scores
    return {
        "IoU_class": _mean({k: v["IoU"] for k, v in classes.items()}),
        "iIoU_class": _mean({k: v["iIoU"] for k, v in classes.items()}) if instances else None,
        "IoU_category": _mean({k: v["IoU"] for k, v in categories.items()}),
        "iIoU_category": _mean({k: v["iIoU"] for k, v in categories.items()}) if instances else None,
        "instances": instances,
        "classes": classes,
        "categories": categories,
    }


def summary_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The four headline numbers of a metrics dict's "cityscapes" section, for logs and TensorBoard."""
    section = metrics.get("cityscapes") or {}
    keys = ("IoU_class", "iIoU_class", "IoU_category", "iIoU_category")
    return {f"cityscapes/{key}": section[key] for key in keys if section.get(key) is not None}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_official(section: dict[str, Any]) -> str:
    """The official summary as the benchmark prints it: IoU and iIoU of classes and categories."""
    lines = ["Cityscapes official (cityscapesScripts' definitions)", f"{'category':<14}  {'IoU':>7}  {'iIoU':>7}"]
    for name, scores in section["categories"].items():
        lines.append(f"{name:<14}  {_percent(scores['IoU']):>7}  {_percent(scores['iIoU']):>7}")
    lines.append(f"classes:    IoU {_percent(section['IoU_class'])}  iIoU {_percent(section['iIoU_class'])}")
    lines.append(f"categories: IoU {_percent(section['IoU_category'])}  iIoU {_percent(section['iIoU_category'])}")
    if not section["instances"]:
        lines.append("iIoU needs *_gtFine_instanceIds.png beside every label; not all were found")
    return "\n".join(lines)
