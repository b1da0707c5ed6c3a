"""`sceneparse presets`: the table of presets with their published figures."""
from __future__ import annotations

import argparse

from sceneparse.config import load_preset, preset_names


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("presets", help="list presets (every row of the published tables)")
    p.add_argument("--model", help="only this architecture: pspnet, psanet or upernet")
    p.add_argument("--dataset", help="only presets evaluated on this dataset (e.g. cityscapes, ade20k)")
    p.add_argument("--source", help="only rows of this source: mmsegmentation, sssegmentation, chainercv")
    p.set_defaults(func=run)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in preset_names():
        p = load_preset(name)
        if args.model and p.model.name != args.model:
            continue
        if args.dataset and args.dataset not in (p.data.dataset, p.data.dataset.split("_")[0]):
            continue
        if args.source and p.published.source != args.source:
            continue
        schedule = f"{p.train.max_iters // 1000}k it" if p.train.max_iters else f"{p.train.max_epochs} ep"
        crop = "x".join(map(str, p.data.crop_size))
        rows.append((name, p.model.name, f"R-{p.model.backbone.depth}", f"OS{p.model.backbone.output_stride}",
                     p.data.dataset, crop, schedule, _fmt(p.published.mIoU), _fmt(p.published.mIoU_ms_flip),
                     _fmt(p.published.fps), p.published.source))
    header = ("preset", "model", "backbone", "stride", "dataset", "crop", "schedule", "mIoU", "ms+flip", "fps",
              "source")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"\n{len(rows)} presets")
    return 0
