"""Options several subcommands share, declared once so their spelling and help cannot drift apart."""
from __future__ import annotations

import argparse

PRECISIONS = ("fp32", "bf16", "fp16")


def add_overrides(parser: argparse.ArgumentParser, dest: str = "set",
                  example: str = "train.lr=0.02") -> None:
    """`--set KEY=VALUE` (repeatable): a TOML value for any config field."""
    parser.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value (TOML syntax, repeatable), e.g. --set {example}")


def add_precision(parser: argparse.ArgumentParser, allow_auto: bool = True, default: str = "auto") -> None:
    """`--dtype`: the forward's autocast precision; "auto" picks the fastest measured one for the device
    (`sceneparse.dtype_choice`). A benchmark names its precision itself; `test` defaults to fp32, the
    precision the published numbers were computed in."""
    if allow_auto:
        parser.add_argument("--dtype", choices=("auto", *PRECISIONS), default=default,
                            help=f"forward precision (default {default}; auto: bf16/fp16 on GPUs with tensor "
                                 "cores, bf16 on CPUs with native bf16 where measured faster, else fp32; the log "
                                 "says which)")
    else:
        parser.add_argument("--dtype", choices=PRECISIONS, default="fp32",
                            help="forward precision (bf16/fp16 autocast: faster on GPUs and bf16-capable CPUs)")


def count(text: str) -> int:
    """argparse type for a number of workers: an integer, 0 or more."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive(text: str) -> int:
    """argparse type for an iteration: an integer, 1 or more."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
