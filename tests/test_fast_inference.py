"""The fast inference options give the eager fp32 answers: fp32 paths to 1e-5 relative L2, reduced
precision with the argmax agreeing on over 99% of the pixels."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sceneparse.models import build_segmentor
from sceneparse.models.fuse import (
    casts_the_model,
    channels_last_pays_off,
    conv_bn_pairs,
    fuse_batchnorm,
    prepare_for_inference,
)
from sceneparse.models.inference import predict_proba
from tests.conftest import tiny_config

ARCHS = ["pspnet", "psanet", "upernet"]


def trained_looking(name: str, **head: object) -> nn.Module:
    """A tiny eval-mode model whose BatchNorms carry non-trivial statistics (else folding is a no-op)."""
    return with_batchnorm_statistics(build_segmentor(tiny_config(name, **head)))


def with_batchnorm_statistics(model: nn.Module) -> nn.Module:
    """`model` in eval mode, its BatchNorms given random statistics and affine parameters."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.2)
    return model.eval()


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def argmax_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def eager_and_input(name: str, size: tuple[int, int] = (72, 88)) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = trained_looking(name)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        reference = model(x)["out"]
    return model, x, reference


@pytest.mark.parametrize("name", ARCHS)
def test_fused_model_matches_eager_and_has_no_batchnorm(name: str) -> None:
    model, x, reference = eager_and_input(name)
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fuse_batchnorm(model)
    assert folded == batchnorms  # the aux head's too: every BN of these networks follows its conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        out = model(x)["out"]
    assert relative_l2(out, reference) < 1e-5


def test_weights_load_before_folding_and_names_are_kept() -> None:
    source = trained_looking("pspnet")
    model = build_segmentor(tiny_config("pspnet"))
    model.load_state_dict(source.state_dict(), strict=True)  # same module tree as an unfolded model
    fast = prepare_for_inference(model, fuse_bn=True)
    names = {name for name, _ in fast.model.named_parameters()}
    assert "decode_head.ppm.bottleneck.conv.weight" in names and "decode_head.ppm.bottleneck.conv.bias" in names
    assert not any(".bn" in name for name in names)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert relative_l2(fast(x)["out"], source(x)["out"]) < 1e-5


def test_fusing_refuses_a_training_model() -> None:
    model = build_segmentor(tiny_config("pspnet")).train()
    with pytest.raises(ValueError, match="eval"):
        fuse_batchnorm(model)


def test_pairs_found_in_blocks_and_sequentials() -> None:
    model = trained_looking("upernet")
    pairs = {(type(parent).__name__, conv, bn) for parent, conv, bn in conv_bn_pairs(model)}
    assert ("BasicBlock", "conv2", "bn2") in pairs  # attribute-named pair
    assert ("ConvBNReLU", "conv", "bn") in pairs  # Sequential pair
    assert ("Sequential", "0", "1") in pairs  # downsample / stem


@pytest.mark.parametrize("name", ARCHS)
def test_channels_last_and_fusing_together_match_eager(name: str) -> None:
    model, x, reference = eager_and_input(name)
    fast = prepare_for_inference(model, channels_last=True, fuse_bn=True)
    with torch.no_grad():
        out = fast(x)["out"]
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert relative_l2(out, reference) < 1e-5


def test_copy_model_leaves_the_original_untouched() -> None:
    model, x, reference = eager_and_input("psanet")
    prepare_for_inference(model, fuse_bn=True, copy_model=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x)["out"], reference)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_agrees_on_the_argmax(name: str, dtype: str) -> None:
    model, x, reference = eager_and_input(name, (96, 96))
    fast = prepare_for_inference(model, dtype=dtype, channels_last=True, fuse_bn=True)
    with torch.no_grad():
        out = fast(x)["out"]
    assert out.dtype == torch.float32
    assert argmax_agreement(out, reference) > 0.99
    assert relative_l2(out, reference) < 0.05  # reduced precision, not a different network


@pytest.mark.parametrize("name", ARCHS)
def test_cpu_reduced_precision_casts_the_model_and_upsamples_in_float32(name: str) -> None:
    """The CPU defaults for bf16: weights cast once (no autocast), NHWC, logits upsampled in float32."""
    model, x, reference = eager_and_input(name, (61, 83))  # odd sizes: the final resize is not a plain 8x
    fast = prepare_for_inference(model, dtype="bf16", fuse_bn=True, copy_model=True)
    assert fast.cast and fast.channels_last
    assert {p.dtype for p in fast.model.parameters()} == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # copy_model: the caller's is untouched
    with torch.no_grad():
        out = fast(x)["out"]
        heads = fast.model(x.bfloat16().contiguous(memory_format=torch.channels_last), upsample=False)["out"]
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert argmax_agreement(out, reference) > 0.99
    assert relative_l2(out, reference) < 0.05
    # the upsampling itself is float32 work on the heads' bf16 logits, not a bf16 resize
    expected = torch.nn.functional.interpolate(heads.float().contiguous(), size=x.shape[-2:], mode="bilinear",
                                               align_corners=fast.align_corners)
    assert torch.equal(out, expected)


def test_precision_rules_by_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert casts_the_model(cpu, "bf16") and casts_the_model(cpu, "fp16")
    assert not casts_the_model(cpu, "fp32") and not casts_the_model(cuda, "bf16")  # GPU: autocast, as measured
    assert channels_last_pays_off(cpu, "bf16") and not channels_last_pays_off(cpu, "fp32")
    assert not channels_last_pays_off(cuda, "fp16")
    model, _, _ = eager_and_input("pspnet")
    fast = prepare_for_inference(model, fuse_bn=True, copy_model=True)  # fp32 on the CPU: the blocked trunk
    assert not fast.cast and not fast.channels_last


def test_compiled_model_matches_eager() -> None:
    """The compile path (graph capture through the PSA mask included); the `aot_eager` backend skips
    the C++ code generation, which is the compiler's business, not ours."""
    model, x, reference = eager_and_input("psanet")
    fast = prepare_for_inference(model, fuse_bn=True, compile="aot_eager")
    with torch.no_grad():
        out = fast(x)["out"]
    assert relative_l2(out, reference) < 1e-5


def test_fast_model_works_with_the_test_time_modes() -> None:
    model, x, _ = eager_and_input("pspnet", (80, 112))
    with torch.no_grad():
        reference = predict_proba(model, x, mode="slide", crop=(64, 64), stride=(40, 40), flip=True)
        fast = prepare_for_inference(model, channels_last=True, fuse_bn=True, copy_model=True)
        out = predict_proba(fast, x, mode="slide", crop=(64, 64), stride=(40, 40), flip=True)
    assert relative_l2(out, reference) < 1e-5


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="bf16"):
        prepare_for_inference(build_segmentor(tiny_config("pspnet")), dtype="int8")


@pytest.mark.parametrize("psa_type", ["collect", "distribute"])
def test_psa_mask_runs_on_the_meta_device(psa_type: str) -> None:
    """`sceneparse summary` counts FLOPs on the meta device: the cached, value-checked index must not be used."""
    from sceneparse.models.psa_mask import psa_mask

    out = psa_mask(torch.empty(2, 15, 4, 6, device="meta"), psa_type, (3, 5))
    assert out.shape == (2, 24, 4, 6) and out.device.type == "meta"


@pytest.mark.parametrize("name", ["pspnet", "upernet", "psanet"])
@pytest.mark.parametrize("size", [(64, 64), (97, 129), (64, 97)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_low_resolution_head_convolutions_match_eager(name: str, size: tuple[int, int], align_corners: bool) -> None:
    from sceneparse.models.fuse import convolve_upsampled_at_low_resolution

    cfg = tiny_config(name)
    cfg.align_corners = align_corners
    model = build_segmentor(cfg).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        reference = model(x)["out"]
        keys = list(model.state_dict())
        assert convolve_upsampled_at_low_resolution(model) == {"pspnet": 1, "upernet": 2, "psanet": 1}[name]
        assert list(model.state_dict()) == keys  # same parameters, same names
        assert any(type(m).__name__.startswith("Fast") for m in model.modules())
        assert relative_l2(model(x)["out"], reference) < 1e-5


@pytest.mark.parametrize("psa_type", ["collect", "distribute"])
def test_low_resolution_heads_exact_for_fixed_pooling_and_single_psa(psa_type: str) -> None:
    """Caffe-style fixed pooling (pooled maps of other sizes) and single-direction PSA, with folded BNs."""
    for model in (build_segmentor(tiny_config("pspnet", pool_mode="fixed", pool_input_size=[9, 9])).eval(),
                  trained_looking("psanet", psa_type=psa_type)):
        x = torch.randn(1, 3, 72, 72)
        with torch.no_grad():
            reference = model(x)["out"]
            fast = prepare_for_inference(model, fuse_bn=True, low_res_heads=True)
            assert relative_l2(fast(x)["out"], reference) < 1e-5


def test_low_res_heads_default_follows_the_device_and_precision() -> None:
    from sceneparse.models.fuse import low_res_heads_pay_off

    assert low_res_heads_pay_off(torch.device("cpu"), "fp32", matmul_tf32=False, conv_tf32=True)
    assert low_res_heads_pay_off(torch.device("cuda"), "fp16", matmul_tf32=False, conv_tf32=True)
    assert not low_res_heads_pay_off(torch.device("cuda"), "fp32", matmul_tf32=False, conv_tf32=True)
    assert low_res_heads_pay_off(torch.device("cuda"), "fp32", matmul_tf32=True, conv_tf32=True)
    assert low_res_heads_pay_off(torch.device("cuda"), "fp32", matmul_tf32=False, conv_tf32=False)
    fast = prepare_for_inference(build_segmentor(tiny_config("upernet")))  # CPU: on by default
    assert type(fast.model.decode_head).__name__ == "FastUPerHead"


def test_emulated_bf16_on_the_cpu_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    from sceneparse.models.fuse import native_reduced_precision_cpu

    with caplog.at_level("WARNING", logger="sceneparse.models.fuse"):
        prepare_for_inference(build_segmentor(tiny_config("pspnet")), dtype="bf16")
    warned = any("emulated" in record.getMessage() for record in caplog.records)
    assert warned == (not native_reduced_precision_cpu("bf16"))


@pytest.mark.parametrize("size", [(64, 64), (64, 80), (72, 88)])
def test_fast_psa_head_halving_matches_the_bilinear_resize(size: tuple[int, int]) -> None:
    """Even feature maps take the 2x2-average path, others the bilinear one: same logits either way."""
    model = trained_looking("psanet")
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        reference = model(x)["out"]
        fast = prepare_for_inference(model, fuse_bn=True, copy_model=True)
        assert type(fast.model.decode_head).__name__ == "FastPSAHead"
        assert relative_l2(fast(x)["out"], reference) < 1e-5
