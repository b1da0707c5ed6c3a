"""Every metric equals mmsegmentation's IoUMetric on the same predictions.

The reference (tests/fixtures/mmseg_metrics/iou_metric.npz) was made by mmsegmentation 1.2.2 itself:
tools/fixtures/make_mmseg_metrics.py. It holds 255 predictions, ignored labels, a class absent from
both sides, a class only predicted and a class never predicted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sceneparse.evaluation.confusion import ConfusionMatrix
from sceneparse.evaluation.metrics import EXTRA_METRICS, compute_metrics

FIXTURE = Path(__file__).parent / "fixtures" / "mmseg_metrics" / "iou_metric.npz"
KEYS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_all_metrics_equal_mmseg_iou_metric(reference: dict[str, np.ndarray]) -> None:
    num_classes = int(reference["num_classes"])
    names = tuple(f"c{i}" for i in range(num_classes))
    matrix = ConfusionMatrix(num_classes, ignore_index=255, void_column=True)
    for pred, label in zip(reference["preds"], reference["labels"], strict=True):
        matrix.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(label.astype(np.int64)))
    metrics = compute_metrics(matrix.matrix, names, EXTRA_METRICS)
    assert metrics["aAcc"] == pytest.approx(float(reference["aAcc"]), abs=1e-6)
    for key in KEYS:
        expected = reference[f"class_{key}"]
        actual = np.array([np.nan if metrics["per_class"][n][key] is None else metrics["per_class"][n][key]
                           for n in names])
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"undefined {key}")
        np.testing.assert_allclose(actual[~np.isnan(actual)], expected[~np.isnan(expected)], atol=1e-6)
        assert metrics[f"m{key}"] == pytest.approx(float(reference[f"mean_{key}"]), abs=1e-6)
    # the summary mmseg prints (percent, rounded to 0.01) agrees too
    for key, value in zip(reference["summary_keys"], reference["summary_values"], strict=True):
        assert round(100 * metrics[str(key)], 2) == pytest.approx(float(value), abs=0.011)


def test_the_fixture_holds_the_special_cases(reference: dict[str, np.ndarray]) -> None:
    """A guard that the reference still exercises what it is for."""
    preds, labels = reference["preds"], reference["labels"]
    assert (preds == 255).any() and (labels == 255).any()
    assert not (preds == 5).any() and not (labels == 5).any()  # absent from both sides
    assert (preds == 6).any() and not (labels == 6).any()  # predicted only
    assert np.isnan(reference["class_Fscore"][4])  # never predicted: precision undefined
