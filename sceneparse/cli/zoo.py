"""`sceneparse zoo`: the published checkpoints that sceneparse can fetch or convert."""
from __future__ import annotations

import argparse

from sceneparse.cli.presets import add_filters
from sceneparse.convert.zoo import zoo_rows


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "zoo", help="list published checkpoints (preset, source, URL, mIoU, SHA-256 prefix)",
        description="Every published checkpoint the presets know. Rows with a URL are downloaded, verified and "
                    "converted on first use (`sceneparse infer PRESET ...`); the others are converted by hand "
                    "with `sceneparse convert`.")
    add_filters(p)
    p.add_argument("--urls", action="store_true", help="print full URLs instead of file names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.source, args.dataset, args.model)
    header = ("preset", "model", "dataset", "format", "mIoU", "sha256", "checkpoint")
    table = [header]
    for r in rows:
        where = r.url if args.urls else r.url.rsplit("/", 1)[-1]
        table.append((r.preset, r.model, r.dataset, r.weights_format, "-" if r.mIoU is None else f"{r.mIoU:.2f}",
                      r.sha256_prefix or "-", where or "(no direct link: download by hand, then sceneparse convert)"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"\n{len(rows)} checkpoints")
    return 0
