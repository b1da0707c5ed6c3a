"""`sceneparse test PRESET --weights PATH_OR_URL --data-root DIR`: score a model as the published tables did.

Writes metrics.json, metrics.txt, confusion.png and class_iou.png to --out; runs on every process
torchrun starts (`torchrun --nproc-per-node 4 -m sceneparse test ...`), each image counted once.
"""
from __future__ import annotations

import argparse

from sceneparse.cli.model_source import PRESET_HELP, load_model_source
from sceneparse.cli.options import add_overrides, add_precision, count
from sceneparse.evaluation.metrics import EXTRA_METRICS, parse_metric_names
from sceneparse.evaluation.runner import TestOptions, run_test


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("test", help="evaluate a model on a dataset split (mIoU table, metrics.json, plots)")
    p.add_argument("preset", help=PRESET_HELP)
    p.add_argument("--weights", help="weights file or URL (default: the checkpoint given as PRESET, else the "
                                     "preset's published checkpoint)")
    p.add_argument("--data-root", default="", help="dataset root (default: the preset's data.root)")
    p.add_argument("--split", default="", help="split to score (default: the preset's data.val_split)")
    p.add_argument("--mode", choices=["whole", "slide"], help="inference mode (default: the preset's test.mode)")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip with the preset's test.scales")
    p.add_argument("--out", default="test_out", help="output folder (default: test_out)")
    p.add_argument("--metrics", default="", metavar="NAMES",
                   help=f"extra metrics, comma-separated: {','.join(EXTRA_METRICS)} or all")
    p.add_argument("--save-pred", action="store_true", help="write predictions as palette PNGs of class ids (OUT/pred)")
    p.add_argument("--cityscapes-format", action="store_true",
                   help="write labelIds PNGs under the benchmark server's names (OUT/cityscapes_results)")
    p.add_argument("--format-only", action="store_true",
                   help="no scoring (labels may be absent, e.g. --split test): write what the benchmark server "
                        "takes, Cityscapes labelIds + zip, ADE20K SceneParsing + zip, VOC results layout + tar.gz")
    p.add_argument("--per-image", default="", metavar="CSV", help="write each image's mIoU and accuracy, worst first")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=count, help="data loading workers (default: the preset's data.num_workers)")
    p.add_argument("--window-batch", type=int, default=1, help="slide windows per forward (faster on a GPU)")
    add_precision(p, default="fp32")  # the published numbers are fp32
    p.add_argument("--no-figures", action="store_true", help="skip the confusion and IoU plots")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = load_model_source(args.preset, args.set)
    preset = source.preset
    options = TestOptions(
        weights=args.weights or source.weights,
        data_root=args.data_root,
        split=args.split,
        mode=args.mode,
        tta=args.tta,
        out_dir=args.out,
        extra_metrics=parse_metric_names(args.metrics),
        save_pred=args.save_pred,
        cityscapes_format=args.cityscapes_format,
        format_only=args.format_only,
        per_image=args.per_image,
        device=args.device,
        num_workers=args.workers,
        window_batch=args.window_batch,
        dtype=args.dtype,
        figures=not args.no_figures,
    )
    run_test(preset, options)
    return 0
