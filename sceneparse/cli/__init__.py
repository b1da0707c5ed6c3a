"""The `sceneparse` command line.

Every subcommand lives in its own module of this package and exposes
`register(subparsers)`, which adds its parser and sets `func` (called with the
parsed namespace, returning an exit status). Adding a command is adding a module
name to `COMMAND_MODULES`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from sceneparse.errors import SceneparseError

COMMAND_MODULES = [
    "presets",
    "show",
    "summary",
    "quickstart",
    "data",
    "train",
    "test",
    "score",
    "infer",
    "plot",
    "convert",
    "zoo",
    "benchmark",
    "export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sceneparse",
        description="Scene parsing with PSPNet, PSANet and UPerNet: presets, training, evaluation, inference.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"sceneparse.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sceneparse.cli.{name}":
                continue  # command not part of this build yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SceneparseError as exc:
        print(f"sceneparse {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sceneparse zoo | head`: the reader has gone, which is no error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # keep Python's exit-time flush quiet
        return 0
