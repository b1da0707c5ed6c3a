"""`sceneparse train` as a function: one readable loop, on one process or under torchrun.

    for iteration in range(start, max_iters):
        batch  -> forward (autocast) -> loss (CE + 0.4 aux, global-batch mean) -> backward (grad scaler)
        check the loss (NaN/inf stops the run) and the stop flag (SIGTERM/SIGINT), summed over processes
        optimizer step -> poly LR step -> log -> validate / checkpoint at their intervals

Everything that decides the result is a function of the config and the iteration: the data order
and augmentation (seed, epoch, index), the LR (iteration), and the model's own randomness
(dropout: torch's generators, saved per process in every checkpoint). So a run resumed from its
checkpoint at iteration k reaches bit-for-bit the weights an uninterrupted run has at iteration n
(on CPU, or on GPU with `train.deterministic = true`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sceneparse.config.loader import dumps_toml, to_dict
from sceneparse.config.schema import Preset
from sceneparse.convert.common import load_state_strict
from sceneparse.data.dataset import SegmentationDataset, build_dataset
from sceneparse.data.device_batch import model_input, model_label
from sceneparse.data.loader import build_dataloader
from sceneparse.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    convert_sync_bn,
    init_distributed,
)
from sceneparse.engine.checkpoint import (
    CheckpointFiles,
    latest_checkpoint,
    load_latest_good,
    read_manifest,
    remove_stale_temporaries,
    save_checkpoint,
)
from sceneparse.engine.ema import WeightAverage
from sceneparse.engine.load_from import load_from
from sceneparse.engine.losses import SegmentationLoss, Shard, build_criterion
from sceneparse.engine.optimizer import build_optimizer
from sceneparse.engine.pretrained import load_pretrained_backbone, resolve_pretrained
from sceneparse.engine.reproducibility import configure_determinism, rng_state, seed_everything, set_rng_state
from sceneparse.engine.run_log import RunLog, truncate_log
from sceneparse.engine.schedule import PolyLR
from sceneparse.engine.stop import StopFlag
from sceneparse.engine.train_data import batches_per_epoch, build_train_loader, per_process_batch
from sceneparse.errors import CheckpointError, ConfigError, SceneparseError
from sceneparse.evaluation.cityscapes_official import official_collector, summary_scalars
from sceneparse.evaluation.evaluate import evaluate
from sceneparse.evaluation.metrics import compute_metrics
from sceneparse.models.inference import InferenceSettings
from sceneparse.weights import atomic_write

log = logging.getLogger(__name__)

CONFIG_FILE = "config.toml"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDiverged(SceneparseError):
    """The loss became NaN or infinite; the work dir keeps the last good checkpoint."""


@dataclass
class TrainOptions:
    """What `sceneparse train` was asked to do; the preset supplies the recipe."""

    work_dir: str
    data_root: str = ""  # overrides data.root
    resume: bool = False  # continue from the work dir's latest checkpoint
    device: str = "auto"
    pretrained: str = ""  # overrides train.pretrained ("none": random initialisation)
    load_from: str = ""  # overrides train.load_from: a whole segmentation checkpoint to fine-tune
    num_workers: int | None = None  # None = the preset's data.num_workers
    stop_at: int | None = None  # save and stop after this iteration (the schedule still ends at max_iters)
    validate: bool = True  # validate at the preset's eval_interval and at the end
    progress: bool = True
    tensorboard: bool = True
    # Parameter and input dtype. float64 removes rounding noise when checking numerics (the
    # distributed-equivalence test); mixed precision is train.amp.
    dtype: torch.dtype = torch.float32


@dataclass
class TrainResult:
    iteration: int  # iterations completed
    max_iters: int
    stopped_by: str  # "finished", "stop_at", "SIGTERM", "SIGINT"
    metrics: dict[str, Any] = field(default_factory=dict)  # the last validation
    checkpoint: CheckpointFiles | None = None  # the last one written


@dataclass
class _Run:
    """The objects of one training run, built once."""

    cfg: Preset
    info: DistInfo
    work_dir: Path
    train_set: SegmentationDataset
    val_set: SegmentationDataset | None
    loader: torch.utils.data.DataLoader
    net: nn.Module  # the model itself (what is saved)
    model: nn.Module  # what is called: DDP-wrapped when distributed
    criterion: SegmentationLoss
    optimizer: torch.optim.Optimizer
    scheduler: PolyLR
    scaler: torch.amp.GradScaler | None
    iters_per_epoch: int
    max_iters: int
    eval_every: int
    checkpoint_every: int
    best: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    ema: WeightAverage | None = None  # train.ema: the averaged weights (validated and exported)


def resolve_config(preset: Preset, options: TrainOptions) -> Preset:
    """The preset with the command line's data root and pretrained file applied."""
    data = dataclasses.replace(preset.data, root=options.data_root or preset.data.root)
    train = dataclasses.replace(preset.train, pretrained=options.pretrained or preset.train.pretrained,
                                load_from=options.load_from or preset.train.load_from)
    if options.pretrained:  # another backbone than the preset's: its checksum is not the preset's
        train = dataclasses.replace(train, pretrained_sha256="")
    if train.amp not in ("none", *AMP_DTYPES):
        raise ConfigError(f"train.amp = {train.amp!r}: expected none, bf16 or fp16")
    return dataclasses.replace(preset, data=data, train=train)


def _shard(info: DistInfo) -> Shard:
    """This process's place in the global batch, and the sum of the loss's denominators over processes."""
    return Shard(info.rank, info.world_size, lambda counts: all_reduce_sum(counts.clone()))


def _build(cfg: Preset, options: TrainOptions, info: DistInfo) -> _Run:
    t = cfg.train
    seed_everything(t.seed)
    configure_determinism(t.deterministic)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)  # refuses impossible labels
    if cfg.model.num_classes != train_set.info.num_classes:
        raise ConfigError(f"model.num_classes = {cfg.model.num_classes} but {train_set.info.name} has "
                          f"{train_set.info.num_classes} classes; set model.num_classes={train_set.info.num_classes}")
    val_set = None
    if options.validate and t.eval_interval > 0:
        val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    workers = cfg.data.num_workers if options.num_workers is None else options.num_workers
    loader = build_train_loader(train_set, per_process_batch(t.batch_size, info), workers, t.seed, info)
    if t.accumulate < 1:
        raise ConfigError(f"train.accumulate = {t.accumulate}: expected 1 or more micro-batches per optimizer step")
    iters_per_epoch = batches_per_epoch(loader) // t.accumulate  # optimizer steps: the schedule counts these
    if iters_per_epoch < 1:
        raise ConfigError(f"train.accumulate = {t.accumulate} micro-batches per step, but an epoch holds only "
                          f"{batches_per_epoch(loader)} batch(es); lower train.accumulate or train.batch_size")
    epoch_based = t.max_epochs > 0
    max_iters = t.max_epochs * iters_per_epoch if epoch_based else t.max_iters
    unit = iters_per_epoch if epoch_based else 1

    from sceneparse.api import build_model

    net = build_model(cfg)
    if not (options.resume and latest_checkpoint(Path(options.work_dir)) is not None):  # else the checkpoint's
        _initialise(net, cfg, info, options.progress)
    net = convert_sync_bn(net, info).to(info.device, options.dtype)
    if t.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(net, t)
    scheduler = PolyLR(optimizer, max_iters, t.lr_power, t.min_lr, t.warmup_iters, t.warmup_ratio, t.poly_end)
    scaler = torch.amp.GradScaler(info.device.type) if t.amp == "fp16" else None
    criterion = build_criterion(t, cfg.model.num_classes, cfg.data.ignore_index, cfg.model.aux_head.loss_weight,
                                cfg.model.align_corners).to(info.device)
    ema = WeightAverage(net, t.ema) if t.ema else None
    return _Run(cfg, info, Path(options.work_dir), train_set, val_set, loader, net, net, criterion, optimizer,
                scheduler, scaler, iters_per_epoch, max_iters, t.eval_interval * unit, t.checkpoint_interval * unit,
                ema=ema)


def _initialise(net: nn.Module, cfg: Preset, info: DistInfo, progress: bool) -> None:
    """The recipe's starting weights: a whole checkpoint (load_from), else its ImageNet backbone.

    The main process fetches the backbone first (one download), the others then find it cached."""
    t = cfg.train
    if t.load_from:
        load_from(net, t.load_from, cfg)
        return
    path = None
    for turn in ("main", "others"):
        if (turn == "main") == info.is_main:
            path = resolve_pretrained(t.pretrained, t.pretrained_sha256, progress and info.is_main)
        barrier(info)
    if path is not None:
        load_pretrained_backbone(net.backbone, path, t.pretrained_format)
    elif cfg.published.source and info.is_main:
        log.warning("training %s from random initialisation (train.pretrained = %r): the published recipe starts "
                    "from an ImageNet backbone, so its published mIoU will not be reached", cfg.name,
                    t.pretrained or "none")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _restore(run: _Run, weights: dict[str, torch.Tensor], state: dict[str, Any], files: CheckpointFiles) -> int:
    """Load a checkpoint into the run; returns the iteration it was taken at."""
    if run.ema is not None and "trained_weights" in state:  # the weights file holds the average (train.ema)
        run.ema.load_state_dict(weights)
        weights = state["trained_weights"]
    elif run.ema is not None:
        run.ema.load_state_dict(weights)  # a checkpoint of a run without EMA: the average starts from it
    load_state_strict(run.net, weights, str(files.weights))
    saved, current = _flatten(state.get("config", {})), _flatten(to_dict(run.cfg))
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed and run.info.is_main:
        log.warning("resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed))
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.best = state.get("best")
    run.metrics = state.get("metrics") or {}
    states = state["rng"]
    if len(states) != run.info.world_size and run.info.is_main:
        log.warning("the checkpoint was written by %d process(es), this run has %d: the resume is not exact",
                    len(states), run.info.world_size)
    set_rng_state(states[run.info.rank % len(states)])
    return int(state["iteration"])


def _save(run: _Run, iteration: int, best: dict[str, Any] | None) -> CheckpointFiles | None:
    """Every process hands over its RNG states; rank 0 writes the checkpoint."""
    rngs = all_gather_object(rng_state(), run.info)
    files = None
    if best is not None:  # on every rank: they all decide alike when to save
        run.best = {"iteration": iteration, **best}
    if run.info.is_main:
        state = {
            "iteration": iteration,
            "epoch": iteration // run.iters_per_epoch,
            "max_iters": run.max_iters,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else {},
            "rng": rngs,
            "config": to_dict(run.cfg),
            "metrics": run.metrics,
            "best": run.best,
            # with train.ema the weights file holds the average (what test/infer/export read); these resume
            **({"trained_weights": run.net.state_dict()} if run.ema is not None else {}),
        }
        metadata = {"preset": run.cfg.name, "model": run.cfg.model.name, "iteration": iteration,
                    "config": to_dict(run.cfg)}  # so `infer WEIGHTS` and `Segmenter` rebuild this exact model
        weights = run.ema.state_dict() if run.ema is not None else run.net.state_dict()
        files = save_checkpoint(run.work_dir, iteration, weights, state, metadata,
                                run.cfg.train.keep_checkpoints, best)
        log.info("saved checkpoint %s", files.weights)
    barrier(run.info)
    return files


class _CastImages:
    """A loader whose images come in the model's dtype (for a float64 run)."""

    def __init__(self, loader: torch.utils.data.DataLoader, dtype: torch.dtype) -> None:
        self.loader, self.dtype = loader, dtype

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):  # noqa: ANN204 - yields batch dicts
        for batch in self.loader:
            yield {**batch, "image": batch["image"].to(self.dtype)}


def _validate(run: _Run, iteration: int, options: TrainOptions) -> dict[str, Any]:
    assert run.val_set is not None
    cfg = run.cfg
    workers = cfg.data.num_workers if options.num_workers is None else options.num_workers
    loader: Any = build_dataloader(run.val_set, 1, train=False, num_workers=workers, seed=cfg.train.seed,
                                   distributed=run.info.distributed)
    if options.dtype != torch.float32:
        loader = _CastImages(loader, options.dtype)
    progress = options.progress
    settings = InferenceSettings.from_config(cfg.test)
    official = official_collector(run.val_set, run.info.device)  # Cityscapes: category IoU and iIoU as the benchmark
    averaged = run.ema.applied(run.net) if run.ema is not None else contextlib.nullcontext()
    with averaged:  # train.ema: the averaged weights are the ones validated (and exported)
        matrix = evaluate(run.model, loader, cfg.model.num_classes, cfg.data.ignore_index, settings, run.info.device,
                          on_prediction=official, progress=progress and run.info.is_main, reduce=True)
    metrics = compute_metrics(matrix.matrix, run.val_set.info.classes)
    if official is not None:
        metrics["cityscapes"] = official.metrics()
    metrics["iteration"] = iteration
    return metrics


def _autocast(run: _Run) -> contextlib.AbstractContextManager:
    amp = run.cfg.train.amp
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(run.info.device.type, dtype=AMP_DTYPES[amp])


def _write_config(cfg: Preset, work_dir: Path) -> None:
    text = dumps_toml(to_dict(cfg))
    atomic_write(work_dir / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _start_iteration(run: _Run, options: TrainOptions) -> int:
    """0 for a fresh run; the latest checkpoint's iteration with --resume."""
    manifest = read_manifest(run.work_dir)
    latest = latest_checkpoint(run.work_dir)
    if latest is None:
        if options.resume and run.info.is_main:
            log.info("--resume: no checkpoint in %s yet, starting from iteration 0", run.work_dir)
        return 0
    if not options.resume:
        raise CheckpointError(f"{run.work_dir} already holds checkpoints (latest {manifest['latest']}); pass "
                              "--resume to continue that run, or choose another --work-dir")
    found = load_latest_good(run.work_dir)  # the newest intact one: a damaged latest is skipped, with a warning
    assert found is not None
    iteration = _restore(run, *found)
    if run.info.is_main:
        log.info("resumed from %s at iteration %d", found[2].weights, iteration)
    return iteration


def _check_options(options: TrainOptions) -> None:
    """ConfigError for options no run can use (before anything is created or read)."""
    work_dir = Path(options.work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise ConfigError(f"--work-dir {work_dir}: is a file, not a folder; choose a folder for the run")
    if options.stop_at is not None and options.stop_at < 1:
        raise ConfigError(f"--stop-at {options.stop_at}: must be an iteration, 1 or more")
    if options.num_workers is not None and options.num_workers < 0:
        raise ConfigError(f"--workers {options.num_workers}: must be 0 or more")


def train(preset: Preset, options: TrainOptions) -> TrainResult:
    """Train `preset` into `options.work_dir`; joins the torchrun process group when WORLD_SIZE > 1."""
    _check_options(options)
    joined_here = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info = init_distributed(options.device)
    try:
        return _train(resolve_config(preset, options), options, info)
    finally:
        if joined_here:
            cleanup_distributed()


def _train(cfg: Preset, options: TrainOptions, info: DistInfo) -> TrainResult:
    work_dir = Path(options.work_dir)
    if info.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temporaries(work_dir)
        if removed:
            log.info("removed %d temporary file(s) of an interrupted save", removed)
    barrier(info)
    run = _build(cfg, options, info)
    start = _start_iteration(run, options)
    if info.distributed:
        run.model = DistributedDataParallel(run.net, device_ids=[info.device] if info.device.type == "cuda" else None)
    run_log = None
    if info.is_main:
        _write_config(cfg, work_dir)
        truncate_log(work_dir, start)
        run_log = RunLog(work_dir, options.tensorboard)
        log.info("training %s on %s (%d images) for %d iterations (%d per epoch), batch %d over %d process(es), %s",
                 cfg.name, run.train_set.info.name, len(run.train_set), run.max_iters, run.iters_per_epoch,
                 cfg.train.batch_size, info.world_size, info.device)
    try:
        return _loop(run, options, start, run_log)
    finally:
        if run_log is not None:
            run_log.close()


def _forward_backward(run: _Run, batch: dict, dtype: torch.dtype, shard: Shard,
                      stop_requested: bool, micro: int = 0) -> tuple[torch.Tensor, bool]:
    """Forward (autocast), loss, backward; returns ([loss, decode, aux, stop votes] summed over processes
    and turned into global-batch means, on the CPU) and whether the model has an aux head.

    With train.accumulate = N, micro-batch `micro` (0 .. N-1) adds 1/N of its loss's gradient to the
    gradients of the micro-batches before it (the first one clears them).

    One all-reduce per step carries the losses (for the log and the NaN check, so every process
    stops at the same step) and the stop flag (so a signal to one process stops them all).
    """
    device = run.info.device
    data = run.cfg.data  # uint8 crops are normalised here, on the device (as mmseg's data preprocessor)
    image = model_input(batch, device, dtype, data.mean, data.std, channels_last=run.cfg.train.channels_last)
    label = model_label(batch, device)
    with _autocast(run):
        outputs = run.model(image, upsample=False)  # the heads' logits: the loss upsamples them band by band
    losses = run.criterion.consume(outputs, label, shard)
    if micro == 0:
        run.optimizer.zero_grad(set_to_none=True)
    objective = losses["loss"] / run.cfg.train.accumulate
    if run.scaler is not None:
        run.scaler.scale(objective).backward()
    else:
        objective.backward()
    zero = torch.zeros((), device=device)
    parts = [losses["loss"], losses["loss_decode"], losses.get("loss_aux", zero), zero + float(stop_requested)]
    shared = all_reduce_sum(torch.stack([part.detach().double() for part in parts])).cpu()
    shared[:3] /= run.info.world_size  # each process's terms are scaled by the world size (SegmentationLoss)
    return shared, "loss_aux" in losses


def _optimizer_step(run: _Run) -> None:
    """Gradient clipping (on unscaled gradients), the SGD step (through the grad scaler for fp16), the LR."""
    if run.cfg.train.grad_clip > 0:
        if run.scaler is not None:
            run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.net.parameters(), run.cfg.train.grad_clip)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()


def _loop(run: _Run, options: TrainOptions, start: int, run_log: RunLog | None) -> TrainResult:
    cfg, info, t = run.cfg, run.info, run.cfg.train
    shard = _shard(info)
    end = run.max_iters if options.stop_at is None else min(run.max_iters, options.stop_at)
    result = TrainResult(start, run.max_iters, "finished", run.metrics)
    sums = torch.zeros(3, dtype=torch.float64)  # loss, decode, aux since the last log line
    logged, tick = 0, time.perf_counter()
    bar = tqdm(total=run.max_iters, initial=start, desc="train", unit="it", dynamic_ncols=True,
               disable=not (options.progress and info.is_main))
    data_iter = None
    run.net.train()
    with StopFlag() as stop, bar:
        for it in range(start, end):
            epoch, position = divmod(it, run.iters_per_epoch)
            if data_iter is None or position == 0:
                skip = position * t.accumulate * int(run.loader.batch_size or 1)
                run.loader.sampler.set_epoch(epoch, skip=skip)
                data_iter = iter(run.loader)
            shared = torch.zeros(4, dtype=torch.float64)
            for micro in range(t.accumulate):  # train.accumulate micro-batches per optimizer step
                part, has_aux = _forward_backward(run, next(data_iter), options.dtype, shard, stop.requested, micro)
                shared += part
            shared[:3] /= t.accumulate  # the step's loss: the mean of its micro-batches'
            iteration = it + 1
            if not math.isfinite(float(shared[0])):
                last = latest_checkpoint(run.work_dir)
                where = f"the last good checkpoint is {last.weights}" if last else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"the loss is {float(shared[0])} at iteration {iteration}: the run stopped without updating "
                    f"the weights; {where} (lower train.lr, set train.grad_clip, or check the data)")

            _optimizer_step(run)
            if run.ema is not None:
                run.ema.update(run.net)
            lr = run.optimizer.param_groups[0]["lr"]
            run.scheduler.step()

            sums += shared[:3]
            logged += 1
            bar.update(1)
            if info.is_main and (iteration % max(t.log_interval, 1) == 0 or iteration == end):
                now = time.perf_counter()
                record = {"iteration": iteration, "epoch": epoch, "loss": float(sums[0] / logged),
                          "loss_decode": float(sums[1] / logged), "lr": lr,
                          "sec_per_iter": (now - tick) / logged}
                if has_aux:
                    record["loss_aux"] = float(sums[2] / logged)
                assert run_log is not None
                run_log.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
                sums.zero_()
                logged, tick = 0, now

            stopping = bool(shared[3] > 0) or iteration == end
            best = None
            if run.val_set is not None and (iteration % run.eval_every == 0 or iteration == run.max_iters):
                run.metrics = _validate(run, iteration, options)
                result.metrics = run.metrics
                if info.is_main:
                    assert run_log is not None
                    run_log.write({"iteration": iteration, "split": cfg.data.val_split, "mIoU": run.metrics["mIoU"],
                                   "aAcc": run.metrics["aAcc"], "mAcc": run.metrics["mAcc"],
                                   **summary_scalars(run.metrics)}, prefix="val")
                    log.info("iteration %d: %s mIoU %.2f%%", iteration, cfg.data.val_split, 100 * (run.metrics["mIoU"] or 0))
                value = run.metrics["mIoU"]
                if value is not None and (run.best is None or value > run.best["value"]):
                    best = {"metric": "mIoU", "value": value}
            if best is not None or stopping or (run.checkpoint_every > 0 and iteration % run.checkpoint_every == 0):
                result.checkpoint = _save(run, iteration, best) or result.checkpoint
            result.iteration = iteration
            if stopping:
                if shared[3] > 0:
                    result.stopped_by = stop.signal_name or "signal"
                    if info.is_main:
                        log.warning("stopped by %s at iteration %d; continue with --resume", result.stopped_by,
                                    iteration)
                elif iteration < run.max_iters:
                    result.stopped_by = "stop_at"
                break
    return result
