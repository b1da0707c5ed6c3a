"""`sceneparse inspect FILE`: what each kind of weights file holds, read by the converters' own readers.

Each file is made as its toolbox writes it: mmengine's checkpoint is the peers' fixture
(tests/fixtures/mmengine), mmsegmentation 0.x's envelope is `{"meta": {"mmseg_version", "CLASSES",
"iter"}, "state_dict"}` (mmcv's save_checkpoint), sssegmentation's `{"model", "epoch"}`, semseg's
`{"epoch", "state_dict"}` with DataParallel's `module.` prefix; Caffe and ChainerCV files come from the
converter tests' builders.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sceneparse.cli import main
from sceneparse.convert.inspect import inspect_weights
from tests.conftest import FIXTURES, REFERENCE
from tests.test_convert_caffe import pspnet_caffemodel, write
from tests.test_convert_chainercv import chainercv_arrays
from tests.test_convert_semseg import semseg_layout
from tests.test_eval_cli import tiny_weights

VOC = ["background", "aeroplane", "bicycle"]


def test_sceneparse_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_weights(tmp_path / "iter_0000020.safetensors")
    report = inspect_weights(path)
    assert report.format == "sceneparse" and report.preset == "pspnet_r18-d8_512x1024_80k_cityscapes"
    assert report.preset_from == "metadata" and report.num_classes == 5
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pspnet_r18-d8_512x1024_80k_cityscapes" in out and "  backbone." in out and "more (--all" in out
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"]["backbone.stem.0.weight"]["dtype"] == "float32"


def test_mmengine_training_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    report = inspect_weights(FIXTURES / "mmengine" / "pspnet_r18_mmengine.pth")
    assert report.format.startswith("mmsegmentation 1.x") and report.iteration == 2
    assert report.classes == json.loads((FIXTURES / "mmengine" / "pspnet_r18_mmengine.json").read_text())["classes"]
    assert {"optimizer", "message_hub", "param_schedulers"} <= set(report.other_contents)
    assert len(report.tensors) == len(torch.load(REFERENCE / "pspnet_r18-d8_tiny.pth", weights_only=True)["state_dict"])


def test_mmseg_0x_checkpoint_named_as_published(tmp_path: Path) -> None:
    state = torch.load(REFERENCE / "pspnet_r18-d8_tiny.pth", weights_only=True)["state_dict"]
    path = tmp_path / "pspnet_r18-d8_512x1024_80k_cityscapes_20201225_021458-09ffa746.pth"
    torch.save({"meta": {"mmseg_version": "0.11.0", "CLASSES": VOC, "iter": 80000}, "state_dict": state}, path)
    report = inspect_weights(path)
    assert report.format == "mmsegmentation 0.x" and report.iteration == 80000 and report.classes == VOC
    assert report.preset == "pspnet_r18-d8_512x1024_80k_cityscapes" and report.preset_from == "file name"


def test_sssegmentation_and_semseg_checkpoints(tmp_path: Path) -> None:
    ssseg = tmp_path / "pspnet_resnet50os8_cityscapes.pth"
    torch.save({"model": {"backbone_net.conv1.weight": torch.zeros(8, 3, 3, 3)}, "epoch": 220}, ssseg)
    report = inspect_weights(ssseg)
    assert report.format == "sssegmentation" and "epoch 220" in report.other_contents
    semseg = tmp_path / "train_epoch_200.pth"
    state = {f"module.{k}": torch.zeros(shape) for k, shape in semseg_layout("pspnet").items()}
    torch.save({"epoch": 200, "state_dict": state}, semseg)
    report = inspect_weights(semseg)
    assert report.format == "semseg (hszhao)" and len(report.tensors) == len(state)


def test_caffe_and_chainercv_files(tmp_path: Path) -> None:
    builder = pspnet_caffemodel(seed=0)
    report = inspect_weights(write(builder, tmp_path / "pspnet.caffemodel"))
    blobs = sum(len(layer.blobs) for layer in builder.net.layer)
    assert report.format == "caffe" and len(report.tensors) == blobs
    arrays = chainercv_arrays(0)
    np.savez(tmp_path / "pspnet.npz", **arrays)
    report = inspect_weights(tmp_path / "pspnet.npz")
    assert report.format == "chainercv" and len(report.tensors) == len(arrays)


def test_onnx_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    weights = tiny_weights(tmp_path / "w.safetensors")
    assert main(["export", "onnx", str(weights), str(tmp_path / "m.onnx"), "--size", "64x64", "--no-check"]) == 0
    report = inspect_weights(tmp_path / "m.onnx")
    assert report.format.startswith("onnx") and report.preset == "pspnet_r18-d8_512x1024_80k_cityscapes"
    assert report.num_classes == 5 and report.tensors


@pytest.mark.parametrize("name, content", [("notes.txt", b"hello"), ("bad.pth", b"\x80\x04garbage"),
                                           ("bad.safetensors", b"\x00" * 16), ("bad.npz", b"PK")])
def test_other_files_are_a_one_line_error(name: str, content: bytes, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / name).write_bytes(content)
    assert main(["inspect", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert name in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_mmengine_runs_experiment_name_names_its_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # mmengine's Runner names an experiment "<config file stem>_<YYYYmmdd_HHMMSS>" and saves it in meta
    state = torch.load(REFERENCE / "pspnet_r18-d8_tiny.pth", weights_only=True)["state_dict"]
    path = tmp_path / "iter_80000.pth"
    meta = {"iter": 80000, "experiment_name": "pspnet_r18-d8_4xb2-80k_cityscapes-512x1024_20230405_101010"}
    torch.save({"meta": meta, "state_dict": state}, path)
    report = inspect_weights(path)
    assert report.preset == "pspnet_r18-d8_512x1024_80k_cityscapes" and "experiment" in report.preset_from
    # convert finds it too (and then reports that these narrow weights do not fit the full-width preset)
    assert main(["convert", "--from", "mmseg", str(path), str(tmp_path / "out.safetensors")]) == 1
    captured = capsys.readouterr()
    assert "preset pspnet_r18-d8_512x1024_80k_cityscapes" in captured.out and "does not fit" in captured.err
