"""Segmentation metrics from one confusion matrix, in the shape of metrics.json.

Every figure is a fraction in [0, 1] computed from the matrix (rows: ground truth, columns:
prediction) of `sceneparse.evaluation.confusion.ConfusionMatrix`. A per-class figure whose
denominator is zero is undefined and reported as None (null in JSON), never as 0: a class absent
from both prediction and ground truth says nothing about the model. A class present only in the
predictions has IoU 0 (all false positives) but no accuracy (nothing to recall). Means are over
the classes whose figure is defined (as numpy's nanmean in mmsegmentation).

    {"aAcc": .., "mIoU": .., "mAcc": .., "per_class": {"road": {"IoU": .., "Acc": ..}, ..},
     "mDice": .., "mFscore": .., "mPrecision": .., "mRecall": .., "num_pixels": ..}

The optional metrics add "Dice", "Fscore", "Precision", "Recall" to each class and their means.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sceneparse.errors import ConfigError

EXTRA_METRICS = ("dice", "fscore", "precision", "recall")
_EXTRA_KEYS = {"dice": "Dice", "fscore": "Fscore", "precision": "Precision", "recall": "Recall"}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator per class, NaN where the denominator is 0."""
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    defined = denominator > 0
    out[defined] = numerator[defined] / denominator[defined]
    return out


def _mean(values: np.ndarray) -> float | None:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else None


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _f_score(precision: np.ndarray, recall: np.ndarray, beta: float) -> np.ndarray:
    """mmsegmentation's F-beta from precision and recall: undefined (NaN) where either is, and where
    both are 0 (a class present on both sides that the model never gets right)."""
    b2 = beta * beta
    numerator = (1 + b2) * precision * recall
    return _ratio(np.nan_to_num(numerator), np.where(np.isnan(numerator), 0.0, b2 * precision + recall))


def split_void(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C x C matrix, per-class count of void predictions) of a C x C or C x (C + 1) matrix.

    The optional last column counts pixels predicted as void (255, or a Cityscapes labelId that is
    not evaluated): false negatives of their ground-truth class, no class's false positive, as
    cityscapesScripts and mmsegmentation count them.
    """
    m = np.asarray(matrix)
    if m.ndim == 2 and m.shape[1] == m.shape[0] + 1:
        return m[:, :-1], m[:, -1]
    return m, np.zeros(m.shape[0], dtype=m.dtype)


def per_class_figures(matrix: np.ndarray, extra: Sequence[str] = (), beta: float = 1.0) -> dict[str, np.ndarray]:
    """Each metric as an array over the classes (NaN where undefined), as mmsegmentation's IoUMetric
    defines them (mmseg/evaluation/metrics/iou_metric.py, `total_area_to_metrics`)."""
    square, void = split_void(matrix)
    tp = np.diag(square).astype(np.float64)
    gt = square.sum(axis=1).astype(np.float64) + void  # pixels labelled as the class
    pred = square.sum(axis=0).astype(np.float64)  # pixels predicted as the class
    figures = {"IoU": _ratio(tp, gt + pred - tp), "Acc": _ratio(tp, gt)}
    for name in extra:
        if name == "dice":
            figures["Dice"] = _ratio(2 * tp, gt + pred)
        elif name == "fscore":
            figures["Fscore"] = _f_score(_ratio(tp, pred), _ratio(tp, gt), beta)
        elif name == "precision":
            figures["Precision"] = _ratio(tp, pred)
        elif name == "recall":
            figures["Recall"] = _ratio(tp, gt)
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(EXTRA_METRICS)}")
    return figures


def compute_metrics(
    matrix: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    extra: Sequence[str] = (),
    beta: float = 1.0,
) -> dict[str, Any]:
    """The metrics.json dictionary of a C x C confusion matrix (rows ground truth, columns prediction).

    `extra` names optional metrics among EXTRA_METRICS ("dice", "fscore", "precision", "recall").
    """
    m = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != len(class_names) or m.shape[1] not in (m.shape[0], m.shape[0] + 1):
        raise ValueError(f"confusion matrix {m.shape} does not fit {len(class_names)} class names")
    figures = per_class_figures(m, extra, beta)
    total = int(m.sum())
    result: dict[str, Any] = {
        "aAcc": float(np.trace(split_void(m)[0]) / total) if total else None,
        "mIoU": _mean(figures["IoU"]),
        "mAcc": _mean(figures["Acc"]),
    }
    for key in figures:
        if key not in ("IoU", "Acc"):
            result[f"m{key}"] = _mean(figures[key])
    result["per_class"] = {
        name: {key: _value(values[index]) for key, values in figures.items()}
        for index, name in enumerate(class_names)
    }
    result["num_pixels"] = total
    return result


def parse_metric_names(text: str) -> tuple[str, ...]:
    """"dice,fscore" -> ("dice", "fscore"); "all" -> every one; an unknown name is a ConfigError."""
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if "all" in names:
        return EXTRA_METRICS
    unknown = [name for name in names if name not in EXTRA_METRICS]
    if unknown:
        raise ConfigError(f"--metrics: unknown metric(s) {', '.join(unknown)}; choose from {', '.join(EXTRA_METRICS)}")
    return tuple(dict.fromkeys(names))


def save_metrics(metrics: dict[str, Any], path: str | Path) -> None:
    """Write the metrics dictionary as indented JSON, atomically (null for undefined figures)."""
    from sceneparse.weights import atomic_write

    text = json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_metrics(path: str | Path) -> dict[str, Any]:
    """A metrics.json written by `save_metrics` (for plots and comparisons)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such metrics file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a metrics.json file ({exc})") from None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_table(metrics: dict[str, Any], title: str = "") -> str:
    """Per-class figures (in percent) as an aligned text table, with the summary line below.

    Undefined figures print as "-", so a class missing from the data is not mistaken for a failure.
    """
    per_class: dict[str, dict[str, float | None]] = metrics["per_class"]
    keys = list(next(iter(per_class.values())).keys()) if per_class else ["IoU", "Acc"]
    width = max([len("class"), *(len(name) for name in per_class)])
    lines = [title] if title else []
    header = f"{'class':<{width}}  " + "  ".join(f"{key:>9}" for key in keys)
    lines += [header, "-" * len(header)]
    for name, row in per_class.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{_percent(row[key]):>9}" for key in keys))
    lines.append("-" * len(header))
    summary = ["aAcc", "mIoU", "mAcc"] + [f"m{key}" for key in keys if key not in ("IoU", "Acc")]
    lines.append("  ".join(f"{name} {_percent(metrics.get(name))}" for name in summary))
    absent = [name for name, row in per_class.items() if row["IoU"] is None]
    if absent:
        lines.append(f"absent from prediction and ground truth (not in the means): {', '.join(absent)}")
    if metrics.get("cityscapes"):
        from sceneparse.evaluation.cityscapes_official import format_official

        lines += ["", format_official(metrics["cityscapes"])]
    return "\n".join(lines)
