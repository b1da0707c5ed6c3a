"""`sceneparse infer PRESET_OR_WEIGHTS IMAGE_OR_DIR... --out DIR`: label a user's own pictures.

For each image: NAME.png (a palette PNG whose pixel values are the class ids), NAME_overlay.jpg
(the colours blended over the photo) and NAME_legend.png (the classes present). A file that
cannot be read is named and skipped; the others are still processed, and the exit status is 1
when anything was skipped.

A video (mp4, avi, mov, mkv) gives NAME_overlay.mp4 at its own frame rate and size, and with
`--save-labels` a palette PNG per frame in NAME_labels/; `--camera N` shows camera N labelled live
(`sceneparse.video`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sceneparse.atomic import remove_stale_temporaries
from sceneparse.cli.model_source import load_model_source
from sceneparse.cli.options import add_overrides, add_precision
from sceneparse.data.files import write_jpeg, write_png
from sceneparse.errors import ConfigError, DataError
from sceneparse.segmenter import Segmenter, as_rgb_array
from sceneparse.video import VIDEO_SUFFIXES, is_video, label_video, require_window, run_camera
from sceneparse.visualize import legend, overlay, save_label_png

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


@dataclass(frozen=True)
class InferJob:
    source: Path
    name: str  # output name without suffix, possibly with sub-folders ("city/frame_001")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("infer", help="label your own images (palette PNG, colour overlay, legend), videos "
                                            "(overlaid video) or a camera (live window)")
    p.add_argument("model", metavar="MODEL",
                   help="preset name or .toml, a sceneparse .safetensors checkpoint (its embedded config), or an "
                        ".onnx export (its metadata names the preset)")
    p.add_argument("inputs", nargs="*", metavar="IMAGE_VIDEO_OR_DIR",
                   help="image and video files (mp4, avi, mov, mkv) and/or folders of them")
    p.add_argument("--out", default="infer_out", help="output folder (default: infer_out)")
    p.add_argument("--weights", help="weights file or URL (default: the preset's published checkpoint)")
    p.add_argument("--onnx", help="run this exported ONNX model (ONNX Runtime, CPU) instead of PyTorch; "
                                  "MODEL may then be left out (the export names its preset)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the colours in the overlay (0-1)")
    p.add_argument("--mode", choices=["whole", "slide"], help="inference mode (default: the preset's test.mode)")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip with the preset's test.scales")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--save-labels", action="store_true",
                   help="videos: also a palette PNG of class ids per frame (OUT/NAME_labels/frame_000000.png)")
    p.add_argument("--batch", type=int, default=1, help="videos: frames per forward (default 1; more is faster "
                                                        "on a GPU)")
    p.add_argument("--camera", type=int, metavar="N",
                   help="show camera N (0 = the first) labelled live in a window instead of reading files")
    add_precision(p)
    add_overrides(p)
    p.set_defaults(func=run, trailing_positionals="inputs")  # `infer PRESET --onnx m.onnx photos/` too


def collect_images(inputs: list[str]) -> list[InferJob]:
    """Files as given and the images inside folders (recursively, sorted), each with a unique output name."""
    jobs: list[InferJob] = []
    used: set[str] = set()
    for text in inputs:
        path = Path(text).expanduser()
        if not path.exists():
            raise DataError(f"{text}: no such file or folder (an input to label)")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
                           and not p.name.startswith("."))
            if not found:
                log.warning("%s: no images or videos in this folder (looked for %s)", path,
                            ", ".join(IMAGE_SUFFIXES + VIDEO_SUFFIXES))
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


def split_model_and_inputs(args: argparse.Namespace) -> None:
    """`infer model.onnx photos/` and `infer --onnx model.onnx photos/`: no preset is needed, so MODEL
    is then the export (args.onnx) or the first input."""
    if Path(args.model).suffix.lower() == ".onnx":
        if args.onnx:
            raise ConfigError(f"two ONNX models: {args.model} and --onnx {args.onnx}; give one")
        args.onnx, args.model = args.model, ""
    elif args.onnx and (Path(args.model).is_dir() or Path(args.model).suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES):
        args.inputs, args.model = [args.model, *args.inputs], ""


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    """The Segmenter the arguments describe (PyTorch weights, or an ONNX file with its recorded preset)."""
    if args.onnx:
        if args.weights:
            raise ConfigError("--onnx runs the exported model's own weights; drop --weights")
        preset = load_model_source(args.model, args.set).preset if args.model else None
        if preset is None and args.set:
            raise ConfigError("--set changes a preset; an ONNX export runs as exported (name the preset to override "
                              "its test settings)")
        return Segmenter.from_onnx(args.onnx, preset, mode=args.mode, tta=args.tta)
    source = load_model_source(args.model, args.set)
    return Segmenter.from_pretrained(source.preset, args.weights or source.weights, device=args.device,
                                     mode=args.mode, tta=args.tta, dtype=args.dtype)


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
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: expected 1 or more frames per forward")
    split_model_and_inputs(args)
    if args.camera is not None:
        if args.inputs:
            raise ConfigError(f"--camera reads camera {args.camera}; drop the files ({' '.join(args.inputs)}) "
                              "or the --camera option")
        require_window(args.camera)  # before the model is built (or downloaded)
        shown = run_camera(build_segmenter(args), args.camera, args.alpha)
        print(f"showed {shown} labelled frames of camera {args.camera}")
        return 0
    if not args.inputs:
        raise ConfigError("nothing to label: give image or video files or folders, or --camera N")
    jobs = collect_images(args.inputs)
    if not jobs:
        raise DataError(f"no images found in {', '.join(args.inputs)} (nor videos: {', '.join(VIDEO_SUFFIXES)})")
    segmenter = build_segmenter(args)
    if segmenter.num_classes > 256:
        raise ConfigError(f"{segmenter.num_classes} classes do not fit an 8-bit palette PNG")
    out = Path(args.out)
    remove_stale_temporaries(out)  # of an earlier run that was killed mid-write
    skipped: list[str] = []
    for job in tqdm(jobs, desc="infer", unit="file", disable=len(jobs) == 1):  # a video has its own bar
        try:
            if is_video(job.source):
                result = label_video(segmenter, job.source, out, job.name, args.alpha, args.save_labels,
                                     args.batch)
                tqdm.write(f"{job.source}: {result.frames} frames -> {result.video}")
                continue
            image = as_rgb_array(job.source)
        except DataError as exc:
            skipped.append(str(job.source))
            tqdm.write(f"skipped: {exc}", file=sys.stderr)
            continue
        pred = segmenter.predict(image)
        write_outputs(segmenter, image, pred, out, job.name, args.alpha)
    done = len(jobs) - len(skipped)
    kind = "images and videos" if any(is_video(job.source) for job in jobs) else "images"
    print(f"labelled {done} of {len(jobs)} {kind} into {out}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable: {', '.join(skipped)}", file=sys.stderr)
        return 1
    return 0
