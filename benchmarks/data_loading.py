"""Training-pipeline throughput: samples per second for the published Cityscapes 512x1024 and
ADE20K 512x512 recipes, on synthetic data generated into a temporary folder in the real layouts.

    .venv/bin/python benchmarks/data_loading.py                       # workers 0 and the CPU count
    .venv/bin/python benchmarks/data_loading.py --workers 0 2 4 8 --batches 20 --json loading.json

For each recipe the script reads the preset's DataConfig (scale, ratio range, crop, cat_max_ratio,
flip, photometric distortion), builds the dataset exactly as training does and times
`build_dataloader` batches (batch 2 per process, as the 4- and 8-GPU recipes use). The baseline,
measured in the same run, is the loader with workers=0 (everything in the main process); every
other row is a ratio against it. A per-stage split of the single-process time (decode image,
decode label, transforms) says where the time goes. Synthetic images are full size (Cityscapes
2048x1024, ADE20K about 512 pixels high), so decode and resize costs match the real sets; PNG
vs JPEG matches the releases too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sceneparse.config import load_preset  # noqa: E402
from sceneparse.config.schema import DataConfig  # noqa: E402
from sceneparse.data import transforms as T  # noqa: E402
from sceneparse.data.dataset import build_dataset  # noqa: E402
from sceneparse.data.files import read_image  # noqa: E402
from sceneparse.data.loader import build_dataloader  # noqa: E402
from sceneparse.data.prepare import prepare  # noqa: E402
from sceneparse.data.synth import synthesize  # noqa: E402
from sceneparse.data.transforms import TrainTransform  # noqa: E402

# recipe -> (preset whose data section is timed, synthetic image height)
RECIPES = {
    "cityscapes 512x1024": ("pspnet_r50-d8_512x1024_40k_cityscapes", 1024),
    "ade20k 512x512": ("pspnet_r50-d8_512x512_80k_ade20k", 512),
}


@dataclass
class Row:
    recipe: str
    workers: int
    samples_per_s: float
    ratio: float


def make_data(dataset: str, height: int, n: int, root: Path) -> Path:
    """Synthesise `n` training images of `dataset` (converting raw labels as a user would)."""
    out = root / dataset
    if not (out / ".done").exists():
        synthesize(dataset, out, n=n, size=height, seed=0, workers=None, progress=True)
        if dataset == "cityscapes":
            prepare(dataset, out, workers=None, progress=True)
        (out / ".done").touch()
    return out


def time_loader(cfg: DataConfig, workers: int, batch: int, batches: int, warmup: int) -> float:
    """Samples per second of the training loader, after `warmup` batches (worker start-up excluded)."""
    dataset = build_dataset(cfg, cfg.train_split, train=True)
    loader = build_dataloader(dataset, batch, train=True, num_workers=workers, seed=0, distributed=False)
    seen, epoch, start = 0, 0, None
    while True:
        loader.sampler.set_epoch(epoch)
        for index, item in enumerate(loader):
            if epoch == 0 and index == warmup - 1:
                start, seen = time.perf_counter(), 0
                continue
            if start is not None:
                seen += item["image"].shape[0]
                if seen >= batches * batch:
                    return seen / (time.perf_counter() - start)
        epoch += 1


class UnfusedTrainTransform(TrainTransform):
    """The training pipeline as mmsegmentation runs it: resize the whole image, then crop."""

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        image, label = T.random_resize(image, label, self.scale, self.ratio_range, rng)
        image, label = T.random_crop(image, label, self.crop, self.cat_max_ratio, self.ignore_index, rng)
        image, label = T.random_flip(image, label, self.flip_prob, rng)
        if self.photometric:
            image = T.photometric_distortion(image, rng)
        return T.pad_to(T.normalize(image, self.mean, self.std), T.label_tensor(label), self.crop, self.ignore_index)


def stage_split(cfg: DataConfig, samples: int) -> dict[str, float]:
    """Milliseconds per sample of each stage, in this process; the transforms fused and unfused."""
    dataset = build_dataset(cfg, cfg.train_split, train=True, check=False)
    fused, unfused = TrainTransform(cfg), UnfusedTrainTransform(cfg)
    totals = {"decode image": 0.0, "decode label": 0.0, "transforms": 0.0, "transforms unfused": 0.0}
    for i in range(samples):
        t0 = time.perf_counter()
        image = read_image(dataset.samples[i % len(dataset)].image)
        t1 = time.perf_counter()
        image, label = dataset.load(i % len(dataset))  # the label, encoded (the image decoded again)
        t2 = time.perf_counter()
        fused(image, label, np.random.default_rng(i))
        t3 = time.perf_counter()
        unfused(image, label, np.random.default_rng(i))
        t4 = time.perf_counter()
        totals["decode image"] += t1 - t0
        totals["decode label"] += (t2 - t1) - (t1 - t0)
        totals["transforms"] += t3 - t2
        totals["transforms unfused"] += t4 - t3
    return {stage: 1000.0 * total / samples for stage, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts to time (default: 0 and the CPU count); 0 is always the baseline")
    parser.add_argument("--n", type=int, default=16, help="synthetic training images per recipe (default 16)")
    parser.add_argument("--batch", type=int, default=2, help="samples per batch (default 2, per process)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per row (default 12)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (default 2)")
    parser.add_argument("--data", default="", help="keep the synthetic data here (default: a temporary folder)")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args()

    workers = sorted({0, *(args.workers or [os.cpu_count() or 1])})
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as temp:
        data_root = Path(args.data or temp)
        rows: list[Row] = []
        print(f"CPU cores {os.cpu_count()}, torch {torch.__version__}, numpy {np.__version__}; "
              f"batch {args.batch}, {args.batches} timed batches per row")
        for recipe in args.recipes:
            preset, height = RECIPES[recipe]
            cfg = load_preset(preset).data
            cfg.root = str(make_data(cfg.dataset, height, args.n, data_root))
            split = stage_split(cfg, samples=min(args.n, 6))
            print(f"\n{recipe} ({preset}): per sample in one process: "
                  + ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in split.items())
                  + f"; fused resize+crop {split['transforms unfused'] / split['transforms']:.2f}x faster")
            print(f"  {'workers':>7} {'samples/s':>10} {'vs workers=0':>13}")
            baseline = 0.0
            for count in workers:
                rate = time_loader(cfg, count, args.batch, args.batches, args.warmup)
                baseline = baseline or rate
                rows.append(Row(recipe, count, rate, rate / baseline))
                print(f"  {count:>7} {rate:>10.2f} {rate / baseline:>12.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([row.__dict__ for row in rows], indent=2))


if __name__ == "__main__":
    main()
