"""`sceneparse test` as a function: score a preset's model on a dataset split, on one or many processes.

Under torchrun every process reads its own shard of the images (`ShardSampler`: each image exactly
once, whatever the image count), fills its own confusion matrix, and the matrices are summed; rank 0
then writes the report. Predictions, when asked for, are written by the process that made them.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from sceneparse.atomic import remove_stale_temporaries
from sceneparse.config.schema import Preset
from sceneparse.data.dataset import SegmentationDataset, build_dataset
from sceneparse.data.files import write_png
from sceneparse.data.loader import build_dataloader
from sceneparse.data.registry import pred_name
from sceneparse.distributed import DistInfo, barrier, broadcast_object, cleanup_distributed, init_distributed
from sceneparse.dtype_choice import resolve_dtype
from sceneparse.errors import ConfigError, SceneparseError
from sceneparse.evaluation import cityscapes
from sceneparse.evaluation.cityscapes_official import OfficialCollector, official_collector
from sceneparse.evaluation.evaluate import evaluate
from sceneparse.evaluation.metrics import compute_metrics, format_table
from sceneparse.evaluation.per_image import PerImageScores, score_image
from sceneparse.evaluation.report import write_report
from sceneparse.evaluation.submission import SubmissionWriter
from sceneparse.evaluation.unlabelled import UnlabelledImages
from sceneparse.models.fuse import prepare_for_inference
from sceneparse.models.inference import InferenceSettings
from sceneparse.paths import inside
from sceneparse.visualize import save_label_png

log = logging.getLogger(__name__)

PRED_DIR = "pred"
CITYSCAPES_DIR = "cityscapes_results"


@dataclass
class TestOptions:
    """What `sceneparse test` was asked to do; the preset supplies everything else."""

    __test__ = False  # not a pytest test class

    weights: str | None = None  # a path, a URL, or None for the preset's published checkpoint
    data_root: str = ""  # overrides data.root
    split: str = ""  # "" = the preset's data.val_split
    mode: str | None = None  # "whole" / "slide"; None = the preset's test.mode
    tta: bool = False  # the preset's scales and flip
    out_dir: str = "test_out"
    extra_metrics: tuple[str, ...] = ()
    save_pred: bool = False  # palette PNGs of training ids, named as `sceneparse score` expects
    cityscapes_format: bool = False  # labelIds PNGs under the benchmark's names
    format_only: bool = False  # no scoring: the benchmark server's files for every image (submission.py)
    per_image: str = ""  # CSV path: each image's mIoU and accuracy, worst first
    device: str = "auto"
    num_workers: int | None = None  # None = the preset's data.num_workers
    window_batch: int = 1
    dtype: str = "auto"  # autocast precision of the forward: auto (sceneparse.dtype_choice), fp32, bf16 or fp16
    progress: bool = True
    figures: bool = True


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    metrics: dict[str, Any]
    matrix: np.ndarray  # C x C, summed over all processes
    num_images: int  # in the split
    local_images: int  # scored by this process (its shard)
    files: dict[str, Path] = field(default_factory=dict)  # written by rank 0 only


class PredictionWriter:
    """Saves each prediction as `evaluate` hands it over: palette PNG under its key, and/or the
    Cityscapes benchmark file."""

    def __init__(self, dataset: SegmentationDataset, out_dir: Path, palette: Any, save_pred: bool,
                 cityscapes_format: bool) -> None:
        self.key_of = {str(sample.image): sample.key for sample in dataset.samples}
        self.out_dir, self.palette = out_dir, palette
        self.save_pred, self.cityscapes_format = save_pred, cityscapes_format

    def __call__(self, pred: np.ndarray, label: np.ndarray, image_path: str) -> None:
        if self.save_pred:
            key = self.key_of[image_path]
            save_label_png(inside(self.out_dir / PRED_DIR, pred_name(key), f"sample key of {image_path}"), pred,
                           self.palette)
        if self.cityscapes_format:
            write_png(self.out_dir / CITYSCAPES_DIR / cityscapes.result_name(image_path), cityscapes.to_label_ids(pred))


class Collectors:
    """Everything done with each prediction besides the confusion matrix: files, the Cityscapes
    official counts, per-image scores. Passed to `evaluate` as its `on_prediction`."""

    def __init__(self, dataset: Any, writer: PredictionWriter | SubmissionWriter | None,
                 official: OfficialCollector | None, per_image: PerImageScores | None) -> None:
        self.dataset, self.writer, self.official, self.per_image = dataset, writer, official, per_image
        self.samples = {str(sample.image): sample for sample in dataset.samples}

    def __call__(self, pred: np.ndarray, label: np.ndarray, image_path: str) -> None:
        if isinstance(self.writer, SubmissionWriter):
            self.writer(pred, image_path)
        elif self.writer is not None:
            self.writer(pred, label, image_path)
        if self.official is not None:
            self.official(pred, label, image_path)
        if self.per_image is not None:
            sample = self.samples[image_path]
            info = self.dataset.info
            self.per_image.add(score_image(sample.key, pred, label, info.classes, self.dataset.ignore_index))


def _resolve_weights_once(preset: Preset, weights: str | None, info: DistInfo, progress: bool) -> str:
    """Rank 0 finds (and, if need be, downloads and converts) the weights; the others get its answer.

    An error on rank 0 is raised on every rank, so no process waits forever for the others.
    """
    from sceneparse.hub import resolve_weights

    answer: tuple[str, str] = ("", "")
    failure: SceneparseError | None = None
    if info.is_main:
        try:
            answer = (str(resolve_weights(preset, weights, progress)), "")
        except SceneparseError as exc:
            failure, answer = exc, ("", str(exc))
    path, error = broadcast_object(answer, info)
    if failure is not None:
        raise failure
    if error:
        raise SceneparseError(error)
    return path


def run_test(preset: Preset, options: TestOptions) -> TestResult:
    """Evaluate `preset`'s model on its validation split (or `options.split`) and write the report.

    Joins the torchrun process group when WORLD_SIZE > 1 and leaves it at the end if it joined it.
    """
    from sceneparse.api import build_model

    joined_here = not (dist.is_available() and dist.is_initialized())
    info = init_distributed(options.device)
    try:
        data_cfg = dataclasses.replace(preset.data, root=options.data_root or preset.data.root)
        cfg = dataclasses.replace(preset, data=data_cfg)
        split = options.split or data_cfg.val_split
        dataset: Any = UnlabelledImages(data_cfg, split) if options.format_only else build_dataset(
            data_cfg, split, train=False)
        data_info = dataset.info
        if options.cityscapes_format:
            cityscapes.check_dataset(data_info.name)
        if cfg.model.num_classes != data_info.num_classes:
            raise ConfigError(
                f"the model predicts {cfg.model.num_classes} classes but {data_info.name} has "
                f"{data_info.num_classes}; pick a preset for this dataset or set model.num_classes"
            )
        settings = InferenceSettings.from_config(cfg.test, options.mode, options.tta, options.window_batch)
        path = _resolve_weights_once(cfg, options.weights, info, options.progress)
        # BN folded and the heads' low-resolution convolutions: the same answers, faster
        dtype = resolve_dtype(options.dtype, info.device)
        model = prepare_for_inference(build_model(cfg, path).to(info.device), dtype, fuse_bn=True)
        workers = data_cfg.num_workers if options.num_workers is None else options.num_workers
        loader = build_dataloader(dataset, 1, train=False, num_workers=workers, seed=cfg.train.seed,
                                  distributed=info.distributed)
        out_dir = Path(options.out_dir)
        if info.is_main:  # temporaries of an earlier run that was killed mid-write
            remove_stale_temporaries(out_dir)
            for folder in (PRED_DIR, CITYSCAPES_DIR):
                remove_stale_temporaries(out_dir / folder, recursive=True)
        writer: PredictionWriter | SubmissionWriter | None = None
        if options.format_only:
            writer = SubmissionWriter(data_info, out_dir, {str(s.image): s.key for s in dataset.samples})
        elif options.save_pred or options.cityscapes_format:
            writer = PredictionWriter(dataset, out_dir, data_info.palette, options.save_pred,
                                      options.cityscapes_format)
        scoring = not options.format_only
        official = official_collector(dataset, info.device) if scoring else None
        per_image = PerImageScores() if scoring and options.per_image else None
        collectors = Collectors(dataset, writer, official, per_image)
        if info.is_main:
            log.info("testing %s on %s %s (%d images, %d process%s): %s", cfg.name, data_info.name, split,
                     len(dataset), info.world_size, "es" if info.distributed else "", settings.describe())
        confusion = evaluate(model, loader, data_info.num_classes, data_cfg.ignore_index, settings, info.device,
                             on_prediction=collectors, progress=options.progress and info.is_main, reduce=True)
        matrix = confusion.matrix.cpu().numpy()
        if options.format_only:
            return _finish_format_only(writer, info, matrix, len(dataset), len(loader.sampler))
        metrics = compute_metrics(matrix, data_info.classes, options.extra_metrics)
        metrics["num_images"] = len(dataset)
        if official is not None:
            metrics["cityscapes"] = official.metrics()
        if per_image is not None:
            per_image.gather()
        result = TestResult(metrics, matrix, len(dataset), len(loader.sampler))
        if info.is_main and per_image is not None:
            result.files["per_image"] = per_image.write_csv(options.per_image)
        if info.is_main:
            title = f"{cfg.name} on {data_info.name} {split} ({settings.describe()})"
            result.files.update(write_report(metrics, matrix, data_info.classes, out_dir, title, options.figures))
            print(format_table(metrics, title))
            log.info("wrote %s", ", ".join(str(p) for p in result.files.values()))
        barrier(info)
        return result
    finally:
        if joined_here:
            cleanup_distributed()


def _finish_format_only(writer: Any, info: DistInfo, matrix: np.ndarray, num_images: int,
                        local_images: int) -> TestResult:
    """After every process wrote its files, rank 0 packs the submission archive."""
    barrier(info)
    result = TestResult({"num_images": num_images}, matrix, num_images, local_images)
    if info.is_main:
        result.files["folder"] = writer.folder
        archive = writer.finish()
        if archive is not None:
            result.files["archive"] = archive
        print(f"wrote {num_images} predictions to {writer.folder}" + (f" and {archive}" if archive else ""))
    barrier(info)
    return result
