"""Format-only runs write what the benchmark servers take, and `score` reads it back to `test`'s numbers.

Cityscapes: labelIds under the images' names plus a zip, on a split without labels too; `score` of
those files on the labelled split gives `test`'s metrics, official iIoU included. ADE20K: the
SceneParsing format (1..150). VOC: results/VOC2012/Segmentation/comp6_test_cls/ and a tar.gz.
"""
from __future__ import annotations

import csv
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sceneparse.cli import main
from sceneparse.config import load_preset
from sceneparse.data.files import read_label, write_png
from sceneparse.data.synth import synthesize
from tests.test_eval_cli import tiny_weights

SMALL = ["model.backbone.depth=18", "model.backbone.base_channels=8", "model.backbone.stem_channels=16",
         "model.decode_head.channels=16", "model.aux_head.channels=8", "data.scale=[96,64]", "data.num_workers=0"]
CITYSCAPES = "pspnet_r50-d8_512x1024_40k_cityscapes"
ADE20K = "pspnet_r50-d8_512x512_80k_ade20k"
VOC = "pspnet_r50-d8_512x512_20k_voc12aug"


def sets(extra: tuple[str, ...] = ()) -> list[str]:
    return [arg for item in (*SMALL, *extra) for arg in ("--set", item)]


def _add_instances(root: Path) -> None:
    """gtFine_instanceIds.png beside every labelIds file: one instance per thing class, stuff as its labelId."""
    for label_file in root.rglob("*_gtFine_labelIds.png"):
        label = read_label(label_file).astype(np.int32)
        instances = np.where(label >= 24, label * 1000 + 1, label)
        write_png(label_file.with_name(label_file.name.replace("labelIds", "instanceIds")), instances)


@pytest.fixture(scope="module")
def cityscapes_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("formatonly")
    data = synthesize("cityscapes", base / "cs", n=2, size=64, seed=3, workers=1, progress=False)
    assert main(["data", "prepare", "cityscapes", str(data)]) == 0
    _add_instances(data)
    shutil.copytree(data / "leftImg8bit" / "val", data / "leftImg8bit" / "test")  # images, no labels
    weights = tiny_weights(base / "w.safetensors", load_preset(CITYSCAPES, SMALL))
    common = [CITYSCAPES, "--weights", str(weights), "--data-root", str(data), "--device", "cpu", "--no-figures",
              *sets()]
    assert main(["test", *common, "--out", str(base / "scored"), "--per-image", str(base / "images.csv")]) == 0
    assert main(["test", *common, "--out", str(base / "val_submission"), "--format-only"]) == 0
    assert main(["test", *common, "--out", str(base / "test_submission"), "--format-only", "--split", "test"]) == 0
    return {"data": data, "base": base}


def test_cityscapes_submission_is_label_ids_under_official_names_with_a_zip(cityscapes_runs: dict[str, Path]) -> None:
    data, out = cityscapes_runs["data"], cityscapes_runs["base"] / "test_submission"
    images = sorted(p.name for p in (data / "leftImg8bit" / "test").rglob("*_leftImg8bit.png"))
    written = sorted(p.name for p in (out / "cityscapes_results").glob("*.png"))
    assert written == images
    with zipfile.ZipFile(out / "cityscapes_results.zip") as archive:
        assert sorted(archive.namelist()) == images
    evaluated_label_ids = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    for path in (out / "cityscapes_results").glob("*.png"):
        assert set(np.unique(read_label(path)).tolist()) <= evaluated_label_ids
    assert not (out / "metrics.json").exists()  # nothing scored


def test_score_of_the_submission_equals_test(cityscapes_runs: dict[str, Path], tmp_path: Path) -> None:
    base = cityscapes_runs["base"]
    status = main(["score", str(base / "val_submission" / "cityscapes_results"), str(cityscapes_runs["data"]),
                   "--dataset", "cityscapes", "--out", str(tmp_path / "m.json"), "--no-figures"])
    assert status == 0
    scored = json.loads((tmp_path / "m.json").read_text())
    tested = json.loads((base / "scored" / "metrics.json").read_text())
    assert scored["encoding"] == "label_ids"
    assert scored["per_class"] == tested["per_class"] and scored["mIoU"] == tested["mIoU"]
    assert tested["cityscapes"]["instances"] and tested["cityscapes"]["iIoU_class"] is not None
    assert scored["cityscapes"] == tested["cityscapes"]


def test_per_image_csv_from_test(cityscapes_runs: dict[str, Path]) -> None:
    rows = list(csv.DictReader((cityscapes_runs["base"] / "images.csv").open()))
    assert [r["image"] for r in rows] and all(r["image"].startswith("frankfurt/") for r in rows)
    assert [float(r["mIoU"]) for r in rows] == sorted(float(r["mIoU"]) for r in rows)
    tested = json.loads((cityscapes_runs["base"] / "scored" / "metrics.json").read_text())
    assert sum(int(r["pixels"]) for r in rows) == tested["num_pixels"]


def test_ade20k_submission_is_scene_parsing_format(tmp_path: Path) -> None:
    data = synthesize("ade20k", tmp_path / "ade", n=2, size=64, seed=0, workers=1, progress=False)
    weights = tiny_weights(tmp_path / "w.safetensors", load_preset(ADE20K, SMALL))
    common = [ADE20K, "--weights", str(weights), "--data-root", str(data), "--device", "cpu", "--no-figures", *sets()]
    assert main(["test", *common, "--out", str(tmp_path / "scored")]) == 0
    assert main(["test", *common, "--out", str(tmp_path / "sub"), "--format-only"]) == 0
    results = sorted((tmp_path / "sub" / "ade20k_results").glob("*.png"))
    assert [p.name for p in results] == sorted(p.with_suffix(".png").name
                                               for p in (data / "images" / "validation").glob("*.jpg"))
    values = np.unique(np.concatenate([np.unique(read_label(p)) for p in results]))
    assert values.min() >= 1 and values.max() <= 150  # SceneParsing: 1..150, no 0
    with zipfile.ZipFile(tmp_path / "sub" / "ade20k_results.zip") as archive:
        assert sorted(archive.namelist()) == [p.name for p in results]
    status = main(["score", str(tmp_path / "sub" / "ade20k_results"), str(data), "--dataset", "ade20k", "--out",
                   str(tmp_path / "m.json"), "--no-figures", "--encoding", "one_based"])
    assert status == 0
    scored = json.loads((tmp_path / "m.json").read_text())
    tested = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert scored["per_class"] == tested["per_class"] and scored["mIoU"] == tested["mIoU"]


def test_voc_submission_layout(tmp_path: Path) -> None:
    data = synthesize("voc", tmp_path / "voc", n=2, size=64, seed=0, workers=1, progress=False)
    weights = tiny_weights(tmp_path / "w.safetensors", load_preset(VOC, [*SMALL, "data.dataset=voc"]))
    common = [VOC, "--weights", str(weights), "--data-root", str(data), "--device", "cpu", "--no-figures",
              *sets(("data.dataset=voc",))]
    assert main(["test", *common, "--out", str(tmp_path / "scored")]) == 0
    assert main(["test", *common, "--out", str(tmp_path / "sub"), "--format-only"]) == 0
    folder = tmp_path / "sub" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    names = (data / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(names)
    with tarfile.open(tmp_path / "sub" / "results.tar.gz") as archive:
        members = sorted(m.name for m in archive.getmembers() if m.isfile())
    assert members == sorted(f"results/VOC2012/Segmentation/comp6_test_cls/{n}.png" for n in names)
    status = main(["score", str(tmp_path / "sub" / "results"), str(data), "--dataset", "voc", "--out",
                   str(tmp_path / "m.json"), "--no-figures"])
    assert status == 0
    scored = json.loads((tmp_path / "m.json").read_text())
    assert scored["mIoU"] == json.loads((tmp_path / "scored" / "metrics.json").read_text())["mIoU"]


def test_training_validation_on_cityscapes_logs_the_official_metrics(cityscapes_runs: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """Validation during training reports category IoU and iIoU (log.jsonl and TensorBoard's val/ scalars)."""
    from sceneparse.engine.run_log import read_log
    from sceneparse.engine.trainer import TrainOptions, train

    cfg = load_preset(CITYSCAPES, [*SMALL, "data.crop_size=[64,64]", "test.crop_size=[64,64]", "train.batch_size=2", "train.recipe_gpus=2",
                                   "train.max_iters=1", "train.eval_interval=1", "train.pretrained=none"])
    result = train(cfg, TrainOptions(work_dir=str(tmp_path), data_root=str(cityscapes_runs["data"]), progress=False))
    assert result.metrics["cityscapes"]["instances"]
    validation = [r for r in read_log(tmp_path) if "mIoU" in r]
    assert validation and {"cityscapes/IoU_category", "cityscapes/iIoU_class"} <= set(validation[-1])
    assert validation[-1]["cityscapes/IoU_class"] == pytest.approx(result.metrics["cityscapes"]["IoU_class"])
