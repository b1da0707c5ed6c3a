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
import re
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
    "inspect",
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
    parser.add_argument("-V", "--version", action="version", version=f"sceneparse {_version()}")
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


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _version() -> str:
    from sceneparse import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse gives a list positional (nargs="*") everything before the first option, so in
    # `infer PRESET --onnx m.onnx photos/` "photos/" would be left over: a command that names its list
    # positional in `trailing_positionals` takes such leftovers (never options) as more of it.
    target = getattr(args, "trailing_positionals", "")
    if extra and target and not any(item.startswith("-") for item in extra):
        setattr(args, target, [*getattr(args, target), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
        message = ANSI_ESCAPE.sub("", str(exc))  # no terminal colour codes, whoever wrote the message
        print(f"sceneparse {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sceneparse zoo | head`: the reader has gone, which is no error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # keep Python's exit-time flush quiet
        return 0
    except OSError as exc:
        from sceneparse.atomic import is_disk_full

        if not is_disk_full(exc):
            raise
        where = f" while writing {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"sceneparse {args.command}: error: no space left on device{where}; free some space and run "
              "the command again", file=sys.stderr)
        return 1
