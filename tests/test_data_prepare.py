"""Each converter, on synthetic raw files covering every source id, produces exactly the mapped ids.

The expected mappings are written here independently of sceneparse.data.idmaps, in the form the
sources publish them (cityscapesScripts' trained ids, mmseg's unsorted Context list, COCO's gaps).
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from sceneparse.data.prepare import prepare
from sceneparse.data.registry import DATASETS
from sceneparse.data.synth import synthesize

# Cityscapes: the labelIds of the 19 trained classes, in trainId order; every other id is void (255).
CITYSCAPES_TRAINED_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
# COCO-Stuff stuffthingmaps values (0-based ids) that COCO never uses.
COCO_UNUSED_ZERO_BASED = [11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90]
# Pascal Context: background + the 59 classes' ids in the 459-class list, as mmseg's converter lists them.
CONTEXT_MAPPING = [
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454,
    295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355,
    85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115,
]


def _png(path):
    return np.asarray(Image.open(path))


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    synthesize("cityscapes", tmp_path, n=2, size=32)
    summary = prepare("cityscapes", tmp_path, workers=1, progress=False)
    sources = sorted(tmp_path.glob("gtFine/*/*/*_gtFine_labelIds.png"))
    assert summary.written == len(sources) == 4
    expected = {label_id: 255 for label_id in range(34)}
    expected.update({label_id: train_id for train_id, label_id in enumerate(CITYSCAPES_TRAINED_IDS)})
    seen = set()
    for src in sources:
        raw = _png(src)
        out = _png(src.with_name(src.name.replace("_labelIds", "_labelTrainIds")))
        seen |= set(np.unique(raw).tolist())
        np.testing.assert_array_equal(out, np.vectorize(expected.get)(raw))
    assert seen == set(range(34)), "synthetic raw labels must cover all 34 labelIds"


def test_prepare_is_idempotent_and_skips_finished_files(tmp_path):
    synthesize("cityscapes", tmp_path, n=1, size=32)
    prepare("cityscapes", tmp_path, workers=1, progress=False)
    done = sorted(tmp_path.glob("gtFine/*/*/*_labelTrainIds.png"))
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(done[0])  # a finished file is never redone
    again = prepare("cityscapes", tmp_path, workers=2, progress=False)
    assert again.written == 0 and again.skipped == len(done)
    assert _png(done[0]).shape == (4, 4)
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_cityscapes_into_another_root_links_the_images(tmp_path):
    synthesize("cityscapes", tmp_path / "raw", n=1, size=32)
    prepare("cityscapes", tmp_path / "raw", tmp_path / "out", workers=1, progress=False)
    pairs = DATASETS["cityscapes"].pairs(tmp_path / "out", "val")
    assert len(pairs) == 1 and all(path.is_file() for pair in pairs for path in pair)


def test_coco_stuff164k_stuffthingmaps_to_171_train_ids(tmp_path):
    synthesize("coco_stuff164k", tmp_path, n=3, size=48)
    prepare("coco_stuff164k", tmp_path, workers=2, progress=False)
    used = [v for v in range(182) if v not in COCO_UNUSED_ZERO_BASED]
    expected = {v: 255 for v in range(256)}
    expected.update({v: rank for rank, v in enumerate(used)})
    seen = set()
    for split in ("train2017", "val2017"):
        for src in (tmp_path / "annotations" / split).glob("*.png"):
            if src.name.endswith("_labelTrainIds.png"):
                continue
            raw = _png(src)
            seen |= set(np.unique(raw).tolist())
            out = _png(src.with_name(f"{src.stem}_labelTrainIds.png"))
            np.testing.assert_array_equal(out, np.vectorize(expected.get)(raw))
    assert seen == set(range(182)) | {255}, "synthetic raw labels must cover all 182 ids and 255"
    assert len(used) == 171


def test_coco_stuff10k_mat_to_png(tmp_path):
    synthesize("coco_stuff10k", tmp_path, n=3, size=48)
    prepare("coco_stuff10k", tmp_path, workers=1, progress=False)
    used = [i for i in range(1, 183) if i - 1 not in COCO_UNUSED_ZERO_BASED]
    expected = {i: 0 for i in range(183)}  # 0 unlabelled; unused ids unlabelled too
    expected.update({coco_id: rank + 1 for rank, coco_id in enumerate(used)})
    seen = set()
    for list_name, split in (("train", "train2014"), ("test", "test2014")):
        for name in (tmp_path / "imageLists" / f"{list_name}.txt").read_text().split():
            raw = loadmat(tmp_path / "annotations" / f"{name}.mat")["S"]
            seen |= set(np.unique(raw).tolist())
            out = _png(tmp_path / "annotations" / split / f"{name}_labelTrainIds.png")
            np.testing.assert_array_equal(out, np.vectorize(expected.get)(raw))
            assert (tmp_path / "images" / split / f"{name}.jpg").is_file()
    assert seen == set(range(183)), "synthetic .mat labels must cover 0 and all 182 ids"
    # read through the registry (reduce_zero_label): 171 classes and ignore
    for image, label in DATASETS["coco_stuff10k"].pairs(tmp_path, "train"):
        assert image.is_file() and _png(label).max() <= 171


def test_sbd_mat_to_segmentation_class_aug_and_lists(tmp_path):
    synthesize("voc_aug", tmp_path, n=4, size=32)
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    summary = prepare("voc_aug", tmp_path / "benchmark_RELEASE", tmp_path, workers=1, progress=False)
    mats = sorted((sbd / "cls").glob("*.mat"))
    assert summary.written == len(mats) > 0
    for mat in mats:
        expected = loadmat(mat)["GTcls"][0][0]["Segmentation"]  # read as mmseg's converter does
        np.testing.assert_array_equal(_png(tmp_path / "SegmentationClassAug" / f"{mat.stem}.png"), expected)
    lists = tmp_path / "ImageSets" / "Segmentation"
    voc_train, voc_val = ((lists / f).read_text().split() for f in ("train.txt", "val.txt"))
    sbd_all = (sbd / "train.txt").read_text().split() + (sbd / "val.txt").read_text().split()
    aug, trainaug = ((lists / f).read_text().split() for f in ("aug.txt", "trainaug.txt"))
    assert set(aug) == set(sbd_all) - set(voc_train) - set(voc_val)
    assert set(trainaug) == (set(voc_train) | set(sbd_all)) - set(voc_val)
    assert not set(trainaug) & set(voc_val)


@pytest.mark.parametrize("name", ["pascal_context", "pascal_context_59"])
def test_pascal_context_full_ids_to_60_and_59_classes(tmp_path, name):
    synthesize(name, tmp_path, n=4, size=64)
    prepare(name, tmp_path, workers=1, progress=False)
    mapping = np.sort(np.array(CONTEXT_MAPPING))
    expected60 = {source: 0 for source in range(460)}
    expected60.update({int(source): index for index, source in enumerate(mapping)})
    seen = set()
    for mat in (tmp_path / "trainval").glob("*.mat"):
        raw = loadmat(mat)["LabelMap"]
        seen |= set(np.unique(raw).tolist())
        out = _png(tmp_path / "SegmentationClassContext" / f"{mat.stem}.png")
        np.testing.assert_array_equal(out, np.vectorize(expected60.get)(raw))
    assert seen == set(range(460)), "synthetic labels must cover 0 and all 459 Context ids"
    for split in ("train", "val"):
        listed = (tmp_path / "ImageSets" / "SegmentationContext" / f"{split}.txt").read_text().split()
        assert listed == (tmp_path / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    # 59 classes: the same files, background ignored and classes shifted down (reduce_zero_label)
    from sceneparse.config.schema import DataConfig
    from sceneparse.data.dataset import build_dataset

    cfg = DataConfig(dataset="pascal_context_59", root=str(tmp_path), reduce_zero_label=True, scale=[64, 64])
    dataset = build_dataset(cfg, "val", train=False)
    for index in range(len(dataset)):
        raw60 = _png(dataset.samples[index].label)
        label = dataset[index]["label"].numpy()
        np.testing.assert_array_equal(label, np.where(raw60 == 0, 255, raw60.astype(np.int64) - 1))


@pytest.mark.parametrize("name", ["dark_zurich", "night_driving", "ade20k"])
def test_prepare_checks_datasets_that_need_no_conversion(tmp_path, name):
    synthesize(name, tmp_path, n=2, size=32)
    summary = prepare(name, tmp_path, workers=1, progress=False)
    assert summary.written == 0 and summary.reports and summary.ok
    (next(tmp_path.rglob("*.png")) if name != "ade20k" else next(tmp_path.rglob("annotations/*/*.png"))).unlink()
    assert not prepare(name, tmp_path, workers=1, progress=False).ok
