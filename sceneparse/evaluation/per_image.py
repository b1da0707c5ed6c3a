"""Per-image scores (`--per-image CSV` of `test` and `score`): which images a model gets most wrong.

Each image gets its own pixel accuracy and mean IoU over the classes present in its ground truth
or its prediction (a class absent from both says nothing about the image). The CSV lists the
images worst first (lowest mIoU, then lowest accuracy); an image with no scored pixel comes last.
Distributed, every process keeps its own rows and `gather` collects them on rank 0.
"""
from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import torch.distributed as dist

from sceneparse.data.files import write_text

COLUMNS = ("image", "mIoU", "aAcc", "pixels", "classes", "worst_class", "worst_class_IoU")


@dataclass(frozen=True)
class ImageScore:
    image: str  # the sample key (or the prediction's name)
    mIoU: float | None
    aAcc: float | None
    pixels: int  # scored pixels (ground truth not ignored)
    classes: int  # classes with a defined IoU in this image
    worst_class: str
    worst_class_IoU: float | None


def score_image(name: str, pred: np.ndarray, label: np.ndarray, class_names: tuple[str, ...] | list[str],
                ignore_index: int = 255) -> ImageScore:
    """One image's scores; `pred` values outside the classes (255) are void: wrong, nobody's false positive."""
    num_classes = len(class_names)
    keep = label != ignore_index
    gt, pr = label[keep].astype(np.int64), pred[keep].astype(np.int64)
    pr = np.where((pr < 0) | (pr >= num_classes), num_classes, pr)
    counts = np.bincount(gt * (num_classes + 1) + pr, minlength=num_classes * (num_classes + 1))
    matrix = counts.reshape(num_classes, num_classes + 1)
    tp = np.diag(matrix[:, :num_classes]).astype(np.float64)
    union = matrix.sum(axis=1) + matrix[:, :num_classes].sum(axis=0) - tp
    defined = union > 0
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=defined)
    pixels = int(keep.sum())
    worst = int(np.argmin(np.where(defined, iou, np.inf))) if defined.any() else -1
    return ImageScore(
        image=name,
        mIoU=float(iou[defined].mean()) if defined.any() else None,
        aAcc=float(tp.sum() / pixels) if pixels else None,
        pixels=pixels,
        classes=int(defined.sum()),
        worst_class=class_names[worst] if worst >= 0 else "",
        worst_class_IoU=float(iou[worst]) if worst >= 0 else None,
    )


class PerImageScores:
    """Collects `ImageScore`s and writes them as a CSV, worst image first."""

    def __init__(self) -> None:
        self.rows: list[ImageScore] = []

    def add(self, row: ImageScore) -> None:
        self.rows.append(row)

    def gather(self) -> None:
        """Every process's rows on every process (no-op without an initialised process group)."""
        if dist.is_available() and dist.is_initialized():
            parts: list[list[ImageScore] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self.rows)
            self.rows = [row for part in parts for row in (part or [])]

    def sorted_rows(self) -> list[ImageScore]:
        def order(row: ImageScore) -> tuple[bool, float, float, str]:
            undefined = row.mIoU is None
            return undefined, row.mIoU or 0.0, row.aAcc or 0.0, row.image

        return sorted(self.rows, key=order)

    def write_csv(self, path: str | Path) -> Path:
        """The CSV (atomically), figures as fractions with 6 decimals, empty where undefined."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.sorted_rows():
            writer.writerow(["" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in astuple(row)])
        write_text(path, buffer.getvalue())
        return Path(path)
