"""`sceneparse show PRESET`: the fully resolved config as TOML (save it, edit it, pass the file back)."""
from __future__ import annotations

import argparse

from sceneparse.cli.options import add_overrides
from sceneparse.config import dumps_toml, load_preset, to_dict


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("show", help="print a preset's resolved config as TOML")
    p.add_argument("preset", help="preset name or a .toml file")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(dumps_toml(to_dict(load_preset(args.preset, args.set))), end="")
    return 0
