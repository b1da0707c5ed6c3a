"""The files a scoring run leaves behind: metrics.json, the table, and two figures.

`sceneparse test` and `sceneparse score` both end here, so their outputs are the same files with
the same meaning: `metrics.json` (fractions, null for undefined classes), `metrics.txt` (the
per-class table in percent), `confusion.png` (rows normalised) and `class_iou.png`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sceneparse.data.files import write_text
from sceneparse.evaluation.metrics import format_table, save_metrics, split_void
from sceneparse.visualize import plot_class_iou, plot_confusion

METRICS_JSON = "metrics.json"
METRICS_TABLE = "metrics.txt"
CONFUSION_PNG = "confusion.png"
CLASS_IOU_PNG = "class_iou.png"
CONFUSION_NPY = "confusion.npy"


def write_report(metrics: dict[str, Any], matrix: np.ndarray, class_names: Sequence[str], out_dir: str | Path,
                 title: str = "", figures: bool = True, json_name: str = METRICS_JSON) -> dict[str, Path]:
    """Write metrics.json (or `json_name`), metrics.txt, the raw matrix (.npy) and, when `figures`, the two PNGs.

    Returns the paths written, by role ("json", "table", "matrix", "confusion", "class_iou").
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / json_name, "table": out / METRICS_TABLE, "matrix": out / CONFUSION_NPY}
    save_metrics(metrics, paths["json"])
    write_text(paths["table"], format_table(metrics, title) + "\n")
    _save_npy(paths["matrix"], np.asarray(matrix, dtype=np.int64))
    if figures:
        paths["confusion"] = out / CONFUSION_PNG
        paths["class_iou"] = out / CLASS_IOU_PNG
        # the classes' square (void predictions, if counted, stay out of the picture)
        plot_confusion(split_void(np.asarray(matrix))[0], class_names, paths["confusion"])
        plot_class_iou(metrics, paths["class_iou"])
    return paths


def _save_npy(path: Path, array: np.ndarray) -> None:
    from sceneparse.weights import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    atomic_write(path, write)
