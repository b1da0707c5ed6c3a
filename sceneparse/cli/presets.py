"""`sceneparse presets`: the table of presets with their published figures (mIoU, fps, memory)."""
from __future__ import annotations

import argparse

from sceneparse.config import load_preset, preset_names
from sceneparse.config.filters import preset_matches

FILTER_HELP = {
    "model": "only this architecture, by prefix: pspnet, psanet, upernet (psp, psa, uper)",
    "dataset": "only this dataset, by prefix or alias: cityscapes, ade (ade20k), voc (voc_aug, voc12aug), context, "
               "coco, dark, night",
    "source": "only this source, by prefix: mmseg(mentation), sssegmentation, semseg, caffe, chainercv",
}


def add_filters(parser: argparse.ArgumentParser) -> None:
    """`--model`, `--dataset`, `--source`: the same options, with the same matching, for presets and zoo."""
    for key, text in FILTER_HELP.items():
        parser.add_argument(f"--{key}", default="", help=text)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("presets", help="list presets (every row of the published tables)")
    add_filters(p)
    p.set_defaults(func=run)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in preset_names():
        p = load_preset(name)
        if not preset_matches(p, args.model, args.dataset, args.source):
            continue
        schedule = f"{p.train.max_iters // 1000}k it" if p.train.max_iters else f"{p.train.max_epochs} ep"
        crop = "x".join(map(str, p.data.crop_size))
        rows.append((name, p.model.name, f"R-{p.model.backbone.depth}", f"OS{p.model.backbone.output_stride}",
                     p.data.dataset, crop, schedule, _fmt(p.published.mIoU), _fmt(p.published.mIoU_ms_flip),
                     _fmt(p.published.fps), _fmt(p.published.mem_gb, ".1f"), p.published.source))
    header = ("preset", "model", "backbone", "stride", "dataset", "crop", "schedule", "mIoU", "ms+flip", "fps",
              "mem GB", "source")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"\n{len(rows)} presets (mIoU in percent as published; fps and training memory per GPU as the tables "
          "report them, - where they report none)")
    return 0
