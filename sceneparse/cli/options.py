"""Options several subcommands share, declared once so their spelling and help cannot drift apart."""
from __future__ import annotations

import argparse

PRECISIONS = ("fp32", "bf16", "fp16")


def add_overrides(parser: argparse.ArgumentParser, dest: str = "set",
                  example: str = "train.lr=0.02") -> None:
    """`--set KEY=VALUE` (repeatable): a TOML value for any config field."""
    parser.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value (TOML syntax, repeatable), e.g. --set {example}")


def add_precision(parser: argparse.ArgumentParser) -> None:
    """`--dtype`: the forward's autocast precision."""
    parser.add_argument("--dtype", choices=PRECISIONS, default="fp32",
                        help="forward precision (bf16/fp16 autocast: faster on GPUs and bf16-capable CPUs)")
