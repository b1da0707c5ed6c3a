"""Training-step speed and peak memory of PSPNet, PSANet and UPerNet R-50-D8.

    .venv/bin/python benchmarks/train_step.py                 # CPU: 2 images of 128x128 per step
    .venv/bin/python benchmarks/train_step.py --amp bf16 --channels-last
    python benchmarks/train_step.py --device cuda             # GPU: the presets' published crop

A step is what `sceneparse train` does per iteration on one process: forward in train mode (decode +
auxiliary head), CE + 0.4 aux loss, backward, SGD step, poly LR step, with the preset's optimizer
settings. Each measurement runs in a fresh process, so the peak memory is that model's alone: peak
RSS on CPU (includes the Python interpreter and torch, ~0.3-0.5 GB), `max_memory_allocated` on CUDA.
Images/second are printed with their ratio to the first model, measured in the same run; with --amp
or --channels-last, each model is also measured without them, and the ratio is against that.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from dataclasses import dataclass

import torch

from sceneparse.benchmark import BenchmarkSettings, run_benchmark
from sceneparse.config import load_preset

PRESETS = [
    "pspnet_r50-d8_512x1024_40k_cityscapes",
    "psanet_r50-d8_4xb2-40k_cityscapes-512x1024",
    "upernet_resnet50os8_cityscapes",  # R-50-D8 UPerNet (sssegmentation); mmsegmentation's is OS32
]


@dataclass(frozen=True)
class Setting:
    preset: str
    device: str
    crop: tuple[int, int]
    batch: int
    amp: str
    channels_last: bool
    warmup: int
    steps: int


def measure(setting: Setting) -> tuple[float, float]:
    """(images per second, peak memory in GiB) of training steps under `setting`, in this process.

    The step is `sceneparse.benchmark.training_step` (what `sceneparse benchmark --train` times):
    the trainer's optimizer, loss, grad scaler and LR schedule.
    """
    torch.manual_seed(0)
    settings = BenchmarkSettings(size=setting.crop, batch=setting.batch, device=setting.device,
                                 dtype="fp32" if setting.amp == "none" else setting.amp,
                                 channels_last=setting.channels_last, train=True,
                                 warmup=setting.warmup, iters=setting.steps)
    result = run_benchmark(load_preset(setting.preset), settings, progress=False)
    return result.images_per_s, result.peak_memory_bytes / 2**30


def measure_in_fresh_process(setting: Setting) -> tuple[float, float]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (setting,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"),
                        help="default: 128 128 on CPU, the preset's crop on CUDA")
    parser.add_argument("--batch", type=int, default=2, help="images per step (default 2, as 4xb2 per GPU)")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    args = parser.parse_args(argv)

    options = args.amp != "none" or args.channels_last
    rows = []
    for name in args.presets:
        crop = tuple(args.crop) if args.crop else (
            tuple(load_preset(name).data.crop_size) if args.device.startswith("cuda") else (128, 128))
        variants = [("fp32", "none", False)] if not options else [("fp32", "none", False),
                                                                    ("options", args.amp, args.channels_last)]
        for label, amp, channels_last in variants:
            setting = Setting(name, args.device, crop, args.batch, amp, channels_last, args.warmup, args.steps)
            speed, peak = measure_in_fresh_process(setting)
            rows.append((name, label, crop, speed, peak))
            print(f"  measured {name} {label}: {speed:.2f} img/s", file=sys.stderr)

    unit = "GiB max allocated" if args.device.startswith("cuda") else "GiB peak RSS"
    print(f"training step, {args.device}, batch {args.batch}" + (
        f", options: amp={args.amp} channels_last={args.channels_last}" if options else ""))
    print(f"{'preset':46s} {'run':8s} {'crop':>9s} {'img/s':>8s} {'ratio':>7s} {unit:>18s}")
    first = rows[0][3]
    baseline = {}
    for name, label, crop, speed, peak in rows:
        if label == "fp32":
            baseline[name] = speed
            ratio = speed / first  # against the first model
        else:
            ratio = speed / baseline[name]  # against the same model without the options
        print(f"{name:46s} {label:8s} {crop[0]:>4d}x{crop[1]:<4d} {speed:8.2f} {ratio:7.2f} {peak:18.2f}")
    print("ratio: img/s against the first model (fp32 rows) or against the same model's fp32 row (options rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
