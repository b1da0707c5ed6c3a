"""`sceneparse data check` finds each planted fault and names the file; a clean set passes.

Every test starts from `data synth` output (the real on-disk layout), plants one fault, and asserts
that exactly that file is reported with the right kind of problem, through the Python API, the
training-time quick check, and the command line's exit status.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sceneparse.cli import main
from sceneparse.config.schema import DataConfig
from sceneparse.data.check import check_dataset, quick_check
from sceneparse.data.dataset import build_dataset
from sceneparse.data.prepare import prepare
from sceneparse.data.registry import DATASETS
from sceneparse.data.synth import synthesize
from sceneparse.errors import DataError

N = 3
SIZE = 32


@pytest.fixture(scope="module")
def clean_ade(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean_ade")
    synthesize("ade20k", root, n=N, size=SIZE, seed=3)
    return root


@pytest.fixture
def ade(clean_ade, tmp_path) -> Path:
    """A private copy of the clean ADE20K set, free to damage."""
    return Path(shutil.copytree(clean_ade, tmp_path / "ade"))


def _train_labels(root: Path) -> list[Path]:
    return sorted((root / "annotations" / "training").glob("*.png"))


def _train_images(root: Path) -> list[Path]:
    return sorted((root / "images" / "training").glob("*.jpg"))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _put_value(path: Path, value: int) -> None:
    label = _png(path).copy()
    label[0, 0] = value
    Image.fromarray(label).save(path)


def test_clean_set_passes_with_correct_counts_and_frequencies(clean_ade):
    report = check_dataset("ade20k", clean_ade, "train", progress=False)
    assert report.ok, report.summary()
    assert report.num_images == report.num_labels == report.num_pairs == report.num_checked == N
    # the frequency table counts what the files hold: stored k -> class k - 1, stored 0 -> ignore
    raw = np.concatenate([_png(p).ravel() for p in _train_labels(clean_ade)]).astype(np.int64)
    expected = np.bincount(raw[raw > 0] - 1, minlength=150)
    np.testing.assert_array_equal(report.class_pixels, expected)
    assert report.ignore_pixels == int((raw == 0).sum())
    images_with = [set(np.unique(_png(p)).tolist()) for p in _train_labels(clean_ade)]
    for k in np.flatnonzero(expected)[:5]:
        assert report.class_images[k] == sum(int(k + 1) in values for values in images_with)
    text = report.summary()
    assert text.rstrip().endswith("OK") and "class frequencies" in text
    assert quick_check("ade20k", clean_ade, "train").ok


def _plant_corrupt_label(root: Path) -> Path:
    path = _train_labels(root)[1]
    _truncate(path)
    return path


def _plant_corrupt_image(root: Path) -> Path:
    path = _train_images(root)[0]
    _truncate(path)
    return path


def _plant_missing_label(root: Path) -> Path:
    path = _train_labels(root)[2]
    path.unlink()
    return path


def _plant_missing_image(root: Path) -> Path:
    image = _train_images(root)[1]
    image.unlink()
    return root / "annotations" / "training" / f"{image.stem}.png"


def _plant_size_mismatch(root: Path) -> Path:
    path = _train_labels(root)[0]
    label = _png(path)
    Image.fromarray(np.ascontiguousarray(label[:, : label.shape[1] // 2])).save(path)
    return path


def _plant_out_of_range(root: Path) -> Path:
    path = _train_labels(root)[1]
    _put_value(path, 200)  # ADE20K stores 0..150 (and 255 ignore)
    return path


def _plant_colour_label(root: Path) -> Path:
    path = _train_labels(root)[0]
    label = _png(path)
    Image.fromarray(np.stack([label] * 3, axis=-1)).save(path)
    return path


FAULTS = {
    "unreadable label": _plant_corrupt_label,
    "unreadable image": _plant_corrupt_image,
    "missing label": _plant_missing_label,
    "missing image": _plant_missing_image,
    "size mismatch": _plant_size_mismatch,
    "value out of range": _plant_out_of_range,
    "colour label": _plant_colour_label,
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_each_planted_fault_is_found_and_names_the_file(ade, kind):
    bad_file = FAULTS[kind](ade)
    report = check_dataset("ade20k", ade, "train", progress=False)
    assert not report.ok
    assert [(p.kind, Path(p.path).name) for p in report.errors] == [(kind, bad_file.name)]
    text = report.summary()
    assert bad_file.name in text and kind in text and "FAILED: 1 error" in text


def test_out_of_range_report_lists_the_values_per_file(ade):
    first, second = _train_labels(ade)[:2]
    _put_value(first, 200)
    _put_value(second, 151)
    report = check_dataset("ade20k", ade, "train", progress=False)
    assert report.out_of_range == {str(first): [200], str(second): [151]}
    assert "values 200" in report.summary() and "values 151" in report.summary()


def test_quick_check_and_training_refuse_impossible_labels_with_the_same_message(ade):
    bad_file = _plant_out_of_range(ade)
    full = check_dataset("ade20k", ade, "train", progress=False)
    with pytest.raises(DataError) as quick:
        quick_check("ade20k", ade, "train")
    assert full.error_message() in str(quick.value) and bad_file.name in str(quick.value)
    cfg = DataConfig(dataset="ade20k", root=str(ade), reduce_zero_label=True, crop_size=[32, 32], scale=[64, 32])
    with pytest.raises(DataError, match=bad_file.name):
        build_dataset(cfg, "train", train=True)
    assert len(build_dataset(cfg, "train", train=True, check=False)) == N  # the check can be skipped


def test_cityscapes_label_ids_read_as_train_ids_get_the_prepare_hint(tmp_path):
    synthesize("cityscapes", tmp_path, n=2, size=SIZE, seed=1)
    for src in tmp_path.glob("gtFine/*/*/*_gtFine_labelIds.png"):  # the well-known mistake: labelIds as trainIds
        shutil.copyfile(src, src.with_name(src.name.replace("_labelIds", "_labelTrainIds")))
    report = check_dataset("cityscapes", tmp_path, "train", progress=False)
    assert not report.ok and {p.kind for p in report.errors} == {"value out of range"}
    assert any("labelIds" in hint and "data prepare cityscapes" in hint for hint in report.hints)
    for path, values in report.out_of_range.items():
        assert max(values) <= 33 and min(values) >= 19 and path.endswith("_labelTrainIds.png")
    cfg = DataConfig(dataset="cityscapes", root=str(tmp_path), crop_size=[32, 32], scale=[128, 32])
    with pytest.raises(DataError, match="labelIds"):
        build_dataset(cfg, "train", train=True)
    for path in tmp_path.glob("gtFine/*/*/*_labelTrainIds.png"):
        path.unlink()
    prepare("cityscapes", tmp_path, workers=1, progress=False)
    assert check_dataset("cityscapes", tmp_path, "train", progress=False).ok


def test_ade20k_without_reduce_zero_label_is_an_error_with_a_hint(clean_ade):
    info = dataclasses.replace(DATASETS["ade20k"], reduce_zero_label=False)
    report = check_dataset(info, clean_ade, "train", progress=False)
    kinds = {p.kind for p in report.errors}
    assert "wrong reduce_zero_label" in kinds
    assert "reduce_zero_label = true" in report.error_message()
    stored = set(np.unique(np.concatenate([_png(p).ravel() for p in _train_labels(clean_ade)])).tolist())
    if 150 in stored:  # 150 classes read from 0: the stored 150 is out of range, and recognised as the 1-based encoding
        assert any("reduce_zero_label = true" in hint for hint in report.hints)


def test_already_reduced_ade20k_labels_get_a_hint(ade):
    for path in _train_labels(ade):
        raw = _png(path).astype(np.int64)
        Image.fromarray(np.where(raw == 0, 255, raw - 1).astype(np.uint8)).save(path)
    report = check_dataset("ade20k", ade, "train", progress=False)
    assert any("already reduced" in hint for hint in report.hints)


def test_unconverted_coco_stuff164k_maps_get_the_prepare_hint(tmp_path):
    synthesize("coco_stuff164k", tmp_path, n=2, size=48, seed=2)
    for src in list(tmp_path.glob("annotations/train2017/*.png")):
        shutil.copyfile(src, src.with_name(f"{src.stem}_labelTrainIds.png"))
    report = check_dataset("coco_stuff164k", tmp_path, "train", progress=False)
    assert not report.ok
    assert any("prepare coco_stuff164k" in hint for hint in report.hints)


def test_missing_labels_of_a_raw_release_say_how_to_make_them(tmp_path):
    synthesize("cityscapes", tmp_path, n=1, size=SIZE)
    report = check_dataset("cityscapes", tmp_path, "val", progress=False)
    missing = [p for p in report.errors if p.kind == "missing label"]
    assert len(missing) == report.num_images == 1 and missing[0].path.endswith("_gtFine_labelTrainIds.png")
    assert any("data prepare cityscapes" in hint for hint in report.hints)


# ---------------------------------------------------------------- the command line


def test_cli_exit_status_is_zero_for_a_clean_set_and_one_for_a_fault(ade, capsys):
    assert main(["data", "check", "ade20k", str(ade), "--split", "train", "--workers", "1"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")
    bad_file = _plant_size_mismatch(ade)
    assert main(["data", "check", "ade20k", str(ade), "--split", "train", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "size mismatch" in out and bad_file.name in out
    assert main(["data", "check", "ade20k", str(ade), "--split", "val", "--quick", "--workers", "1"]) == 0


def test_cli_wrong_reduce_zero_label_and_missing_root_fail(clean_ade, tmp_path, capsys):
    assert main(["data", "check", "ade20k", str(clean_ade), "--no-reduce-zero-label", "--workers", "1"]) == 1
    assert "reduce_zero_label" in capsys.readouterr().out
    assert main(["data", "check", "ade20k", str(tmp_path / "nowhere"), "--workers", "1"]) == 1
    assert "nowhere" in capsys.readouterr().out


@pytest.mark.parametrize("action, words", [
    ("synth", ["NAME", "OUT_ROOT", "--n", "--size", "--seed", "examples"]),
    ("prepare", ["NAME", "RAW_ROOT", "OUT_ROOT", "idempotent", "labelTrainIds", "examples"]),
    ("check", ["NAME", "ROOT", "--split", "--quick", "Exit status", "examples"]),
])
def test_data_actions_have_a_helpful_help(action, words, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["data", action, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    missing = [word for word in words if word not in out]
    assert not missing, f"`sceneparse data {action} --help` does not mention {missing}"
