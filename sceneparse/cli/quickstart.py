"""`sceneparse quickstart`: train and evaluate a small PSPNet end to end on generated data (see the README)."""
from __future__ import annotations

import argparse

from sceneparse.cli.options import add_overrides
from sceneparse.engine.quickstart import TARGET_MIOU, run_quickstart


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart", help="synthesise a VOC-layout dataset, train PSPNet R-18-D8 on it, evaluate, draw results")
    p.add_argument("--out", default="quickstart_out", help="where everything is written (default: quickstart_out)")
    add_overrides(p, example="train.max_iters=100 (a faster, worse run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_quickstart(args.out, args.set)
    # mIoU in percent with 2 decimals, as the tables, `test` and the training log print it
    verdict = "as expected" if result.miou > TARGET_MIOU else f"below the {100 * TARGET_MIOU:.2f} this run usually reaches"
    print(f"\nquickstart: validation mIoU {100 * result.miou:.2f} ({verdict})")
    labels = {
        "dataset": "synthetic VOC dataset",
        "run": "training run (checkpoints, log.jsonl, config.toml)",
        "weights": "trained weights",
        "evaluation": "metrics.json / per-class table / plots",
        "overlays": "overlays (image | ground truth | prediction)",
        "curves": "training curves",
    }
    for key, label in labels.items():
        print(f"  {label + ':':55s} {result.files[key]}")
    return 0
