"""`sceneparse plot WORK_DIR`: the training curves (loss, learning rate, validation mIoU) as a PNG."""
from __future__ import annotations

import argparse

from sceneparse.engine.curves import plot_curves


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot", help="draw a training run's loss, LR and mIoU curves (PNG)")
    p.add_argument("work_dir", help="the --work-dir of `sceneparse train`")
    p.add_argument("--out", help="PNG to write (default: WORK_DIR/curves.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = plot_curves(args.work_dir, args.out)
    print(f"wrote {path}")
    return 0
