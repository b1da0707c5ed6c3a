"""Peak memory of class ids for a huge image: `Segmenter.predict` against the full probability map.

    .venv/bin/python benchmarks/large_image_memory.py                 # 8000 x 8000, 150 classes
    .venv/bin/python benchmarks/large_image_memory.py --size 4000 --threads 2

A narrow ResNet-18 PSPNet with ADE20K's 150 classes and base scale (2048 x 512) labels a random
image of SIZE x SIZE. The script prints the peak resident memory of the process (the image and
the int64 labels included) beside what the full-size probability map alone would take
(`probability_map_bytes`), and the seconds it took. Random weights: memory and time do not
depend on them.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from sceneparse.api import build_model
from sceneparse.config import load_preset
from sceneparse.models.inference import probability_map_bytes
from sceneparse.segmenter import Segmenter

NARROW = ["model.backbone.depth=18", "model.backbone.base_channels=8", "model.backbone.stem_channels=8",
          "model.decode_head.channels=16", "model.aux_head.channels=8"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8000, help="image height and width (default 8000)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = load_preset("pspnet_r50-d8_512x512_80k_ade20k", NARROW)
    seg = Segmenter(build_model(preset).eval(), preset, "cpu")
    image = np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    start = time.perf_counter()
    labels = seg.predict(image)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    full = probability_map_bytes(1, seg.num_classes, args.size, args.size)
    print(f"{args.size}x{args.size}, {seg.num_classes} classes: labels {labels.shape} in {seconds:.0f} s; "
          f"peak resident memory {peak / 1e9:.2f} GB (full probability map alone: {full / 1e9:.1f} GB, "
          f"{full / peak:.0f}x as much)")


if __name__ == "__main__":
    main()
