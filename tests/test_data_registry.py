"""Every reader, on `data synth` output in its layout (converted where the recipes need it), yields
the right number of pairs, the right class count, and labels in range."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sceneparse.config.schema import DataConfig
from sceneparse.data.dataset import build_dataset, config_dataset_info
from sceneparse.data.prepare import prepare
from sceneparse.data.registry import DATASETS, dataset_info, pred_name
from sceneparse.data.synth import synthesize
from sceneparse.errors import DataError

N = 3  # images per split
SIZE = 48

# name -> (classes, {split: expected pairs}); class counts as the issue states them
EXPECTED = {
    "voc": (21, {"train": N, "val": N, "trainval": 2 * N}),
    "voc_aug": (21, {"train": N, "val": N}),  # synth: VOC train + SBD-only images add up to N
    "ade20k": (150, {"train": N, "val": N}),
    "cityscapes": (19, {"train": N, "val": N}),
    "pascal_context": (60, {"train": N, "val": N}),
    "pascal_context_59": (59, {"train": N, "val": N}),
    "coco_stuff10k": (171, {"train": N, "test": N}),
    "coco_stuff164k": (171, {"train": N, "val": N}),
    "dark_zurich": (19, {"val": N}),
    "night_driving": (19, {"test": N}),
    "custom": (5, {"train": N, "val": N}),
}


def _prepared(name, root):
    """Synthesise `name` and run its converter, as a user would."""
    synthesize(name, root, n=N, size=SIZE, seed=1)
    if name == "voc_aug":
        prepare(name, root / "benchmark_RELEASE", root, workers=1, progress=False)
    elif name in ("cityscapes", "pascal_context", "pascal_context_59", "coco_stuff10k", "coco_stuff164k"):
        prepare(name, root, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("readers")
    return {name: _prepared(name, base / name) for name in EXPECTED}


def test_every_dataset_is_covered():
    assert set(EXPECTED) == set(DATASETS) | {"custom"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reader_pairs_classes_and_label_range(name, roots):
    root = roots[name]
    info = dataset_info(name, root / "classes.toml" if name == "custom" else "")
    num_classes, split_sizes = EXPECTED[name]
    assert info.num_classes == num_classes == len(info.palette)
    for split, expected in split_sizes.items():
        pairs = info.keyed_pairs(root, split)
        assert len(pairs) == expected, split
        assert len({p.key for p in pairs}) == len(pairs)
        cfg = DataConfig(dataset=name, root=str(root), scale=[96, SIZE], reduce_zero_label=info.reduce_zero_label)
        dataset = build_dataset(cfg, split, train=False)
        seen = set()
        for index in range(len(dataset)):
            item = dataset[index]
            label = item["label"].numpy()
            values = set(np.unique(label).tolist())
            assert values <= set(range(num_classes)) | {255}, (split, values)
            assert item["image"].shape[0] == 3 and item["image"].dtype == torch.float32
            assert item["key"] == pairs[index].key and item["path"] == str(pairs[index].image)
            seen |= values
        assert seen - {255}, f"{name} {split}: every label is ignore"


def test_voc_aug_train_excludes_every_val_image(roots):
    root = roots["voc_aug"]
    info = DATASETS["voc_aug"]
    train = {p.key for p in info.keyed_pairs(root, "train")}
    val = {p.key for p in info.keyed_pairs(root, "val")}
    sbd_lists = [(root / "benchmark_RELEASE" / "dataset" / f).read_text().split() for f in ("train.txt", "val.txt")]
    assert val & {n for names in sbd_lists for n in names}, "the synthetic SBD must overlap VOC val for this test"
    assert not train & val
    voc_train = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert set(voc_train) <= train and len(train) > len(voc_train)
    # VOC train images keep their own (finer) labels; the rest come from SBD
    labels = {p.key: p.label.parent.name for p in info.keyed_pairs(root, "train")}
    assert {labels[k] for k in voc_train} == {"SegmentationClass"}
    assert {labels[k] for k in train - set(voc_train)} == {"SegmentationClassAug"}


def test_prediction_names_follow_sample_keys(roots):
    pairs = DATASETS["cityscapes"].keyed_pairs(roots["cityscapes"], "val")
    for pair in pairs:
        assert pair.image.name.startswith(pair.key.split("/")[-1])
        assert pred_name(pair.key) == pair.key + ".png"
        assert pair.key.startswith("frankfurt/")


def test_unprepared_raw_release_is_refused_with_the_prepare_command(tmp_path):
    synthesize("cityscapes", tmp_path, n=1, size=32)
    with pytest.raises(DataError, match="sceneparse data prepare cityscapes"):
        DATASETS["cityscapes"].pairs(tmp_path, "train")


def test_unknown_names_and_splits_say_what_exists(tmp_path):
    with pytest.raises(DataError, match="cityscapes"):
        dataset_info("citiscapes")
    with pytest.raises(DataError, match="train, val"):
        DATASETS["ade20k"].split_dir("testing")
    with pytest.raises(DataError, match="not found"):
        DATASETS["ade20k"].pairs(tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="custom_classes_file"):
        dataset_info("custom")


def test_split_aliases_map_to_release_folders(roots):
    info = DATASETS["ade20k"]
    assert info.pairs(roots["ade20k"], "train") == info.pairs(roots["ade20k"], "training")


def test_config_decides_reduce_zero_label_for_registry_datasets():
    info = config_dataset_info(DataConfig(dataset="ade20k", root="x", reduce_zero_label=False))
    assert info.reduce_zero_label is False and DATASETS["ade20k"].reduce_zero_label is True
