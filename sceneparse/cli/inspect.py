"""`sceneparse inspect FILE`: what a weights file holds (format, preset, classes, tensors, iteration, SHA-256)."""
from __future__ import annotations

import argparse

from sceneparse.convert.inspect import inspect_weights, to_json

SHOWN_TENSORS = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect", help="what a weights file holds: format, preset, classes, tensors, iteration, SHA-256",
        description="Read a weights file with the converters' own readers (pickled code is never run) and say "
                    "what it is: sceneparse .safetensors or .onnx, mmsegmentation 0.x / 1.x (mmengine) .pth, "
                    "sssegmentation or semseg .pth, Caffe .caffemodel, ChainerCV .npz.")
    p.add_argument("file", help="the weights file")
    p.add_argument("--all", action="store_true", help="list every tensor (default: the first few)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def run(args: argparse.Namespace) -> int:
    report = inspect_weights(args.file)
    if args.json:
        print(to_json(report))
        return 0
    preset = report.preset or "unknown (pass --preset to convert it)"
    if report.preset_from:
        preset += f"  (from its {report.preset_from})"
    classes = "-"
    if report.classes:
        shown = ", ".join(report.classes[:8]) + (", ..." if len(report.classes) > 8 else "")
        classes = f"{len(report.classes)}: {shown}"
    elif report.num_classes:
        classes = f"{report.num_classes} (names not recorded)"
    lines = [
        ("file", report.path),
        ("format", report.format),
        ("preset", preset),
        ("classes", classes),
        ("tensors", f"{len(report.tensors)} ({report.parameters:,} values)"),
        ("iteration", "-" if report.iteration is None else str(report.iteration)),
        ("also holds", ", ".join(report.other_contents) or "-"),
        ("size", _size(report.size_bytes)),
        ("sha256", report.sha256),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    names = list(report.tensors)
    shown = names if args.all else names[:SHOWN_TENSORS]
    for name in shown:
        shape, dtype = report.tensors[name]
        print(f"  {name}  {'x'.join(map(str, shape)) or 'scalar'}  {dtype}")
    if len(shown) < len(names):
        print(f"  ... {len(names) - len(shown)} more (--all lists them)")
    return 0
