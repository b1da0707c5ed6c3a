"""`sceneparse show PRESET`: the fully resolved config as TOML (save it, edit it, pass the file back).

PRESET may be a preset name (any published name), a TOML file or a sceneparse checkpoint, whose
embedded config is shown. `--set` values are checked exactly as `train` checks them.
"""
from __future__ import annotations

import argparse

from sceneparse.cli.model_source import PRESET_HELP, load_model_source
from sceneparse.cli.options import add_overrides
from sceneparse.config import dumps_toml, to_dict


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("show", help="print a preset's resolved config as TOML")
    p.add_argument("preset", help=PRESET_HELP)
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(dumps_toml(to_dict(load_model_source(args.preset, args.set).preset)), end="")
    return 0
