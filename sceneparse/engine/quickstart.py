"""The quickstart: generate a small VOC-layout dataset, train PSPNet R-18-D8 on it, evaluate, draw.

It is the whole toolbox end to end on a 2-core laptop in a few minutes, with the same code paths a
real run takes: `data synth` writes the files in the VOC2012 layout, `train` runs the mmsegmentation
PSPNet R-18-D8 recipe (scaled down: 128 px crops, a few hundred iterations, from scratch), `test`
scores the best checkpoint and prints the per-class table, and the overlays and training curves are
written beside it. Running it again resumes the run in place (nothing is retrained once finished).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sceneparse.config import Preset, load_preset
from sceneparse.data.dataset import build_dataset
from sceneparse.data.synth import synthesize
from sceneparse.engine.checkpoint import best_checkpoint, latest_checkpoint
from sceneparse.engine.curves import plot_curves
from sceneparse.engine.trainer import TrainOptions, train
from sceneparse.errors import SceneparseError
from sceneparse.evaluation.runner import TestOptions, run_test
from sceneparse.models.inference import InferenceSettings
from sceneparse.visualize import overlay

log = logging.getLogger(__name__)

BASE_PRESET = "pspnet_r18-d8_512x1024_80k_cityscapes"  # the published R-18-D8 PSPNet (v1c stem, 128-wide head)
# The R-18-D8 recipe on VOC-layout images 128 px high: crops of 128, scales around the image size,
# a short schedule; everything else (SGD 0.9, wd 5e-4, poly LR, CE + 0.4 aux) is the preset's.
OVERRIDES = [
    "data.dataset=voc",
    "model.num_classes=21",
    "data.crop_size=[128,128]",
    "data.scale=[512,128]",
    "data.ratio_range=[0.75,1.5]",
    # The synthetic classes differ by colour and stripe texture: colour jitter would blur exactly the cue
    # there is to learn, and costs half the mIoU at this schedule.
    "data.photometric=false",
    "data.num_workers=1",
    "test.crop_size=[128,128]",
    "train.batch_size=8",
    "train.lr=0.02",
    "train.max_iters=200",
    "train.eval_interval=100",
    "train.checkpoint_interval=100",
    "train.log_interval=10",
    "train.keep_checkpoints=1",
    # from scratch: no download, and the synthetic classes need no ImageNet features
    'train.pretrained=""',
]
SYNTH_IMAGES = 60  # per split
SYNTH_SIZE = 128
OVERLAYS = 4
TARGET_MIOU = 0.7


class QuickstartInterrupted(SceneparseError):
    """Training was stopped (Ctrl-C, SIGTERM); its checkpoint lets the next quickstart continue."""


@dataclass
class QuickstartResult:
    miou: float
    files: dict[str, Path]


def quickstart_preset(extra: list[str] | None = None) -> Preset:
    """The R-18-D8 preset with the overrides above, named for what it now is."""
    preset = load_preset(BASE_PRESET, [*OVERRIDES, *(extra or [])])
    return dataclasses.replace(preset, name="quickstart_pspnet_r18-d8_voc",
                               description=f"quickstart: {BASE_PRESET} on synthetic VOC-layout data")


def write_overlays(cfg: Preset, weights: Path, out_dir: Path, count: int) -> list[Path]:
    """Image | ground truth | prediction, side by side, for the first `count` validation images."""
    from sceneparse.api import build_model
    from sceneparse.data.files import write_png

    dataset = build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = build_model(cfg, weights).eval()
    settings = InferenceSettings.from_config(cfg.test)
    palette = dataset.info.palette
    paths = []
    for index in range(min(count, len(dataset))):
        image, label = dataset.load(index)
        sample = dataset[index]
        with torch.no_grad():
            probs = settings.predict_proba(model, sample["image"].unsqueeze(0), out_size=label.shape)
        pred = probs.argmax(1)[0].numpy()
        panel = np.concatenate([image, overlay(image, label, palette, 0.6), overlay(image, pred, palette, 0.6)],
                               axis=1)
        path = out_dir / f"{Path(sample['path']).stem}.png"
        write_png(path, panel)
        paths.append(path)
    return paths


def run_quickstart(out: str | Path, extra_overrides: list[str] | None = None, progress: bool = True,
                   images_per_split: int = SYNTH_IMAGES) -> QuickstartResult:
    """All four steps into `out`; `extra_overrides` (KEY=VALUE) change the recipe."""
    out = Path(out).resolve()
    data_root = out / "voc"
    work_dir = out / "run"
    log.info("step 1/4: a synthetic dataset in the VOC2012 layout at %s", data_root)
    synthesize("voc", data_root, n=images_per_split, size=SYNTH_SIZE, seed=0, workers=None, progress=progress)

    cfg = quickstart_preset([f"data.root={data_root}", *(extra_overrides or [])])
    log.info("step 2/4: training PSPNet R-18-D8 from scratch for %d iterations into %s", cfg.train.max_iters,
             work_dir)
    trained = train(cfg, TrainOptions(work_dir=str(work_dir), resume=True, device="cpu", progress=progress))
    if trained.stopped_by != "finished":
        raise QuickstartInterrupted(f"training stopped by {trained.stopped_by} at iteration {trained.iteration} of "
                                    f"{trained.max_iters}; run the quickstart again to continue where it stopped")

    files = best_checkpoint(work_dir) or latest_checkpoint(work_dir)
    assert files is not None, "training writes a checkpoint at its last iteration"
    log.info("step 3/4: evaluating %s on the validation split", files.weights)
    result = run_test(cfg, TestOptions(weights=str(files.weights), out_dir=str(out / "eval"), device="cpu",
                                       num_workers=0, progress=progress))

    log.info("step 4/4: overlays and training curves")
    overlays = write_overlays(cfg, files.weights, out / "overlays", OVERLAYS)
    curves = plot_curves(work_dir)
    miou = float(result.metrics["mIoU"] or 0.0)
    return QuickstartResult(miou, {"dataset": data_root, "run": work_dir, "weights": files.weights,
                                   "evaluation": out / "eval", "overlays": overlays[0].parent if overlays else out,
                                   "curves": curves})
