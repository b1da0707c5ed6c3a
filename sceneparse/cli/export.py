"""`sceneparse export onnx PRESET OUT.onnx [--weights W] [--dynamic] [--opset N] [--size HxW]`.

Without --weights: the checkpoint given as PRESET, else the preset's published checkpoint (as `test`).
The file's metadata carries the preset, classes, palette, mean / std and input size policy, so
`sceneparse infer OUT.onnx IMAGES` needs nothing else.

Writes the model with its weights as ONNX, then runs ONNX Runtime and PyTorch on the same random
input and prints their relative L2 difference (at the export size, and at an odd size too when
`--dynamic`), so a broken export is seen at once rather than at deployment.
"""
from __future__ import annotations

import argparse
import logging

from sceneparse.api import build_model
from sceneparse.cli.model_source import PRESET_HELP, load_model_source
from sceneparse.cli.options import add_overrides
from sceneparse.cli.summary import parse_size
from sceneparse.errors import CheckpointError

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # relative L2 between ONNX Runtime and PyTorch logits


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model with its weights for another runtime (ONNX)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser("onnx", help="ONNX graph: normalised N x 3 x H x W image in, logits out")
    onnx.add_argument("preset", help=PRESET_HELP)
    onnx.add_argument("out", help="the .onnx file to write")
    onnx.add_argument("--weights", help="weights file or URL (.safetensors, or an mmseg / ssseg .pth; default: the "
                                        "checkpoint given as PRESET, else the preset's published checkpoint)")
    onnx.add_argument("--dynamic", action="store_true", help="any batch size, height and width (else --size only)")
    onnx.add_argument("--size", type=parse_size, help="example / fixed input HxW (default: the preset's crop size)")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    onnx.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    add_overrides(onnx)
    onnx.set_defaults(func=run_onnx)


def check_sizes(size: tuple[int, int], dynamic: bool) -> list[tuple[int, int]]:
    """The export size, plus (when dynamic) one whose sides are odd and not multiples of the stride."""
    sizes = [size]
    if dynamic:
        sizes.append((max(33, size[0] // 2 + 17), max(33, size[1] // 2 + 49)))
    return sizes


def run_onnx(args: argparse.Namespace) -> int:
    from sceneparse.export.onnx import compare_with_pytorch, export_onnx, preset_metadata
    from sceneparse.hub import resolve_weights

    source = load_model_source(args.preset, args.set)
    preset = source.preset
    size = args.size or (int(preset.data.crop_size[0]), int(preset.data.crop_size[1]))
    weights = resolve_weights(preset, args.weights or source.weights)
    model = build_model(preset, weights).eval()
    path = export_onnx(model, args.out, size, dynamic=args.dynamic, opset=args.opset,
                       metadata=preset_metadata(preset))
    print(f"wrote {path} ({'dynamic batch, height and width' if args.dynamic else f'{size[0]}x{size[1]}'}, "
          f"opset {args.opset})")
    if args.no_check:
        return 0
    worst = 0.0
    for (h, w), error in compare_with_pytorch(model, path, check_sizes(size, args.dynamic)):
        print(f"  {h}x{w}: ONNX Runtime vs PyTorch relative L2 {error:.2e}")
        worst = max(worst, error)
    if worst > TOLERANCE:
        raise CheckpointError(f"{path}: ONNX Runtime differs from PyTorch by {worst:.2e} relative L2 "
                              f"(tolerance {TOLERANCE:g}); do not use this export")
    return 0
