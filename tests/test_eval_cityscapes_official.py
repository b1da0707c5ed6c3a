"""`sceneparse score` on Cityscapes equals cityscapesScripts' evalPixelLevelSemanticLabeling on the same files.

The official evaluator (the `cityscapesscripts` package, a test dependency) scores a tiny Cityscapes
layout made here by hand: labelIds and instanceIds ground truth with people, riders, cars, a caravan
(an instance class that is not evaluated), a crowd region of cars (instanceIds value 26, no
instance), void labels, a class absent from both sides (train), a class predicted but absent from
the ground truth (bus) and void predictions. Class IoU, category IoU and both iIoU must agree to 1e-6.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sceneparse.cli import main
from sceneparse.data.files import read_label, write_png
from sceneparse.data.idmaps import cityscapes_lut
from sceneparse.data.registry import dataset_info
from sceneparse.errors import DataError
from sceneparse.evaluation.cityscapes_official import AVG_CLASS_SIZE, CATEGORIES, official_metrics
from sceneparse.evaluation.score import score_folder

ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
FRAMES = ("frankfurt_000000_000294", "frankfurt_000001_000538", "lindau_000003_000019")
H, W = 40, 56


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """labelIds and instanceIds of one image: stuff blocks, then instances pasted on top."""
    stuff = np.array([7, 8, 11, 17, 21, 23, 0, 9, 4])  # road ... sky, and void / parking / static
    blocks = rng.choice(stuff, size=(5, 7))
    label = np.kron(blocks, np.ones((8, 8), dtype=np.int64))
    instances = label.copy()
    boxes = [(24, 1), (24, 2), (24, 3), (25, 1), (26, 1), (26, 2), (29, 1)]  # person x3, rider, car x2, caravan
    for label_id, k in boxes:
        h, w = int(rng.integers(3, 14)), int(rng.integers(3, 16))
        y, x = int(rng.integers(0, H - h)), int(rng.integers(0, W - w))
        label[y:y + h, x:x + w] = label_id
        instances[y:y + h, x:x + w] = label_id * 1000 + k
    y, x = int(rng.integers(0, H - 6)), int(rng.integers(0, W - 10))
    label[y:y + 6, x:x + 10] = 26  # a crowd of cars: labelled car, no instance id
    instances[y:y + 6, x:x + 10] = 26
    return label, instances


def _predict(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """labelIds predictions: mostly right, some noise, void (0), caravan on cars, and a bus nowhere labelled."""
    pred = np.where(label == 9, 7, label)  # parking read as road
    pred = np.where(np.isin(pred, [0, 4]), 8, pred)
    noise = rng.random(label.shape) < 0.2
    pred[noise] = rng.choice([7, 8, 11, 17, 21, 23, 24, 25, 26, 33], size=int(noise.sum()))
    pred[rng.random(label.shape) < 0.05] = 0  # the model abstains
    pred[(label == 26) & (rng.random(label.shape) < 0.3)] = 29  # caravan: vehicle, but not an evaluated class
    pred[:3, :5] = 28  # bus, absent from every ground truth
    pred[pred == 31] = 7  # train: absent from both sides
    return pred


@pytest.fixture(autouse=True)
def numpy_in1d(monkeypatch: pytest.MonkeyPatch) -> None:
    """cityscapesScripts 2.3 calls np.in1d, which numpy 2.4 removed; np.isin on the flattened
    array is what in1d was (the caller reshapes the result)."""
    if not hasattr(np, "in1d"):
        monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(np.ravel(a), b, invert=invert),
                            raising=False)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """root/gtFine/val/<city>/*_gtFine_{labelIds,instanceIds}.png, and predictions as labelIds in a flat folder."""
    base = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(16)
    flat = base / "results"
    for frame in FRAMES:
        city = frame.split("_")[0]
        label, instances = _scene(rng)
        gt = base / "root" / "gtFine" / "val" / city
        write_png(gt / f"{frame}_gtFine_labelIds.png", label.astype(np.uint8))
        write_png(gt / f"{frame}_gtFine_instanceIds.png", instances.astype(np.int32))
        write_png(flat / f"{frame}_leftImg8bit.png", _predict(rng, label).astype(np.uint8))
    return {"root": base / "root", "flat": flat, "base": base}


def official(gt_files: list[Path], pred_folder: Path, tmp: Path) -> dict:
    """cityscapesScripts' result dictionary, predictions found by its own matching (`getPrediction`),
    its module-level settings replaced by a quiet local copy."""
    args = ev.CArgs()
    vars(args).update(vars(ev.args))
    args.quiet, args.JSONOutput, args.colorized = True, False, False
    args.evalInstLevelScore, args.evalPixelAccuracy = True, False
    args.exportFile = str(tmp / "official.json")
    args.predictionPath, args.predictionWalk = str(pred_folder), None
    pred_files = [ev.getPrediction(args, str(gt)) for gt in gt_files]
    return ev.evaluateImgLists(pred_files, [str(p) for p in gt_files], args)


def _close(ours: float | None, theirs: float) -> None:
    if math.isnan(theirs):
        assert ours is None
    else:
        assert ours is not None and ours == pytest.approx(theirs, abs=1e-6)


def compare(section: dict, reference: dict) -> None:
    for name, scores in section["classes"].items():
        _close(scores["IoU"], reference["classScores"][name])
        if name in AVG_CLASS_SIZE:
            _close(scores["iIoU"], reference["classInstScores"][name])
    for name, scores in section["categories"].items():
        _close(scores["IoU"], reference["categoryScores"][name])
        _close(scores["iIoU"], reference["categoryInstScores"][name])
    assert math.isnan(reference["categoryScores"]["void"]) and "void" not in section["categories"]
    _close(section["IoU_class"], reference["averageScoreClasses"])
    _close(section["iIoU_class"], reference["averageScoreInstClasses"])
    _close(section["IoU_category"], reference["averageScoreCategories"])
    _close(section["iIoU_category"], reference["averageScoreInstCategories"])


def _gt_files(root: Path) -> list[Path]:
    return sorted((root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))


def _frame(path: Path) -> str:
    return "_".join(path.name.split("_")[:3])


def test_label_ids_flat_folder_equals_cityscapes_scripts(layout: dict[str, Path], tmp_path: Path) -> None:
    gt_files = _gt_files(layout["root"])
    reference = official(gt_files, layout["flat"], tmp_path)
    result = score_folder(dataset_info("cityscapes"), layout["flat"], layout["root"], "val", progress=False)
    assert result.encoding == "label_ids" and result.count == len(FRAMES)
    section = official_metrics(result.official)
    assert section["instances"]
    compare(section, reference)
    # the case the test is for: bus predicted, never labelled (IoU 0); train nowhere (undefined)
    assert section["classes"]["bus"]["IoU"] == 0.0 and section["classes"]["train"]["IoU"] is None


def test_train_ids_with_void_in_city_folders_equal_cityscapes_scripts(layout: dict[str, Path], tmp_path: Path) -> None:
    """What `test --save-pred` writes: training ids in city folders, 255 where the model abstains."""
    gt_files = _gt_files(layout["root"])
    preds = tmp_path / "pred"
    for gt in gt_files:
        flat = layout["flat"] / f"{_frame(gt)}_leftImg8bit.png"
        train_ids = cityscapes_lut()[read_label(flat)]  # void labels (0, caravan, ...) become 255
        write_png(preds / gt.parent.name / f"{_frame(gt)}.png", train_ids)
    assert any((read_label(p) == 255).any() for p in preds.rglob("*.png"))
    # the official tool reads labelIds: the same predictions with 255 written as 0 ("unlabeled")
    as_label_ids = tmp_path / "as_label_ids"
    lut = np.zeros(256, dtype=np.uint8)
    for train_id, label_id in enumerate((7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)):
        lut[train_id] = label_id
    for path in preds.rglob("*.png"):
        write_png(as_label_ids / f"{path.stem}_leftImg8bit.png", lut[read_label(path)])
    reference = official(gt_files, as_label_ids, tmp_path)
    result = score_folder(dataset_info("cityscapes"), preds, layout["root"], "val", progress=False)
    assert result.encoding == "train_ids"
    section = official_metrics(result.official)
    for name, scores in section["classes"].items():
        _close(scores["IoU"], reference["classScores"][name])
        _close(scores["iIoU"] if name in AVG_CLASS_SIZE else None, reference["classInstScores"][name])
    _close(section["iIoU_category"], reference["averageScoreInstCategories"])
    _close(section["IoU_category"], reference["averageScoreCategories"])


def test_score_cli_reports_official_metrics_and_per_image(layout: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    per_image = tmp_path / "images.csv"
    status = main(["score", str(layout["flat"]), str(layout["root"]), "--dataset", "cityscapes", "--out", str(out),
                   "--no-figures", "--per-image", str(per_image), "--metrics", "all"])
    assert status == 0
    metrics = json.loads(out.read_text())
    gt_files = _gt_files(layout["root"])
    reference = official(gt_files, layout["flat"], tmp_path)
    compare(metrics["cityscapes"], reference)
    # the plain per-class IoU (training ids, void predictions as false negatives) is the official class IoU
    for name, row in metrics["per_class"].items():
        _close(row["IoU"], reference["classScores"][name])
    _close(metrics["mIoU"], reference["averageScoreClasses"])
    rows = list(csv.DictReader(per_image.open()))
    assert len(rows) == len(FRAMES)
    ious = [float(r["mIoU"]) for r in rows]
    assert ious == sorted(ious)  # worst first
    assert (tmp_path / "metrics.txt").read_text().count("iIoU") >= 1


def test_categories_and_weights_are_cityscapes_scripts_own() -> None:
    from cityscapesscripts.helpers.labels import category2labels

    for name, ids in CATEGORIES:
        assert sorted(ids) == sorted(label.id for label in category2labels[name] if label.id >= 0)
    assert ev.args.avgClassSize == AVG_CLASS_SIZE


def test_two_predictions_for_one_image_are_refused(layout: dict[str, Path], tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    for path in layout["flat"].glob("*.png"):
        write_png(preds / path.name, read_label(path))
    first = sorted(preds.glob("*.png"))[0]
    write_png(preds / "more" / first.name.replace("leftImg8bit", "pred"), read_label(first))
    with pytest.raises(DataError, match="2 predictions for"):
        score_folder(dataset_info("cityscapes"), preds, layout["root"], "val", progress=False)


def test_wrong_size_missing_and_unknown_values_are_clear_errors(layout: dict[str, Path], tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    files = sorted(layout["flat"].glob("*.png"))
    for path in files[1:]:
        write_png(preds / path.name, read_label(path))
    with pytest.raises(DataError, match="1 of 3 ground-truth samples have no prediction"):
        score_folder(dataset_info("cityscapes"), preds, layout["root"], "val", progress=False)
    write_png(preds / files[0].name, np.zeros((H // 2, W // 2), dtype=np.uint8) + 7)
    with pytest.raises(DataError, match="at the label's full size"):
        score_folder(dataset_info("cityscapes"), preds, layout["root"], "val", progress=False)
    write_png(preds / files[0].name, np.full((H, W), 77, dtype=np.uint8))
    with pytest.raises(DataError, match="77"):
        score_folder(dataset_info("cityscapes"), preds, layout["root"], "val", progress=False)
    for path in files:  # road and sidewalk only: labelIds 7, 8 or training ids 7, 8 alike
        write_png(preds / path.name, np.where(read_label(path) % 2 == 0, 7, 8).astype(np.uint8))
    with pytest.raises(DataError, match="--encoding"):
        score_folder(dataset_info("cityscapes"), preds, layout["root"], "val", progress=False)
    result = score_folder(dataset_info("cityscapes"), preds, layout["root"], "val", progress=False,
                          encoding="label_ids")
    assert result.encoding == "label_ids"
