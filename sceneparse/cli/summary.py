"""`sceneparse summary PRESET [--size HxW]`: parameters, FLOPs, output stride and stage shapes."""
from __future__ import annotations

import argparse

from sceneparse.cli.model_source import PRESET_HELP, load_model_source
from sceneparse.cli.options import add_overrides
from sceneparse.summary import format_summary, summarize


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024); a single number means a square."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 512x1024") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 512x1024")
    return parts[0], parts[1]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("summary", help="parameters, FLOPs, output stride and stage shapes of a preset")
    p.add_argument("preset", help=PRESET_HELP)
    p.add_argument("--size", type=parse_size, help="input HxW (default: the preset's crop size)")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preset = load_model_source(args.preset, args.set).preset
    size = args.size or tuple(preset.data.crop_size)
    print(format_summary(preset.name, summarize(preset.model, size)))
    return 0
