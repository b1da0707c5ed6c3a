"""`sceneparse score PRED_DIR GT_DIR --dataset NAME [--out metrics.json]`: score predictions made elsewhere."""
from __future__ import annotations

import argparse
from pathlib import Path

from sceneparse.data.registry import dataset_info, dataset_names
from sceneparse.evaluation.cityscapes_official import official_metrics
from sceneparse.evaluation.metrics import EXTRA_METRICS, compute_metrics, format_table, parse_metric_names
from sceneparse.evaluation.pred_encoding import ENCODINGS
from sceneparse.evaluation.report import write_report
from sceneparse.evaluation.score import score_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("score", help="score label PNGs made elsewhere against a dataset's ground truth")
    p.add_argument("pred_dir", help="folder of predicted label PNGs: sceneparse's, mmsegmentation's or a "
                                    "benchmark server's layout (Cityscapes results, ADE20K SceneParsing)")
    p.add_argument("gt_dir", help="the dataset root, or its folder of label files")
    p.add_argument("--dataset", required=True, choices=dataset_names(), help="dataset the labels belong to")
    p.add_argument("--split", default="val", help="split, when GT_DIR is the dataset root (default: val)")
    p.add_argument("--classes", default="", help="classes TOML of a custom dataset (default: GT_DIR/classes.toml)")
    p.add_argument("--encoding", default="auto", choices=ENCODINGS,
                   help="what prediction values mean: training ids (255 = void), Cityscapes labelIds, or "
                        "1-based with 0 = other (ADE20K SceneParsing); default: told from the files")
    p.add_argument("--out", default="metrics.json", help="metrics file; the table and plots go beside it")
    p.add_argument("--metrics", default="", metavar="NAMES",
                   help=f"extra metrics, comma-separated: {','.join(EXTRA_METRICS)} or all")
    p.add_argument("--per-image", default="", metavar="CSV", help="write each image's mIoU and accuracy, worst first")
    p.add_argument("--no-figures", action="store_true", help="skip the confusion and IoU plots")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    classes_file = args.classes or (str(Path(args.gt_dir) / "classes.toml") if args.dataset == "custom" else "")
    info = dataset_info(args.dataset, classes_file)
    extra = parse_metric_names(args.metrics)
    result = score_folder(info, args.pred_dir, args.gt_dir, args.split, encoding=args.encoding)
    metrics = compute_metrics(result.matrix.matrix, info.classes, extra)
    metrics["num_images"] = result.count
    metrics["encoding"] = result.encoding
    if result.official is not None:
        metrics["cityscapes"] = official_metrics(result.official)
    out = Path(args.out)
    title = f"{args.pred_dir} against {info.name} ({result.count} images, {result.encoding})"
    write_report(metrics, result.matrix.matrix.numpy(), info.classes, out.parent, title, not args.no_figures,
                 out.name)
    print(format_table(metrics, title))
    print(f"wrote {out}")
    if args.per_image:
        print(f"wrote {result.per_image.write_csv(args.per_image)} (worst image first)")
    return 0
