"""`sceneparse infer PRESET_OR_WEIGHTS IMAGE_OR_DIR... --out DIR`: label a user's own pictures.

For each image: NAME.png (a palette PNG whose pixel values are the class ids), NAME_overlay.jpg
(the colours blended over the photo) and NAME_legend.png (the classes present). A file that
cannot be read is named and skipped; the others are still processed, and the exit status is 1
when anything was skipped.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sceneparse.cli.options import add_overrides, add_precision
from sceneparse.config import load_preset
from sceneparse.data.files import write_jpeg, write_png
from sceneparse.errors import ConfigError, DataError
from sceneparse.segmenter import Segmenter, as_rgb_array, is_weights_file, preset_from_weights
from sceneparse.visualize import legend, overlay, save_label_png

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


@dataclass(frozen=True)
class InferJob:
    source: Path
    name: str  # output name without suffix, possibly with sub-folders ("city/frame_001")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("infer", help="label your own images: palette PNG, colour overlay and legend")
    p.add_argument("model", metavar="PRESET_OR_WEIGHTS",
                   help="preset name or .toml, or a sceneparse .safetensors file that names its preset")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", help="weights file or URL (default: the preset's published checkpoint)")
    p.add_argument("--onnx", help="run this exported ONNX model (ONNX Runtime, CPU) instead of PyTorch")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the colours in the overlay (0-1)")
    p.add_argument("--mode", choices=["whole", "slide"], help="inference mode (default: the preset's test.mode)")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip with the preset's test.scales")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_precision(p)
    add_overrides(p)
    p.set_defaults(func=run)


def collect_images(inputs: list[str]) -> list[InferJob]:
    """Files as given and the images inside folders (recursively, sorted), each with a unique output name."""
    jobs: list[InferJob] = []
    used: set[str] = set()
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not p.name.startswith("."))
            if not found:
                log.warning("%s: no images in this folder (looked for %s)", path, ", ".join(IMAGE_SUFFIXES))
            named = [(p, p.relative_to(path).with_suffix("").as_posix()) for p in found]
        else:
            named = [(path, path.stem)]
        for source, name in named:
            unique, n = name, 1
            while unique in used:
                n += 1
                unique = f"{name}_{n}"
            used.add(unique)
            jobs.append(InferJob(source, unique))
    return jobs


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    """The Segmenter the arguments describe (PyTorch weights, or an ONNX file with its preset)."""
    if is_weights_file(args.model):
        if args.set:
            raise ConfigError(f"--set changes a preset; {args.model} is a weights file (pass the preset name and "
                              f"--weights {args.model} to override settings)")
        preset = preset_from_weights(args.model)
        weights = args.weights or args.model
    else:
        preset = load_preset(args.model, args.set)
        weights = args.weights
    if args.onnx:
        if args.weights:
            raise ConfigError("--onnx runs the exported model's own weights; drop --weights")
        return Segmenter.from_onnx(args.onnx, preset, mode=args.mode, tta=args.tta)
    return Segmenter.from_pretrained(preset, weights, device=args.device, mode=args.mode, tta=args.tta,
                                     dtype=args.dtype)


def write_outputs(segmenter: Segmenter, image: np.ndarray, pred: np.ndarray, out: Path, name: str,
                  alpha: float) -> None:
    """NAME.png (class ids with the palette), NAME_overlay.jpg and NAME_legend.png."""
    save_label_png(out / f"{name}.png", pred, segmenter.palette)
    write_jpeg(out / f"{name}_overlay.jpg", overlay(image, pred, segmenter.palette, alpha))
    present = [int(c) for c in np.unique(pred)]
    write_png(out / f"{name}_legend.png", legend(present, segmenter.classes, segmenter.palette))


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha {args.alpha}: expected a value between 0 and 1")
    jobs = collect_images(args.inputs)
    if not jobs:
        raise DataError(f"no images found in {', '.join(args.inputs)}")
    segmenter = build_segmenter(args)
    if segmenter.num_classes > 256:
        raise ConfigError(f"{segmenter.num_classes} classes do not fit an 8-bit palette PNG")
    out = Path(args.out)
    skipped: list[str] = []
    for job in tqdm(jobs, desc="infer", unit="image"):
        try:
            image = as_rgb_array(job.source)
        except DataError as exc:
            skipped.append(str(job.source))
            tqdm.write(f"skipped: {exc}", file=sys.stderr)
            continue
        pred = segmenter.predict(image)
        write_outputs(segmenter, image, pred, out, job.name, args.alpha)
    done = len(jobs) - len(skipped)
    print(f"labelled {done} of {len(jobs)} images into {out}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable: {', '.join(skipped)}", file=sys.stderr)
        return 1
    return 0
