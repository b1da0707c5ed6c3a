"""`sceneparse data {list,prepare,check,synth}`: datasets as released, converted, checked, or synthesised."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sceneparse.cli.options import count
from sceneparse.data.registry import DATASETS, dataset_info, dataset_names

_DATA_DESCRIPTION = """\
Datasets as their authors release them. Typical order:
  sceneparse data prepare NAME RAW_ROOT   convert raw labels where the recipes train on converted ones
  sceneparse data check NAME ROOT         read every pair, report what would spoil training
  sceneparse data synth NAME OUT_ROOT     a small fake dataset in NAME's layout (tests, quickstart)
`sceneparse data list` shows the datasets, their classes and splits."""

_PREPARE_DESCRIPTION = """\
Convert a raw release into the layout training reads. Parallel over files with a progress bar,
idempotent (finished files are skipped, each file is written atomically: rerun after an interruption).
  cityscapes           gtFine/*/*/*_labelIds.png -> *_labelTrainIds.png (official 34 -> 19 ids)
  voc_aug              SBD cls/*.mat -> VOC2012/SegmentationClassAug/*.png, plus aug.txt and trainaug.txt
  pascal_context(_59)  trainval/*.mat (459 classes) -> SegmentationClassContext/*.png (60 classes)
  coco_stuff10k        annotations/*.mat -> annotations/{train2014,test2014}/*_labelTrainIds.png
  coco_stuff164k       stuffthingmaps annotations/*/*.png -> *_labelTrainIds.png (171 ids)
  others               nothing to convert: the labels are checked instead
Exit status 1 when a check finds errors."""

_PREPARE_EPILOG = """\
examples:
  sceneparse data prepare cityscapes data/cityscapes
  sceneparse data prepare voc_aug data/benchmark_RELEASE data/VOCdevkit/VOC2012
  sceneparse data prepare coco_stuff164k data/coco_stuff164k --workers 4"""

_CHECK_DESCRIPTION = """\
Read every image/label pair of a split and report: image and label counts, missing partners,
unreadable or truncated files, image/label size mismatches, label values outside the classes
and the ignore index (naming the files and values), a class-frequency table, and a hint when the
values look like a wrong encoding (Cityscapes labelIds instead of trainIds, ADE20K read without
reduce_zero_label, unconverted COCO-Stuff or Pascal Context labels).
Exit status: 0 when the split is usable, 1 on any error. Training runs the --quick part on start."""

_CHECK_EPILOG = """\
examples:
  sceneparse data check cityscapes data/cityscapes --split val
  sceneparse data check ade20k data/ade/ADEChallengeData2016 --quick
  sceneparse data check custom data/mine --classes data/mine/classes.toml"""

_SYNTH_DESCRIPTION = """\
Write a small synthetic dataset in exactly NAME's on-disk layout and label encoding (the raw
encoding where `data prepare` converts: Cityscapes labelIds, SBD .mat, ...). Images are textured
shapes on a textured background, one texture per class, so a model can learn them; across the set
every id of the release appears. Tests and the quickstart use it."""

_SYNTH_EPILOG = """\
examples:
  sceneparse data synth voc /tmp/voc --n 40 --size 128      # VOCdevkit/VOC2012 layout, ready to train
  sceneparse data synth cityscapes /tmp/cs --n 8            # then: sceneparse data prepare cityscapes /tmp/cs"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="prepare, check or synthesise datasets", description=_DATA_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    listing = commands.add_parser("list", help="the supported datasets, their classes and splits")
    listing.set_defaults(func=_list)

    prepare = commands.add_parser(
        "prepare", help="convert a raw release into the layout training reads (idempotent, parallel)",
        description=_PREPARE_DESCRIPTION, epilog=_PREPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument("name", choices=dataset_names(), metavar="NAME", help=", ".join(dataset_names()))
    prepare.add_argument("raw_root", metavar="RAW_ROOT", help="the release as downloaded and extracted")
    prepare.add_argument("out_root", metavar="OUT_ROOT", nargs="?", default=None,
                         help="dataset root to write (default: RAW_ROOT; for voc_aug: the VOC2012 folder)")
    prepare.add_argument("--workers", type=count, default=None, help="processes (default: CPU count, at most 8)")
    prepare.add_argument("--classes", default="", help="custom: the classes TOML (default ROOT/classes.toml)")
    prepare.set_defaults(func=_prepare)

    check = commands.add_parser(
        "check", help="read every image/label pair and report what is wrong", description=_CHECK_DESCRIPTION,
        epilog=_CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("name", choices=dataset_names(), metavar="NAME", help=", ".join(dataset_names()))
    check.add_argument("root", metavar="ROOT", help="the dataset root")
    check.add_argument("--split", default=None, help="split to check (default: the dataset's first)")
    check.add_argument("--classes", default="", help="custom: the classes TOML (default ROOT/classes.toml)")
    zero = check.add_mutually_exclusive_group()
    zero.add_argument("--reduce-zero-label", dest="reduce_zero_label", action="store_true", default=None,
                      help="read labels with 0 = other (override the dataset's setting)")
    zero.add_argument("--no-reduce-zero-label", dest="reduce_zero_label", action="store_false",
                      help="read labels with 0 as a class (override the dataset's setting)")
    check.add_argument("--quick", action="store_true", help="only the cheap part that training runs on start")
    check.add_argument("--workers", type=count, default=None, help="processes (default: CPU count, at most 8)")
    check.set_defaults(func=_check)

    synth = commands.add_parser(
        "synth", help="write a small synthetic dataset in NAME's exact on-disk layout", description=_SYNTH_DESCRIPTION,
        epilog=_SYNTH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument("name", choices=dataset_names(), metavar="NAME", help=", ".join(dataset_names()))
    synth.add_argument("out_root", metavar="OUT_ROOT", help="folder to write (created; existing files are overwritten)")
    synth.add_argument("--n", type=int, default=40, help="images per split (default 40)")
    synth.add_argument("--size", type=int, default=128, help="image height in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    synth.add_argument("--workers", type=count, default=None, help="processes (default: CPU count, at most 8)")
    synth.set_defaults(func=_synth)


def _list(args: argparse.Namespace) -> int:
    for name, info in DATASETS.items():
        extra = ", reduce_zero_label" if info.reduce_zero_label else ""
        extra += ", evaluation only" if info.eval_only else ""
        print(f"{name:18s} {info.num_classes:4d} classes  splits {'/'.join(info.splits):18s} {info.title}{extra}")
    print(f"{'custom':18s}    ? classes  images/ + labels/ + classes.toml (see sceneparse.data.custom)")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from sceneparse.data.prepare import prepare

    summary = prepare(args.name, args.raw_root, args.out_root, workers=args.workers, classes_file=args.classes)
    print(summary.text())
    return 0 if summary.ok else 1


def _check(args: argparse.Namespace) -> int:
    from sceneparse.data.check import check_dataset

    classes = args.classes or (str(Path(args.root) / "classes.toml") if args.name == "custom" else "")
    info = dataset_info(args.name, classes)
    if args.reduce_zero_label is not None:
        info = dataclasses.replace(info, reduce_zero_label=args.reduce_zero_label)
    split = args.split or info.splits[0]
    report = check_dataset(info, args.root, split, quick=args.quick, workers=args.workers)
    print(report.summary())
    return 0 if report.ok else 1


def _synth(args: argparse.Namespace) -> int:
    from sceneparse.data.synth import NEXT_STEP, synthesize

    out = synthesize(args.name, args.out_root, n=args.n, size=args.size, seed=args.seed, workers=args.workers)
    print(f"wrote a synthetic {args.name} dataset ({args.n} images per split) to {out}")
    if args.name in NEXT_STEP:
        print("its labels are in the raw release encoding; convert them with:")
        print("  " + NEXT_STEP[args.name].format(out=out))
    return 0
