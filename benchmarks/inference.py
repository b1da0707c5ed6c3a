"""sceneparse's inference options against its own plain eager forward, in one run.

    .venv/bin/python benchmarks/inference.py [--size 512] [--rounds 3] [--threads N] [--bf16]

For PSPNet R-50-D8, PSANet R-50-D8 and UPerNet R-50-D8 (ADE20K, 150 classes) it times the eager
model and each option of `sceneparse.models.fuse.prepare_for_inference` (BatchNorm folding, the
heads' low-resolution convolutions, the blocked trunk, the heads' Winograd convolutions,
channels_last, bf16 autocast), alternating between variants call by call, and prints each median,
its spread and its ratio to eager, plus the largest relative L2 (fp32) or argmax disagreement
(bf16) of the variant's logits against eager's.
bf16 runs only where the CPU has native bf16 kernels, or with --bf16 (it is emulated elsewhere,
and far slower than fp32).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sceneparse.benchmark import time_alternating  # noqa: E402
from sceneparse.config import load_preset  # noqa: E402
from sceneparse.models import build_segmentor  # noqa: E402
from sceneparse.models.fuse import prepare_for_inference  # noqa: E402
from sceneparse.summary import summarize  # noqa: E402

PRESETS = {
    "pspnet": "pspnet_r50-d8_512x512_80k_ade20k",
    "psanet": "psanet_r50-d8_4xb4-80k_ade20k-512x512",
    "upernet": "upernet_resnet50os8_ade20k",
}

# variant -> prepare_for_inference options
VARIANTS = {
    "fused BN": dict(fuse_bn=True, low_res_heads=False, blocked_layout=False, winograd=False),
    "low-res heads": dict(fuse_bn=False, low_res_heads=True, winograd=False),
    "fused BN + low-res heads": dict(fuse_bn=True, low_res_heads=True, blocked_layout=False, winograd=False),
    "fused + low-res + blocked trunk": dict(fuse_bn=True, low_res_heads=True, blocked_layout=True, winograd=False),
    "fused + low-res + blocked + Winograd": dict(fuse_bn=True, low_res_heads=True, blocked_layout=True,
                                                 winograd=True),
    "fused + low-res + channels_last": dict(fuse_bn=True, low_res_heads=True, channels_last=True),
}


def trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Random but non-trivial BatchNorm statistics, so folding is exercised as with real weights."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--bf16", action="store_true", help="time bf16 even without native bf16 kernels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    variants = dict(VARIANTS)
    if native_bf16 or args.bf16:
        # the defaults for bf16 on the CPU: the model cast to bf16, channels_last
        variants["bf16 + fused + low-res (cast, channels_last)"] = dict(fuse_bn=True, low_res_heads=True, dtype="bf16")
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, native bf16: {native_bf16}")
    print(f"{'model':8} {'variant':40} {'median s':>9} {'IQR s':>7} {'GFLOP/s':>8} {'vs eager':>9} {'error':>10}")
    for name in args.models:
        cfg = load_preset(PRESETS[name])
        model = trained_looking(build_segmentor(cfg.model))
        gflop = summarize(cfg.model, (args.size, args.size)).flops / 1e9
        x = torch.randn(1, 3, args.size, args.size)
        calls: dict[str, Callable[[], torch.Tensor]] = {"eager": lambda m=model, x=x: m(x)["out"]}
        prepared = {v: prepare_for_inference(model, copy_model=True, **opts) for v, opts in variants.items()}
        calls.update({v: (lambda f=fast, x=x: f(x)["out"]) for v, fast in prepared.items()})
        with torch.inference_mode():
            reference = calls["eager"]()
            errors = {}
            for variant, call in calls.items():
                out = call()
                if "bf16" in variant:
                    errors[variant] = f"{float((out.argmax(1) != reference.argmax(1)).float().mean()):.1%} px"
                else:
                    errors[variant] = f"{float((out - reference).norm() / reference.norm()):.1e}"
            times = time_alternating(calls, args.rounds, args.warmup, progress=False)
        eager = statistics.median(times["eager"])
        for variant, values in times.items():
            median = statistics.median(values)
            q = statistics.quantiles(values, n=4) if len(values) > 1 else [median] * 3
            print(f"{name:8} {variant:40} {median:9.2f} {q[2] - q[0]:7.2f} {gflop / median:8.1f} "
                  f"{eager / median:8.2f}x {errors[variant]:>10}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
