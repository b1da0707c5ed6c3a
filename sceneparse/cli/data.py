"""`sceneparse data {list,prepare,check,synth}`: datasets as released, converted, checked, or synthesised."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sceneparse.data.registry import DATASETS, dataset_info, dataset_names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare, check or synthesise datasets")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    listing = commands.add_parser("list", help="the supported datasets, their classes and splits")
    listing.set_defaults(func=_list)

    prepare = commands.add_parser(
        "prepare", help="convert a raw release into the layout training reads (idempotent, parallel)"
    )
    prepare.add_argument("name", choices=dataset_names(), metavar="NAME", help=", ".join(dataset_names()))
    prepare.add_argument("raw_root", metavar="RAW_ROOT", help="the release as downloaded and extracted")
    prepare.add_argument("out_root", metavar="OUT_ROOT", nargs="?", default=None,
                         help="dataset root to write (default: RAW_ROOT; for voc_aug: the VOC2012 folder)")
    prepare.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    prepare.add_argument("--classes", default="", help="custom: the classes TOML (default ROOT/classes.toml)")
    prepare.set_defaults(func=_prepare)

    check = commands.add_parser("check", help="read every image/label pair and report what is wrong")
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
    check.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    check.set_defaults(func=_check)

    synth = commands.add_parser("synth", help="write a small synthetic dataset in NAME's exact on-disk layout")
    synth.add_argument("name", choices=dataset_names(), metavar="NAME", help=", ".join(dataset_names()))
    synth.add_argument("out_root", metavar="OUT_ROOT")
    synth.add_argument("--n", type=int, default=40, help="images per split (default 40)")
    synth.add_argument("--size", type=int, default=128, help="image height in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
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
