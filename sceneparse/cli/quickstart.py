"""`sceneparse quickstart`: the end-to-end first run on a built-in default (see the README)."""
from __future__ import annotations

import argparse

import torch

from sceneparse.api import build_model
from sceneparse.config import load_preset
from sceneparse.summary import format_summary, summarize

DEFAULT_PRESET = "pspnet_r18-d8_512x1024_80k_cityscapes"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quickstart", help="a first end-to-end run on a built-in default")
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--out", default="quickstart_out", help="where results are written")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preset = load_preset(args.preset)
    print(format_summary(preset.name, summarize(preset.model, (256, 512))))
    model = build_model(preset).eval()
    image = torch.randn(1, 3, 256, 512)
    with torch.no_grad():
        out = model(image)["out"]
    print(f"forward on a generated 256x512 image: logits {tuple(out.shape)}, "
          f"classes predicted: {out.argmax(1).unique().numel()}")
    return 0
