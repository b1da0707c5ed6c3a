"""`sceneparse benchmark PRESET [--size HxW] [--batch N] [--device cpu|cuda] [--dtype fp32|bf16|fp16]
[--channels-last] [--compile] [--fuse-bn] [--low-res-heads] [--train] [--warmup N] [--iters N] [--threads N] [--json]`.

Times inference (or a training step with `--train`) of the preset's network with random weights
and prints the median, spread, images/s, peak memory and FLOPs; `--json` prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import torch

from sceneparse.benchmark import BenchmarkSettings, format_result, run_benchmark
from sceneparse.cli.model_source import PRESET_HELP, load_model_source
from sceneparse.cli.options import add_overrides, add_precision
from sceneparse.cli.summary import parse_size
from sceneparse.errors import ConfigError

INFERENCE_BATCH, TRAIN_BATCH = 1, 2  # the default --batch of each mode


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("benchmark", help="speed, memory and FLOPs of a preset (inference or training step)")
    p.add_argument("preset", help=PRESET_HELP)
    p.add_argument("--size", type=parse_size, help="input HxW (default: the preset's crop size)")
    p.add_argument("--batch", type=int, help=f"images per iteration (default {INFERENCE_BATCH}; with --train "
                                            f"{TRAIN_BATCH}: training-mode BatchNorm needs 2 or more)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_precision(p, allow_auto=False)
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (inference: on by default for bf16/fp16 on the CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first iterations)")
    p.add_argument("--fuse-bn", action="store_true", help="fold BatchNorm into the convolutions (inference)")
    p.add_argument("--low-res-heads", action="store_true",
                   help="heads convolve upsampled maps at low resolution (inference; same answers)")
    p.add_argument("--blocked-layout", action="store_true",
                   help="run the ResNet trunk in oneDNN's blocked layout (CPU fp32 with --fuse-bn; same answers)")
    p.add_argument("--winograd", action="store_true",
                   help="the heads' wide 3x3 convolutions by Winograd (CPU fp32; rounding as oneDNN's own)")
    p.add_argument("--train", action="store_true", help="time a full training step instead of inference")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations (default 10)")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: its own choice)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preset = load_model_source(args.preset, args.set).preset
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads {args.threads}: expected 1 or more")
        torch.set_num_threads(args.threads)
    size = args.size or (int(preset.data.crop_size[0]), int(preset.data.crop_size[1]))
    batch = args.batch if args.batch is not None else (TRAIN_BATCH if args.train else INFERENCE_BATCH)
    settings = BenchmarkSettings(size=size, batch=batch, device=args.device, dtype=args.dtype,
                                 channels_last=args.channels_last, compile=args.compile, fuse_bn=args.fuse_bn,
                                 low_res_heads=args.low_res_heads, blocked_layout=args.blocked_layout,
                                 winograd=args.winograd,
                                 train=args.train, warmup=args.warmup, iters=args.iters)
    result = run_benchmark(preset, settings, progress=not args.json)
    print(json.dumps(asdict(result), indent=2) if args.json else format_result(result))
    return 0
