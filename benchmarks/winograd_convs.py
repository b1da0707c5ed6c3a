"""Winograd (NNPACK) against oneDNN's direct convolution, on the 3x3 convolutions of these networks.

    .venv/bin/python benchmarks/winograd_convs.py [--rounds 5] [--threads N]

For each convolution shape that occurs in PSPNet / PSANet R-50-D8 and UPerNet R-50 at 512x512 it
times `F.conv2d` (oneDNN) and NNPACK's F(6x6, 3x3) kernel, alternating call by call, and prints the
medians, the ratio and both results' relative L2 error against a float64 convolution. Dilated
convolutions (the trunk's) are given to NNPACK as their polyphase components, which NNPACK
convolves undilated as one batch. This is what `sceneparse.models.winograd`'s size rule rests on.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sceneparse.benchmark import time_alternating  # noqa: E402

# (in channels, out channels, output side, dilation, where it occurs)
SHAPES = [
    (2048, 512, 64, 1, "PSPNet / PSANet bottleneck, full-resolution part"),
    (512, 512, 128, 1, "UPerNet FPN conv and bottleneck, 1/4 level"),
    (512, 512, 64, 1, "UPerNet FPN conv, 1/8 level"),
    (512, 512, 32, 1, "UPerNet FPN conv, 1/16 level"),
    (2048, 512, 16, 1, "UPerNet PPM bottleneck, full-resolution part"),
    (64, 64, 128, 1, "trunk layer1"),
    (128, 128, 64, 1, "trunk layer2 (D8)"),
    (256, 256, 64, 2, "trunk layer3 (D8, dilation 2)"),
    (512, 512, 64, 4, "trunk layer4 (D8, dilation 4)"),
]


def polyphase(x: torch.Tensor, d: int) -> torch.Tensor:
    """(n, c, h, w) -> (n*d*d, c, h/d, w/d): the d x d interleaved sub-grids, each a dilation-free problem."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // d, d, w // d, d).permute(0, 3, 5, 1, 2, 4).reshape(n * d * d, c, h // d, w // d)


def from_polyphase(y: torch.Tensor, d: int, n: int) -> torch.Tensor:
    _, c, h, w = y.shape
    return y.reshape(n, d, d, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * d, w * d)


def nnpack_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, d: int) -> torch.Tensor:
    if d == 1:
        return torch._nnpack_spatial_convolution(x, weight, bias, [1, 1])
    return from_polyphase(torch._nnpack_spatial_convolution(polyphase(x, d), weight, bias, [1, 1]), d, x.shape[0])


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # before NNPACK's first call: its thread pool keeps this count
    if not torch.backends.nnpack.is_available():
        print("this PyTorch build has no NNPACK")
        return 1
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'in->out':>10} {'side':>5} {'dil':>3} {'oneDNN ms':>10} {'Winograd ms':>12} {'speed-up':>9} "
          f"{'err oneDNN':>11} {'err Winograd':>13}  where")
    generator = torch.Generator().manual_seed(0)
    for cin, cout, side, d, where in SHAPES:
        x = torch.randn(1, cin, side, side, generator=generator)
        weight = torch.randn(cout, cin, 3, 3, generator=generator) / (9 * cin) ** 0.5
        bias = torch.randn(cout, generator=generator)
        calls = {"onednn": lambda x=x, w=weight, b=bias, d=d: F.conv2d(x, w, b, padding=d, dilation=d),
                 "winograd": lambda x=x, w=weight, b=bias, d=d: nnpack_conv(x, w, b, d)}
        with torch.inference_mode():
            times = time_alternating(calls, args.rounds, 1, progress=False)
            exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=d, dilation=d)
            errors = {name: relative_l2(call(), exact) for name, call in calls.items()}
        direct, wino = statistics.median(times["onednn"]), statistics.median(times["winograd"])
        print(f"{cin:>5}->{cout:<4} {side:>5} {d:>3} {direct * 1e3:10.1f} {wino * 1e3:12.1f} {direct / wino:8.2f}x "
              f"{errors['onednn']:11.1e} {errors['winograd']:13.1e}  {where}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
