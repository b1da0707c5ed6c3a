"""A user's own folder dataset: images/ + labels/ + a classes TOML, read without writing code.

Both layouts (one folder per split, or flat folders with splits/<split>.txt), the TOML's optional
keys (palette, ignore_index, reduce_zero_label), and a clear error naming the file and the key
for every mistake in the TOML.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sceneparse.cli import main
from sceneparse.config.schema import DataConfig
from sceneparse.data.check import check_dataset
from sceneparse.data.custom import load_custom_info
from sceneparse.data.dataset import build_dataset
from sceneparse.data.registry import dataset_info
from sceneparse.data.synth import CUSTOM_CLASSES, synthesize
from sceneparse.errors import DataError


def _write_pair(root: Path, image_rel: str, label_rel: str, label: np.ndarray) -> None:
    for rel, array in ((image_rel, np.stack([label.astype(np.uint8)] * 3, -1)), (label_rel, label.astype(np.uint8))):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / rel)


def test_synthesised_custom_set_reads_with_its_toml(tmp_path):
    synthesize("custom", tmp_path, n=2, size=32, seed=0)
    info = dataset_info("custom", tmp_path / "classes.toml")
    assert info.classes == tuple(CUSTOM_CLASSES) and len(info.palette) == len(CUSTOM_CLASSES)
    cfg = DataConfig(dataset="custom", root=str(tmp_path), crop_size=[32, 32], scale=[64, 32])  # TOML found in root
    dataset = build_dataset(cfg, "train", train=True)
    assert len(dataset) == 2
    label = dataset[0]["label"]
    assert label.shape == (32, 32) and set(label.unique().tolist()) <= set(range(len(CUSTOM_CLASSES))) | {255}
    assert check_dataset(info, tmp_path, "val", progress=False).ok


def test_flat_layout_with_split_lists_and_toml_options(tmp_path):
    (tmp_path / "meta.toml").write_text(
        'name = "fields"\nclasses = ["crop", "weed"]\npalette = [[0, 200, 0], [200, 0, 0]]\n'
        "ignore_index = 9\nreduce_zero_label = true\n"
    )
    stored = np.array([[0, 1, 2], [2, 9, 1]], dtype=np.uint8)  # 0 = other, 1 = crop, 2 = weed, 9 = ignore
    for name in ("a", "b", "c"):
        _write_pair(tmp_path, f"images/{name}.png", f"labels/{name}.png", stored)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("a\nc\n")
    (tmp_path / "splits" / "val.txt").write_text("b\n")
    info = load_custom_info(tmp_path / "meta.toml")
    assert info.title == "fields" and info.palette == ((0, 200, 0), (200, 0, 0)) and info.ignore_index == 9
    assert [p.key for p in info.keyed_pairs(tmp_path, "train")] == ["a", "c"]
    cfg = DataConfig(dataset="custom", root=str(tmp_path), custom_classes_file=str(tmp_path / "meta.toml"),
                     scale=[3, 2], ignore_index=255)
    label = build_dataset(cfg, "val", train=False)[0]["label"].numpy()
    np.testing.assert_array_equal(label, [[255, 0, 1], [1, 255, 0]])


def test_custom_check_recognises_one_based_labels(tmp_path):
    (tmp_path / "classes.toml").write_text('classes = ["a", "b"]\n')
    _write_pair(tmp_path, "images/train/x.png", "labels/train/x.png", np.array([[0, 1], [2, 2]]))
    report = check_dataset(dataset_info("custom", tmp_path / "classes.toml"), tmp_path, "train", progress=False)
    assert [(p.kind, Path(p.path).name) for p in report.errors] == [("value out of range", "x.png")]
    assert any("reduce_zero_label = true" in hint for hint in report.hints)
    assert main(["data", "check", "custom", str(tmp_path), "--workers", "1"]) == 1


@pytest.mark.parametrize("text, key", [
    ('classes = ["a"]\ncolour = 1\n', "colour"),
    ("classes = []\n", "classes"),
    ('classes = ["a", "a"]\n', "twice"),
    ('classes = ["a", "b"]\nignore_index = 1\n', "ignore_index"),
    ('classes = ["a", "b"]\nignore_index = -3\n', "ignore_index"),
    ('classes = ["a", "b"]\npalette = [[1, 2, 3]]\n', "palette"),
    ('classes = ["a", "b"]\npalette = [[1, 2, 3], [1, 2, 300]]\n', "palette"),
    ('classes = ["a"]\nreduce_zero_label = "yes"\n', "reduce_zero_label"),
    ("classes = [\n", "not valid TOML"),
])
def test_toml_mistakes_name_the_file_and_the_key(tmp_path, text, key):
    path = tmp_path / "classes.toml"
    path.write_text(text)
    with pytest.raises(DataError) as error:
        load_custom_info(path)
    assert str(path) in str(error.value) and key in str(error.value)


def test_missing_toml_and_missing_folders_say_what_to_provide(tmp_path):
    with pytest.raises(DataError, match="classes file not found"):
        load_custom_info(tmp_path / "nope.toml")
    (tmp_path / "classes.toml").write_text('classes = ["a", "b"]\n')
    info = dataset_info("custom", tmp_path / "classes.toml")
    with pytest.raises(DataError, match="splits/train.txt"):
        info.pairs(tmp_path, "train")
