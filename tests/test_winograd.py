"""The heads' 3x3 convolutions by Winograd (NNPACK) give the fp32 answers, run only where they can and
pay off, are chosen by default only on AVX2 CPUs, and trace as ordinary convolutions for export."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sceneparse.models import build_segmentor, winograd
from sceneparse.models.fuse import prepare_for_inference, upsample_for_winograd
from sceneparse.models.winograd import WinogradConv2d, conv3x3_same, winograd_available
from tests.conftest import tiny_config
from tests.test_fast_inference import ARCHS, relative_l2, trained_looking

pytestmark = pytest.mark.skipif(not winograd_available(), reason="this torch build has no NNPACK")


@pytest.fixture
def nnpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The input shapes NNPACK's kernel was called with, in order."""
    calls: list[tuple[int, ...]] = []
    kernel: Callable[..., torch.Tensor] = torch._nnpack_spatial_convolution

    def counted(x: torch.Tensor, *args: object) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return kernel(x, *args)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counted)
    return calls


@pytest.fixture
def any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Winograd for every size, so the tiny test networks take that path."""
    monkeypatch.setattr(winograd, "MIN_OUTPUT_PIXELS", 1)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)


@pytest.mark.parametrize("batch,with_bias", [(1, True), (3, False)])
def test_conv3x3_same_gives_the_direct_convolution(batch: int, with_bias: bool,
                                                   nnpack_calls: list[tuple[int, ...]]) -> None:
    x = torch.randn(batch, 256, 48, 53)  # odd width: partial Winograd tiles at the border
    weight = torch.randn(256, 256, 3, 3) / (256 * 9) ** 0.5
    bias = torch.randn(256) if with_bias else None
    reference = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    with torch.no_grad():
        out = conv3x3_same(x, weight, bias)
    assert nnpack_calls == [(1, 256, 48, 53)] * batch  # one image at a time
    assert out.shape == reference.shape and out.dtype == torch.float32
    assert relative_l2(out, reference) < 1e-5


@pytest.mark.parametrize("shape", [(1, 128, 64, 64), (1, 256, 32, 32)])
def test_small_or_narrow_convolutions_stay_direct(shape: tuple[int, ...], nnpack_calls: list[tuple[int, ...]]) -> None:
    x = torch.randn(shape)
    weight = torch.randn(shape[1], shape[1], 3, 3)
    with torch.no_grad():
        assert torch.equal(conv3x3_same(x, weight, None), F.conv2d(x, weight, None, padding=1))
    assert nnpack_calls == []


def test_autograd_and_tracing_take_the_ordinary_convolution(any_size: None,
                                                             nnpack_calls: list[tuple[int, ...]]) -> None:
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    conv.__class__ = WinogradConv2d
    x = torch.randn(1, 8, 12, 12)
    conv(x).sum().backward()  # NNPACK's kernel has no backward: this must not reach it
    assert conv.weight.grad is not None and nnpack_calls == []
    with torch.no_grad():
        traced = torch.jit.trace(conv, x, check_trace=False)  # the check would run it untraced
    assert nnpack_calls == []
    assert "_nnpack" not in str(traced.graph)
    with torch.no_grad():
        conv(x)
    assert nnpack_calls == [(1, 8, 12, 12)]


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("low_res_heads", [True, False])
def test_prepared_models_give_the_eager_answers(name: str, low_res_heads: bool, any_size: None,
                                                nnpack_calls: list[tuple[int, ...]]) -> None:
    model = trained_looking(name)
    x = torch.randn(2, 3, 72, 88)
    with torch.no_grad():
        reference = model(x)["out"]
        fast = prepare_for_inference(model, fuse_bn=True, copy_model=True, low_res_heads=low_res_heads,
                                     winograd=True)
        out = fast(x)["out"]
    assert any(isinstance(m, WinogradConv2d) for m in fast.model.decode_head.modules())
    assert not any(isinstance(m, WinogradConv2d) for m in fast.model.backbone.modules())
    assert nnpack_calls  # the bottleneck (and UPerNet's FPN convolutions) took the Winograd path
    assert relative_l2(out, reference) < 1e-5


@pytest.mark.parametrize("shape,expected", [
    ((1, 512, 64, 64), True),  # UPerNet's 1/8 FPN level into the 1/4 one: upsampled, one Winograd convolution
    ((1, 2048, 34, 34), False),  # PSANet's projected attention map: wide, kept to its taps
    ((1, 512, 32, 32), False),  # a quarter of the size: the taps
])
def test_which_small_inputs_are_upsampled_for_winograd(shape: tuple[int, ...], expected: bool) -> None:
    size = (128, 128) if shape[1] == 512 else (64, 64)
    assert upsample_for_winograd(torch.empty(shape, device="meta"), size) == expected


def test_winograd_is_refused_where_it_cannot_run() -> None:
    model = build_segmentor(tiny_config("pspnet"))
    with pytest.raises(ValueError, match="fp32 on the CPU"):
        prepare_for_inference(model, "bf16", copy_model=True, winograd=True)
    with pytest.raises(ValueError, match="channels_last"):
        prepare_for_inference(model, channels_last=True, copy_model=True, winograd=True)


@pytest.mark.parametrize("capability,expected", [("AVX2", True), ("AVX512", False)])
def test_default_follows_the_cpu(capability: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    model = build_segmentor(tiny_config("upernet"))
    fast = prepare_for_inference(model, fuse_bn=True, copy_model=True)
    assert any(isinstance(m, WinogradConv2d) for m in fast.model.modules()) == expected
    # where it does not apply, the default is off whatever the CPU
    fast = prepare_for_inference(model, "bf16", fuse_bn=True, copy_model=True)
    assert not any(isinstance(m, WinogradConv2d) for m in fast.model.modules())


def test_a_prepared_model_exports_and_onnx_runtime_agrees(tmp_path: Path, any_size: None) -> None:
    from sceneparse.export.onnx import OnnxSegmentor, export_onnx

    fast = prepare_for_inference(trained_looking("psanet"), fuse_bn=True, copy_model=True, winograd=True)
    runner = OnnxSegmentor(export_onnx(fast, tmp_path / "fast.onnx", size=(64, 64), dynamic=True))
    x = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        expected = fast(x)["out"]
    assert relative_l2(torch.from_numpy(runner.run(x.numpy())), expected) < 1e-4


def test_first_call_in_a_fresh_process_initialises_nnpack() -> None:
    """NNPACK's kernel fails until NNPACK is initialised; `conv3x3_same` must not depend on someone else doing it."""
    import subprocess
    import sys

    code = ("import torch, torch.nn.functional as F\n"
            "from sceneparse.models.winograd import conv3x3_same\n"
            "x, w = torch.randn(1, 256, 48, 48), torch.randn(256, 256, 3, 3) / 48\n"
            "with torch.no_grad():\n"
            "    out, ref = conv3x3_same(x, w, None), F.conv2d(x, w, None, padding=1)\n"
            "print(float((out - ref).norm() / ref.norm()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5
