"""Prediction encodings told from the values, decoded to training ids; per-image scores by their formula."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from sceneparse.data.files import write_png
from sceneparse.data.registry import dataset_info
from sceneparse.errors import DataError
from sceneparse.evaluation import pred_encoding as enc
from sceneparse.evaluation.per_image import PerImageScores, score_image


def _files(tmp_path: Path, *arrays: list[list[int]]) -> list[Path]:
    paths = []
    for index, values in enumerate(arrays):
        path = tmp_path / f"p{index}.png"
        write_png(path, np.array(values, dtype=np.uint8))
        paths.append(path)
    return paths


def test_cityscapes_label_ids_train_ids_and_ambiguity(tmp_path: Path) -> None:
    info = dataset_info("cityscapes")
    assert enc.detect_encoding(info, _files(tmp_path, [[7, 8]], [[26, 23]]), False) == enc.LABEL_IDS
    assert enc.detect_encoding(info, _files(tmp_path, [[0, 1]], [[2, 255]]), False) == enc.TRAIN_IDS
    with pytest.raises(DataError, match="--encoding"):
        enc.detect_encoding(info, _files(tmp_path, [[7, 8]], [[11, 0]]), False)
    # labelIds -> training ids: evaluated labels keep their class, the others are void
    assert enc.to_train_ids(np.array([7, 26, 0, 9, 29]), enc.LABEL_IDS, info, tmp_path).tolist() == [0, 13, 255, 255,
                                                                                                     255]
    with pytest.raises(DataError, match=r"\[40\]"):
        enc.to_train_ids(np.array([7, 40]), enc.LABEL_IDS, info, tmp_path / "x.png")
    with pytest.raises(DataError, match=r"\[19\]"):
        enc.to_train_ids(np.array([0, 19]), enc.TRAIN_IDS, info, tmp_path / "x.png")


def test_ade20k_scene_parsing_and_training_ids(tmp_path: Path) -> None:
    info = dataset_info("ade20k")
    assert enc.detect_encoding(info, _files(tmp_path, [[1, 150]]), False) == enc.ONE_BASED
    assert enc.detect_encoding(info, _files(tmp_path, [[0, 149]]), False) == enc.TRAIN_IDS
    with pytest.raises(DataError, match="one_based"):
        enc.detect_encoding(info, _files(tmp_path, [[3, 4]]), False)
    assert enc.to_train_ids(np.array([0, 1, 150]), enc.ONE_BASED, info, tmp_path).tolist() == [255, 0, 149]
    with pytest.raises(DataError, match="does not apply"):
        enc.check_encoding(info, enc.LABEL_IDS)


def test_voc_is_training_ids_only(tmp_path: Path) -> None:
    assert enc.detect_encoding(dataset_info("voc"), _files(tmp_path, [[0, 15]]), False) == enc.TRAIN_IDS


def test_per_image_scores_and_worst_first(tmp_path: Path) -> None:
    names = ("a", "b", "c")
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [255, 2, 0, 0]])
    row = score_image("img", pred, label, names)
    # a: tp 1, gt 2, pred 1 -> 1/2; b: tp 2, gt 2, pred 3 -> 2/3; c: tp 1, gt 2 (one void), pred 1 -> 1/2
    assert row.mIoU == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert row.aAcc == pytest.approx(4 / 6) and row.pixels == 6 and row.classes == 3
    assert row.worst_class in ("a", "c") and row.worst_class_IoU == pytest.approx(0.5)
    scores = PerImageScores()
    scores.add(row)
    scores.add(score_image("perfect", label, label, names))
    scores.add(score_image("empty", pred, np.full_like(label, 255), names))
    rows = list(csv.DictReader(scores.write_csv(tmp_path / "x.csv").open()))
    assert [r["image"] for r in rows] == ["img", "perfect", "empty"]
    assert rows[2]["mIoU"] == "" and rows[1]["mIoU"] == "1.000000"
