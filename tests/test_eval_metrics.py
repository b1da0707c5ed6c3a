"""Metrics from the confusion matrix agree with a straightforward per-class numpy count."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sceneparse.data.files import encode_label
from sceneparse.errors import ConfigError
from sceneparse.evaluation.confusion import ConfusionMatrix
from sceneparse.evaluation.metrics import (
    EXTRA_METRICS,
    compute_metrics,
    format_table,
    load_metrics,
    parse_metric_names,
    save_metrics,
)

NAMES = ("road", "car", "tree", "absent", "ghost", "sky")  # "absent": nowhere; "ghost": predicted only


def reference(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, num_classes: int, beta: float = 1.0) -> dict:
    """Per-class counts by boolean masks, one class at a time (no confusion matrix)."""
    def ratio(num: float, den: float) -> float | None:
        return num / den if den > 0 else None

    per_class = {}
    for c in range(num_classes):
        tp = float(np.sum((pred == c) & (gt == c) & valid))
        fp = float(np.sum((pred == c) & (gt != c) & valid))
        fn = float(np.sum((pred != c) & (gt == c) & valid))
        b2 = beta * beta
        precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
        # mmsegmentation's F: from precision and recall, undefined where either is or both are 0
        fscore = None
        if precision is not None and recall is not None:
            fscore = ratio((1 + b2) * precision * recall, b2 * precision + recall)
        per_class[c] = {
            "IoU": ratio(tp, tp + fp + fn),
            "Acc": ratio(tp, tp + fn),
            "Dice": ratio(2 * tp, 2 * tp + fp + fn),
            "Fscore": fscore,
            "Precision": precision,
            "Recall": recall,
        }
    correct = float(np.sum((pred == gt) & valid))
    return {"aAcc": correct / float(valid.sum()), "per_class": per_class}


def mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def random_case(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels over NAMES: class 3 appears nowhere, class 4 only in predictions."""
    gt = rng.choice([0, 1, 2, 5], size=shape)
    pred = np.where(rng.random(shape) < 0.6, gt, rng.choice([0, 1, 2, 4, 5], size=shape))
    gt[rng.random(shape) < 0.15] = 255  # ignored pixels
    return pred, gt


def assert_close(actual: float | None, expected: float | None) -> None:
    if expected is None:
        assert actual is None
    else:
        assert actual is not None and math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)


def check_against_reference(metrics: dict, ref: dict, names: tuple[str, ...]) -> None:
    assert_close(metrics["aAcc"], ref["aAcc"])
    for key in ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall"):
        for index, name in enumerate(names):
            assert_close(metrics["per_class"][name][key], ref["per_class"][index][key])
        mean_key = {"IoU": "mIoU", "Acc": "mAcc"}.get(key, f"m{key}")
        assert_close(metrics[mean_key], mean_defined([ref["per_class"][i][key] for i in range(len(names))]))


def test_metrics_equal_numpy_reference_with_ignore_and_absent_classes() -> None:
    rng = np.random.default_rng(3)
    pred, gt = random_case(rng, (4, 37, 53))
    matrix = ConfusionMatrix(len(NAMES), ignore_index=255)
    for p, g in zip(pred, gt, strict=True):  # several updates accumulate
        matrix.update(torch.from_numpy(p), torch.from_numpy(g))
    metrics = compute_metrics(matrix.matrix, NAMES, EXTRA_METRICS)
    check_against_reference(metrics, reference(pred, gt, gt != 255, len(NAMES)), NAMES)
    assert metrics["per_class"]["absent"]["IoU"] is None and metrics["per_class"]["absent"]["Acc"] is None
    assert metrics["per_class"]["ghost"]["IoU"] == 0.0 and metrics["per_class"]["ghost"]["Acc"] is None
    assert metrics["num_pixels"] == int((gt != 255).sum())


def test_fscore_with_beta_matches_reference() -> None:
    rng = np.random.default_rng(4)
    pred, gt = random_case(rng, (29, 31))
    matrix = ConfusionMatrix(len(NAMES))
    matrix.update(torch.from_numpy(pred), torch.from_numpy(gt))
    metrics = compute_metrics(matrix.matrix, NAMES, ("fscore",), beta=2.0)
    ref = reference(pred, gt, gt != 255, len(NAMES), beta=2.0)
    for index, name in enumerate(NAMES):
        assert_close(metrics["per_class"][name]["Fscore"], ref["per_class"][index]["Fscore"])
    assert "mDice" not in metrics and "Dice" not in metrics["per_class"]["road"]


def test_reduce_zero_label_matches_reference_on_raw_labels() -> None:
    rng = np.random.default_rng(5)
    names = NAMES[:5]
    raw = rng.integers(0, 6, size=(41, 47)).astype(np.uint8)  # stored: 0 = other, class k as k + 1
    raw[raw == 4] = 3  # stored 4 (class 3) never occurs
    raw[rng.random(raw.shape) < 0.05] = 255
    pred = rng.integers(0, 5, size=raw.shape)
    label = encode_label(raw, reduce_zero_label=True, stored_ignore=255, ignore_index=255)
    matrix = ConfusionMatrix(len(names))
    matrix.update(torch.from_numpy(pred), torch.from_numpy(label.astype(np.int64)))
    metrics = compute_metrics(matrix.matrix, names, EXTRA_METRICS)
    valid = (raw != 0) & (raw != 255)
    check_against_reference(metrics, reference(pred, raw.astype(np.int64) - 1, valid, len(names)), names)


def test_labels_outside_the_classes_are_refused() -> None:
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"\[7\]"):
        matrix.update(torch.tensor([0, 1, 2]), torch.tensor([0, 7, 255]))
    with pytest.raises(ValueError, match=r"predicted values \[9\]"):
        matrix.update(torch.tensor([0, 9, 2]), torch.tensor([0, 1, 255]))


def test_void_predictions_are_false_negatives_only() -> None:
    """A pixel predicted 255 counts against its ground-truth class's recall and IoU, and is no
    class's false positive (cityscapesScripts' and mmsegmentation's counting)."""
    pred = np.array([0, 255, 1, 255, 1])
    gt = np.array([0, 0, 1, 1, 255])
    matrix = ConfusionMatrix(2, void_column=True)
    matrix.update(torch.from_numpy(pred), torch.from_numpy(gt))
    metrics = compute_metrics(matrix.matrix, ("a", "b"), EXTRA_METRICS)
    assert metrics["per_class"]["a"]["IoU"] == 0.5 and metrics["per_class"]["a"]["Precision"] == 1.0
    assert metrics["per_class"]["b"]["Recall"] == 0.5 and metrics["aAcc"] == 0.5


def test_metrics_json_has_nulls_and_means_over_defined(tmp_path) -> None:
    matrix = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])  # class 2 absent everywhere
    metrics = compute_metrics(matrix, ("a", "b", "c"))
    save_metrics(metrics, tmp_path / "metrics.json")
    raw = json.loads((tmp_path / "metrics.json").read_text())
    assert raw["per_class"]["c"] == {"IoU": None, "Acc": None}
    assert math.isclose(raw["mIoU"], (5 / 8 + 2 / 5) / 2)
    assert load_metrics(tmp_path / "metrics.json") == metrics
    assert all(0.0 <= v <= 1.0 for v in (raw["aAcc"], raw["mIoU"], raw["mAcc"]))


def test_table_marks_absent_classes() -> None:
    metrics = compute_metrics(np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]]), ("road", "car", "boat"), ("dice",))
    table = format_table(metrics, "title line")
    lines = table.splitlines()
    assert lines[0] == "title line"
    boat = next(line for line in lines if line.startswith("boat"))
    assert boat.split()[1:] == ["-", "-", "-"]
    assert "75.00" in next(line for line in lines if line.startswith("road"))  # IoU 3/4 in percent
    assert lines[-1].endswith("boat")


def test_metric_names_are_checked() -> None:
    assert parse_metric_names("Dice, fscore,dice") == ("dice", "fscore")
    assert parse_metric_names("") == ()
    assert parse_metric_names("all") == EXTRA_METRICS
    with pytest.raises(ConfigError, match="kappa"):
        parse_metric_names("dice,kappa")
