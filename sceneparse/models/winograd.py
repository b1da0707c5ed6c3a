"""The heads' wide 3x3 convolutions by Winograd's minimal filtering on the CPU, for fp32 inference.

oneDNN computes a 3x3 convolution directly: 9 multiply-adds per output, input channel and output
channel. Winograd's F(6x6, 3x3) transforms 8x8 input tiles and the kernel so that a 6x6 output
tile takes 64 multiplies instead of 324. PyTorch's x86 wheels ship it, in NNPACK
(`torch.backends.nnpack.is_available()`). On a 2-core Zen 2 (AVX2), the heads' convolutions ran
2-3x faster: PSPNet's and PSANet's 2048 -> 512 at 64x64, UPerNet's 512 -> 512 at 128x128
(docs/benchmarks.md).

Rounding differs from oneDNN's, not the result: against float64, these long sums come out of
oneDNN with a relative L2 error of 1.5-3e-6 and out of Winograd with 3-3.5e-6, within the fp32
paths' check (1e-5 on the logits).

Where it pays off: it was slower than oneDNN below about 48x48 outputs or 256 channels, so every
call checks the size (`pays_off`) and falls back to `F.conv2d` below it, as it does under autograd,
tracing (ONNX export) and `torch.compile`. NNPACK's kernels are AVX2: on CPUs with AVX-512, oneDNN's
direct kernels are twice as wide, so `prepare_for_inference` turns this on by default only where
PyTorch's CPU capability is AVX2 (`winograd=True` forces it). Only the heads are switched: the
dilated trunk's 3x3 convolutions gained little or lost (narrow, or dilated).

NNPACK makes its thread pool on first use with `torch.get_num_threads()` threads and keeps it, so
set the thread count before the first forward. Its workspace (the transformed kernel and tiles) is
kept for the process's life too: about 85 MiB more peak memory for UPerNet R-50 at 512x512.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_OUTPUT_PIXELS = 48 * 48  # below this oneDNN's direct convolution was as fast or faster
MIN_CHANNELS = 256  # likewise for narrower convolutions (input or output)


def winograd_available() -> bool:
    """Whether this PyTorch build has NNPACK (checking also initialises it)."""
    return bool(torch.backends.nnpack.is_available())


def winograd_by_default() -> bool:
    """On by default where it was measured to pay off: NNPACK present, an AVX2 (not AVX-512) CPU."""
    return winograd_available() and torch.backends.cpu.get_cpu_capability() == "AVX2"


def pays_off(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a 3x3 'same' convolution of `x` with `weight` is large enough for Winograd to be faster."""
    out_channels, in_channels = weight.shape[:2]
    return (x.shape[-2] * x.shape[-1] >= MIN_OUTPUT_PIXELS and min(in_channels, out_channels) >= MIN_CHANNELS)


def can_run(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """NNPACK's inference kernel applies: a CPU fp32 forward without autograd, not traced or compiled."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False  # NNPACK's kernel has no backward here
    return (x.device.type == "cpu" and x.layout == torch.strided and x.dim() == 4
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and winograd_available())  # NNPACK's kernel fails until this has initialised it


def conv3x3_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` for a 3x3 kernel, stride 1, no dilation: by Winograd
    where that runs and is faster, one image at a time (NNPACK's batched kernel is its training
    algorithm, slower than the direct convolution)."""
    if not (can_run(x, weight) and pays_off(x, weight)):
        return F.conv2d(x, weight, bias, padding=1)
    x, weight = x.contiguous(), weight.contiguous()
    outputs = [torch._nnpack_spatial_convolution(image[None], weight, bias, [1, 1]) for image in x]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def is_plain_conv3x3(conv: nn.Module) -> bool:
    """An `nn.Conv2d` that `conv3x3_same` computes: 3x3, stride 1, padding 1 (zeros), no dilation or groups."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


class WinogradConv2d(nn.Conv2d):
    """A plain 3x3 `nn.Conv2d` that runs by `conv3x3_same`. Parameters and their names are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3x3_same(x, self.weight, self.bias)


def use_winograd(module: nn.Module) -> int:
    """Switch every plain 3x3 convolution inside `module` (in place) to `WinogradConv2d`; returns how many."""
    convs = [conv for conv in module.modules() if is_plain_conv3x3(conv)]
    for conv in convs:
        conv.__class__ = WinogradConv2d
    return len(convs)
