"""`sceneparse test` and `sceneparse score` end to end on a small generated dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sceneparse.api import build_model
from sceneparse.cli import main
from sceneparse.config import Preset, load_preset
from sceneparse.config.loader import to_dict
from sceneparse.data.files import read_label, write_png
from sceneparse.data.synth import synthesize
from sceneparse.evaluation import cityscapes
from sceneparse.weights import save_weights

PRESET = "pspnet_r18-d8_512x1024_80k_cityscapes"
# A narrow R-18 PSPNet on the 5-class generated "custom" dataset, images 64 px high.
TINY = [
    "model.backbone.base_channels=8", "model.backbone.stem_channels=16", "model.decode_head.channels=16",
    "model.aux_head.channels=8", "model.num_classes=5", "data.dataset=custom", "data.scale=[96,64]",
    "data.num_workers=0", "test.crop_size=[48,48]", "test.stride=[32,32]", "test.scales=[0.75,1.0]",
]


def tiny_preset() -> Preset:
    return load_preset(PRESET, TINY)


def tiny_weights(path: Path, preset: Preset | None = None, seed: int = 0) -> Path:
    """Random weights whose predictions vary over the image, with the preset recorded in the file's
    metadata as trained weights carry it. BatchNorm statistics are set from one batch of noise, so
    features are normalised and the argmax is not one class everywhere."""
    preset = preset or tiny_preset()
    torch.manual_seed(seed)
    model = build_model(preset)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = those of the batch below
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 96))
    save_weights(model, path, {"preset": preset.name, "config": to_dict(preset)})
    return path


def synth_custom(root: Path, n: int) -> Path:
    return synthesize("custom", root, n=n, size=64, seed=1, workers=1, progress=False)


def set_args() -> list[str]:
    return [arg for item in TINY for arg in ("--set", item)]


@pytest.fixture(scope="module")
def tested(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One `sceneparse test` run with predictions saved, shared by the checks below."""
    base = tmp_path_factory.mktemp("evalcli")
    data = synth_custom(base / "data", 3)
    weights = tiny_weights(base / "w.safetensors")
    out = base / "out"
    status = main(["test", PRESET, "--weights", str(weights), "--data-root", str(data), "--out", str(out),
                   "--metrics", "dice,recall", "--save-pred", "--device", "cpu", *set_args()])
    assert status == 0
    return {"data": data, "weights": weights, "out": out}


def test_test_writes_report_and_predictions(tested: dict[str, Path]) -> None:
    out = tested["out"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"background", "meadow", "brick", "water", "metal"}
    assert {"aAcc", "mIoU", "mAcc", "mDice", "mRecall"} <= set(metrics)
    assert all(0.0 <= row["IoU"] <= 1.0 for row in metrics["per_class"].values() if row["IoU"] is not None)
    matrix = np.load(out / "confusion.npy")
    labels = [read_label(p) for p in sorted((tested["data"] / "labels" / "val").glob("*.png"))]
    assert matrix.sum() == sum(int((lab != 255).sum()) for lab in labels)  # every scored pixel once
    assert np.count_nonzero(matrix.sum(axis=0)) >= 2  # the model predicts several classes
    for name in ("confusion.png", "class_iou.png", "metrics.txt"):
        assert (out / name).stat().st_size > 0
    preds = sorted((out / "pred").glob("*.png"))
    assert [p.name for p in preds] == ["img_0000.png", "img_0001.png", "img_0002.png"]
    assert read_label(preds[0]).shape == labels[0].shape


def test_score_of_saved_predictions_equals_test(tested: dict[str, Path], tmp_path: Path) -> None:
    status = main(["score", str(tested["out"] / "pred"), str(tested["data"]), "--dataset", "custom",
                   "--out", str(tmp_path / "scored.json"), "--metrics", "dice,recall", "--no-figures"])
    assert status == 0
    scored = json.loads((tmp_path / "scored.json").read_text())
    tested_metrics = json.loads((tested["out"] / "metrics.json").read_text())
    assert scored["per_class"] == tested_metrics["per_class"]
    assert scored["mIoU"] == tested_metrics["mIoU"]
    # the label folder itself works as ground truth too
    status = main(["score", str(tested["out"] / "pred"), str(tested["data"] / "labels" / "val"), "--dataset",
                   "custom", "--classes", str(tested["data"] / "classes.toml"), "--out", str(tmp_path / "b.json"),
                   "--no-figures"])
    assert status == 0
    assert json.loads((tmp_path / "b.json").read_text())["mIoU"] == tested_metrics["mIoU"]


def test_score_names_a_missing_prediction(tested: dict[str, Path], tmp_path: Path, capsys) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "img_0000.png").write_bytes((tested["out"] / "pred" / "img_0000.png").read_bytes())
    status = main(["score", str(partial), str(tested["data"]), "--dataset", "custom", "--out",
                   str(tmp_path / "m.json")])
    assert status == 1
    err = capsys.readouterr().err
    assert "2 of 3" in err and "img_0001.png" in err
    assert not (tmp_path / "m.json").exists()


def test_slide_and_tta_modes_run_through_the_cli(tested: dict[str, Path], tmp_path: Path) -> None:
    status = main(["test", PRESET, "--weights", str(tested["weights"]), "--data-root", str(tested["data"]),
                   "--out", str(tmp_path), "--mode", "slide", "--tta", "--no-figures", "--device", "cpu",
                   *set_args()])
    assert status == 0
    assert "slide 48x48" in (tmp_path / "metrics.txt").read_text().splitlines()[0]
    assert "scales 0.75,1" in (tmp_path / "metrics.txt").read_text().splitlines()[0]


def test_class_count_mismatch_is_a_clear_error(tested: dict[str, Path], tmp_path: Path, capsys) -> None:
    status = main(["test", PRESET, "--weights", str(tested["weights"]), "--data-root", str(tested["data"]),
                   "--out", str(tmp_path), *set_args(), "--set", "model.num_classes=7"])
    assert status == 1
    assert "predicts 7 classes" in capsys.readouterr().err


def test_cityscapes_format_names_and_label_ids(tmp_path: Path) -> None:
    train_ids = np.array([[0, 1, 13], [18, 255, 10]], dtype=np.uint8)
    assert cityscapes.to_label_ids(train_ids).tolist() == [[7, 8, 26], [33, 0, 23]]
    assert cityscapes.result_name("x/frankfurt/frankfurt_000000_000294_leftImg8bit.png") == \
        "frankfurt_000000_000294_leftImg8bit.png"
    assert cityscapes.result_name("night/GOPR0356_frame_000001_rgb_anon.png") == "GOPR0356_frame_000001_rgb_anon.png"
    with pytest.raises(Exception, match="custom"):
        cityscapes.check_dataset("custom")


def test_night_preset_scores_a_cityscapes_model_and_writes_benchmark_files(tmp_path: Path) -> None:
    """The Dark Zurich preset: a 19-class Cityscapes model on the night set, with --cityscapes-format."""
    preset_name = "pspnet_r50-d8_512x1024_40k_dark"
    night = [
        "model.backbone.depth=18", "model.backbone.base_channels=8", "model.backbone.stem_channels=16",
        "model.decode_head.channels=16", "model.aux_head.channels=8", "data.scale=[96,64]", "data.num_workers=0",
    ]
    data = synthesize("dark_zurich", tmp_path / "dz", n=2, size=64, seed=0, workers=1, progress=False)
    weights = tiny_weights(tmp_path / "w.safetensors", load_preset(preset_name, night))
    status = main(["test", preset_name, "--weights", str(weights), "--data-root", str(data), "--out",
                   str(tmp_path / "out"), "--cityscapes-format", "--no-figures", "--device", "cpu",
                   *[arg for item in night for arg in ("--set", item)]])
    assert status == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["per_class"]) == 19 and "road" in metrics["per_class"]
    results = sorted((tmp_path / "out" / "cityscapes_results").glob("*.png"))
    images = sorted(data.rglob("*_rgb_anon.png"))
    assert [p.name for p in results] == [p.name for p in images]
    valid_label_ids = set(cityscapes.train_to_label_ids()[:19].tolist())
    for path in results:
        assert set(np.unique(read_label(path)).tolist()) <= valid_label_ids


def test_score_ade20k_with_reduce_zero_label(tmp_path: Path) -> None:
    """Predictions in training ids (stored id - 1) against ADE20K files where 0 means "other"."""
    data = synthesize("ade20k", tmp_path / "ade", n=2, size=64, seed=0, workers=1, progress=False)
    preds = tmp_path / "pred"
    for label_file in sorted((data / "annotations" / "validation").glob("*.png")):
        stored = read_label(label_file).astype(np.int64)
        pred = np.where(stored == 0, 0, stored - 1)  # right wherever the label is scored
        pred[:, :8] = (pred[:, :8] + 1) % 150  # ... except a strip on the left
        write_png(preds / label_file.name, pred.astype(np.uint8))
    # these few values fit training ids and SceneParsing's 1..150 alike: the encoding is given
    args = ["score", str(preds), str(data), "--dataset", "ade20k", "--out", str(tmp_path / "m.json"), "--no-figures"]
    assert main(args) == 1
    status = main([*args, "--encoding", "train_ids"])
    assert status == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    scored = [(read_label(f).astype(np.int64), read_label(preds / f.name).astype(np.int64))
              for f in sorted((data / "annotations" / "validation").glob("*.png"))]
    correct = sum(int(((s - 1 == p) & (s != 0)).sum()) for s, p in scored)
    total = sum(int((s != 0).sum()) for s, _ in scored)
    assert metrics["aAcc"] == pytest.approx(correct / total)
    assert 0.0 < metrics["aAcc"] < 1.0
    present = {int(v) - 1 for s, _ in scored for v in np.unique(s) if v != 0}
    absent = [name for i, name in enumerate(metrics["per_class"]) if i not in present]
    assert all(metrics["per_class"][name]["Acc"] is None for name in absent)
