"""Speed and memory at the settings of the published mmsegmentation tables, beside their figures.

    .venv/bin/python benchmarks/published_settings.py [--device cuda] [--iters 20] [--json OUT]

For PSPNet, PSANet and UPerNet with ResNet-50/101 it times whole-image inference, batch 1, at the
size mmsegmentation's fps column was measured on (Cityscapes: the full 1024x2048 image its test
pipeline feeds the 512x1024 models; ADE20K: 512x512), in fp32 eager (the baseline, as the tables
were measured) and with sceneparse's inference options (BN folded, low-resolution heads,
channels_last, fp16 autocast on CUDA / bf16 on CPU). It prints images/s, peak memory and the ratio
of each to the baseline measured in the same run, and the published V100 fps and training memory
beside them for scale (different GPU: a reference, not a ratio).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sceneparse.benchmark import BenchmarkSettings, run_benchmark  # noqa: E402
from sceneparse.config import load_preset  # noqa: E402

# preset -> the input size of mmsegmentation's fps measurement
PRESETS = {
    "pspnet_r50-d8_512x1024_40k_cityscapes": (1024, 2048),
    "pspnet_r101-d8_512x1024_40k_cityscapes": (1024, 2048),
    "psanet_r50-d8_4xb2-40k_cityscapes-512x1024": (1024, 2048),
    "psanet_r101-d8_4xb2-40k_cityscapes-512x1024": (1024, 2048),
    "upernet_r50_512x1024_40k_cityscapes": (1024, 2048),
    "upernet_r101_512x1024_40k_cityscapes": (1024, 2048),
    "pspnet_r50-d8_512x512_80k_ade20k": (512, 512),
    "pspnet_r101-d8_512x512_80k_ade20k": (512, 512),
    "psanet_r50-d8_4xb4-80k_ade20k-512x512": (512, 512),
    "psanet_r101-d8_4xb4-80k_ade20k-512x512": (512, 512),
    "upernet_r50_512x512_80k_ade20k": (512, 512),
    "upernet_r101_512x512_80k_ade20k": (512, 512),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=[], help="substrings of the preset names to run")
    parser.add_argument("--size", default="", help="HxW for every preset instead of the published size (smoke runs)")
    parser.add_argument("--json", default="", help="also write every result to this JSON file")
    args = parser.parse_args()

    fast_dtype = "fp16" if args.device.startswith("cuda") else "bf16"
    rows, results = [], []
    for name, size in PRESETS.items():
        if args.only and not any(part in name for part in args.only):
            continue
        if args.size:
            size = tuple(int(v) for v in args.size.lower().split("x"))
        preset = load_preset(name)
        common = dict(size=size, device=args.device, warmup=args.warmup, iters=args.iters)
        base = run_benchmark(preset, BenchmarkSettings(**common), progress=False)
        fast = run_benchmark(preset, BenchmarkSettings(**common, dtype=fast_dtype, channels_last=True,
                                                       fuse_bn=True, low_res_heads=True), progress=False)
        results += [base, fast]
        pub = preset.published
        rows.append((name, f"{size[0]}x{size[1]}", base.images_per_s, fast.images_per_s,
                     fast.images_per_s / base.images_per_s, base.peak_memory_bytes / 2**30,
                     fast.peak_memory_bytes / 2**30, pub.fps, pub.mem_gb))
        print(f"{name}: fp32 {base.images_per_s:.2f} img/s, fast {fast.images_per_s:.2f} img/s", flush=True)

    machine = results[0].machine if results else {}
    print(f"\nmachine: {machine.get('gpu') or machine.get('cpu')}, torch {machine.get('torch')}; "
          f"batch 1, whole inference, random weights; fast = {fast_dtype} + channels_last + fused BN + low-res heads")
    header = ("preset", "input", "fp32 img/s", "fast img/s", "fast/fp32", "fp32 mem GiB", "fast mem GiB",
              "published fps (V100)", "published train mem GB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, size, b, f, ratio, mb, mf, pfps, pmem in rows:
        print(f"| {name} | {size} | {b:.2f} | {f:.2f} | {ratio:.2f}x | {mb:.2f} | {mf:.2f} | "
              f"{pfps if pfps is not None else '-'} | {pmem if pmem is not None else '-'} |")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
