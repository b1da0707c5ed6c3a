"""`sceneparse convert`: a peer's checkpoint -> sceneparse safetensors, checked against a preset's model."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sceneparse.atomic import file_sha256
from sceneparse.cli.model_source import load_model_source
from sceneparse.cli.options import add_overrides
from sceneparse.config import load_preset
from sceneparse.config.loader import to_dict
from sceneparse.config.names import preset_for_checkpoint
from sceneparse.errors import CheckpointError

log = logging.getLogger(__name__)
SOURCES = ("mmseg", "sssegmentation", "semseg", "caffe", "chainercv")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a published checkpoint (mmseg, sssegmentation, semseg, caffe, chainercv)",
        description="Rename every tensor of SRC through the source's explicit key map, check its shape against "
                    "the preset's model and write DST as safetensors with the preset, the source format and the "
                    "source file's SHA-256 in its metadata. Pickled objects in SRC are refused, never run.")
    p.add_argument("--from", dest="fmt", required=True, choices=SOURCES, help="the checkpoint's toolbox")
    p.add_argument("src", type=Path, help="the checkpoint: .pth (mmseg, sssegmentation, semseg), "
                                          ".caffemodel (caffe) or .npz (chainercv)")
    p.add_argument("dst", type=Path, help="the sceneparse weights file to write (.safetensors)")
    p.add_argument("--preset", help="preset (name, TOML file or sceneparse checkpoint) whose model the weights are "
                                   "for (default: the preset a published checkpoint's file name names)")
    add_overrides(p, dest="overrides", example="model.num_classes=21")
    p.add_argument("--prototxt", type=Path, help="caffe only: the deploy .prototxt (its BN and pooling settings "
                                                 "take precedence over those stored in the .caffemodel)")
    p.set_defaults(func=run)



def _preset_recorded_in(src: Path) -> str:
    """The preset a checkpoint's own metadata names (an mmengine run's experiment name), or ""."""
    from sceneparse.convert.inspect import inspect_weights

    try:
        return inspect_weights(src).preset
    except CheckpointError:  # unreadable: said once the preset is known and the file is converted
        return ""


def run(args: argparse.Namespace) -> int:
    from sceneparse.convert import convert_checkpoint
    from sceneparse.weights import save_weights

    if args.dst.suffix != ".safetensors":
        raise CheckpointError(f"{args.dst}: the output must be a .safetensors file")
    if args.prototxt is not None and args.fmt != "caffe":
        raise CheckpointError("--prototxt is for --from caffe only")
    if args.preset:
        preset = load_model_source(args.preset, args.overrides).preset
    else:
        name = preset_for_checkpoint(args.src) or _preset_recorded_in(args.src)
        if not name:
            raise CheckpointError(f"{args.src}: neither its file name nor its metadata names a preset; pass --preset "
                                  f"PRESET (`sceneparse inspect {args.src}` shows what the file holds)")
        preset = load_preset(name, args.overrides)
        print(f"{args.src.name}: a checkpoint of preset {name}")
    state = convert_checkpoint(args.fmt, args.src, preset, prototxt=args.prototxt)
    metadata = {
        "preset": preset.name,
        "source_format": args.fmt,
        "source_file": args.src.name,
        "source_sha256": file_sha256(args.src),
        "config": to_dict(preset),  # the resolved preset, --set included: the file describes its model
    }
    if args.prototxt is not None:
        metadata["source_prototxt_sha256"] = file_sha256(args.prototxt)
    save_weights(state, args.dst, metadata=metadata)
    print(f"wrote {args.dst}: {len(state)} tensors for preset {preset.name} ({args.fmt} -> sceneparse)")
    return 0
