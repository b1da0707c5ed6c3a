"""ONNX export: all three models, dynamic sizes (odd, not multiples of the bins or the stride),
ONNX Runtime equal to PyTorch to 1e-4 relative L2; the dynamic PSA head equals the original."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sceneparse.cli import main
from sceneparse.errors import CheckpointError
from sceneparse.export.dynamic_psa import DynamicSizePSAHead, interpolation_matrix
from sceneparse.export.onnx import OnnxSegmentor, export_onnx, relative_l2
from sceneparse.models import build_segmentor
from sceneparse.weights import save_weights
from tests.conftest import tiny_config
from tests.test_fast_inference import trained_looking

SIZES = [(64, 64), (97, 129), (64, 97), (72, 56)]  # features 8x8, 13x17 (both odd), 8x13 (mixed), 9x7

TINY_SETTINGS = ["model.backbone.depth=18", "model.backbone.stem_channels=16", "model.backbone.base_channels=8",
                 "model.decode_head.channels=16", "model.aux_head.channels=8", "model.num_classes=5"]


@pytest.mark.parametrize(("in_size", "out_size"), [(7, 13), (13, 7), (8, 4), (1, 5), (6, 6)])
@pytest.mark.parametrize("align", [False, True])
def test_interpolation_matrix_equals_interpolate(in_size: int, out_size: int, align: bool) -> None:
    x = torch.randn(1, 2, in_size, 3)
    expected = F.interpolate(x, size=(out_size, 3), mode="bilinear", align_corners=align)
    weights = interpolation_matrix(torch.tensor(in_size), torch.tensor(out_size), torch.tensor(align), x.dtype)
    assert torch.allclose(torch.matmul(weights, x), expected, atol=1e-6)


@pytest.mark.parametrize("psa_type", ["bi-direction", "collect", "distribute"])
def test_dynamic_psa_head_equals_the_head_at_every_parity(psa_type: str) -> None:
    model = trained_looking("psanet", psa_type=psa_type)
    dynamic = DynamicSizePSAHead(model.decode_head)
    with torch.no_grad():
        for h, w in [(8, 8), (13, 17), (8, 13), (13, 8)]:
            features = [torch.randn(1, model.backbone.out_channels[-1], h, w)]
            assert relative_l2(dynamic(features).numpy(), model.decode_head(features).numpy()) < 1e-6


@pytest.mark.parametrize("name", ["pspnet", "psanet", "upernet"])
def test_dynamic_export_reproduces_pytorch_at_several_sizes(name: str, tmp_path: Path) -> None:
    model = trained_looking(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", size=(64, 64), dynamic=True, opset=17)
    runner = OnnxSegmentor(path)
    assert runner.num_classes == 5 and runner.align_corners is False
    for size in SIZES:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            reference = model(x)["out"].numpy()
        logits = runner(x.numpy())
        assert logits.shape == reference.shape
        assert relative_l2(logits, reference) < 1e-4, size


def test_fixed_size_export_refuses_another_size(tmp_path: Path) -> None:
    model = trained_looking("pspnet")
    path = export_onnx(model, tmp_path / "fixed.onnx", size=(64, 80), dynamic=False)
    runner = OnnxSegmentor(path)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert relative_l2(runner(x.numpy()), model(x)["out"].numpy()) < 1e-4
    with pytest.raises(CheckpointError, match="--dynamic"):
        runner(np.zeros((1, 3, 64, 64), np.float32))


def test_export_of_a_model_cast_to_bf16_is_float32_and_leaves_it_cast(tmp_path: Path) -> None:
    """`Segmenter` picks bf16 on CPUs with AMX, which casts the model: its export is a float32 copy."""
    from sceneparse.models.fuse import prepare_for_inference

    fast = prepare_for_inference(trained_looking("pspnet"), dtype="bf16", fuse_bn=True)
    path = export_onnx(fast, tmp_path / "cast.onnx", size=(64, 64), dynamic=True)
    assert {p.dtype for p in fast.model.parameters()} == {torch.bfloat16}  # the wrapper still runs bf16
    x = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        reference = fast(x)["out"]
    logits = torch.from_numpy(OnnxSegmentor(path)(x.numpy()))
    assert logits.dtype == torch.float32
    assert float((logits.argmax(1) == reference.argmax(1)).float().mean()) > 0.99


def test_onnx_segmentor_speaks_the_segmentor_protocol_for_tensors(tmp_path: Path) -> None:
    """The test-time modes call `model(x)["out"]` with tensors: the ONNX runner answers the same way."""
    from sceneparse.models.inference import predict_proba

    model = trained_looking("upernet")
    runner = OnnxSegmentor(export_onnx(model, tmp_path / "u.onnx", size=(64, 64), dynamic=True))
    x = torch.randn(1, 3, 80, 96)
    out = runner(x)
    assert isinstance(out, dict) and isinstance(out["out"], torch.Tensor)
    with torch.no_grad():
        reference = predict_proba(model, x, mode="slide", crop=(64, 64), stride=(40, 40), flip=True)
    probs = predict_proba(runner, x, mode="slide", crop=(64, 64), stride=(40, 40), flip=True)
    assert relative_l2(probs.numpy(), reference.numpy()) < 1e-4


def test_missing_or_broken_onnx_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such ONNX file"):
        OnnxSegmentor(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="broken.onnx"):
        OnnxSegmentor(broken)


def test_cli_exports_checks_and_names_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = "pspnet_r50-d8_512x1024_40k_cityscapes"
    overrides = [arg for setting in TINY_SETTINGS for arg in ("--set", setting)]
    from sceneparse.api import build_model
    from sceneparse.config import load_preset

    cfg = load_preset(preset, TINY_SETTINGS)
    weights = tmp_path / "tiny.safetensors"
    save_weights(build_model(cfg), weights, {"preset": preset})
    out = tmp_path / "model.onnx"
    status = main(["export", "onnx", preset, str(out), "--weights", str(weights), "--dynamic",
                   "--size", "64x96", *overrides])
    assert status == 0
    printed = capsys.readouterr().out
    assert "64x96: ONNX Runtime vs PyTorch relative L2" in printed and "49x97" in printed
    runner = OnnxSegmentor(out)
    assert runner.metadata["preset"] == preset and runner.num_classes == 5


def test_cli_refuses_weights_that_do_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "other.safetensors"
    save_weights(build_segmentor(tiny_config("upernet")), weights)
    overrides = [arg for setting in TINY_SETTINGS for arg in ("--set", setting)]
    status = main(["export", "onnx", "pspnet_r50-d8_512x1024_40k_cityscapes", str(tmp_path / "x.onnx"),
                   "--weights", str(weights), *overrides])
    assert status == 1
    assert "other.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_segmenter_runs_an_export_with_the_preset_pipeline(tmp_path: Path) -> None:
    """`sceneparse infer --onnx` goes through `Segmenter.from_onnx`: same labels as the PyTorch model."""
    from sceneparse.api import build_model
    from sceneparse.config import load_preset
    from sceneparse.segmenter import Segmenter

    preset = load_preset("pspnet_r50-d8_512x1024_40k_cityscapes", TINY_SETTINGS + ["data.scale=[128,64]"])
    model = build_model(preset).eval()
    path = export_onnx(model, tmp_path / "seg.onnx", size=(64, 128), dynamic=True)
    image = np.random.default_rng(0).integers(0, 256, (75, 150, 3), dtype=np.uint8)
    from_onnx = Segmenter.from_onnx(path, preset).predict_proba(image)
    from_torch = Segmenter(model, preset).predict_proba(image)
    assert from_onnx.shape == (5, 75, 150)
    assert relative_l2(from_onnx, from_torch) < 1e-4
