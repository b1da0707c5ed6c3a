"""Speed and memory of a preset: warm-up, timed iterations with device synchronisation, the median
and spread, images per second, peak memory and FLOPs, for inference or a full training step.

Timings are wall-clock per iteration; on a GPU each one ends with `torch.cuda.synchronize()`, so it
measures the work and not its queueing. Peak memory is CUDA's max allocated during the timed
iterations, or on the CPU the process's peak resident set size (which the kernel only lets us read
since the process began: model building and warm-up included).
"""
from __future__ import annotations

import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from sceneparse.config import Preset
from sceneparse.errors import ConfigError
from sceneparse.models import build_segmentor
from sceneparse.models.fuse import DTYPES, autocast_context, prepare_for_inference
from sceneparse.summary import summarize


@dataclass(frozen=True)
class BenchmarkSettings:
    size: tuple[int, int] = (512, 512)
    batch: int = 1
    device: str = "cpu"
    dtype: str = "fp32"  # fp32, bf16 or fp16 (autocast)
    channels_last: bool = False
    compile: bool = False
    fuse_bn: bool = False  # inference only
    low_res_heads: bool = False  # inference only: heads convolve upsampled maps at low resolution
    blocked_layout: bool = False  # inference only, CPU fp32 with fuse_bn: the trunk in oneDNN's blocked layout
    winograd: bool = False  # inference only, CPU fp32: the heads' wide 3x3 convolutions by Winograd (NNPACK)
    train: bool = False  # a full training step (forward, loss, backward, SGD update) instead of inference
    warmup: int = 3
    iters: int = 10

    def validate(self) -> None:
        """ConfigError naming the option that cannot work."""
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype {self.dtype}: expected one of {', '.join(DTYPES)}")
        if self.batch < 1 or self.iters < 1 or self.warmup < 0:
            raise ConfigError("--batch and --iters must be at least 1, --warmup at least 0")
        if self.train and (self.fuse_bn or self.low_res_heads):
            raise ConfigError("--fuse-bn and --low-res-heads rewrite the model for inference; "
                              "they cannot be combined with --train")
        if self.blocked_layout and (self.train or not self.fuse_bn or self.device != "cpu" or self.dtype != "fp32"
                                    or self.channels_last or self.compile):
            raise ConfigError("--blocked-layout is for CPU fp32 inference with --fuse-bn, "
                              "without --channels-last, --compile or --train")
        if self.winograd and (self.train or self.device != "cpu" or self.dtype != "fp32" or self.channels_last
                              or self.compile):
            raise ConfigError("--winograd is for CPU fp32 inference, without --channels-last, --compile or --train")
        if self.train and self.batch < 2:
            raise ConfigError("--train needs --batch 2 or more (BatchNorm in training mode needs several values)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--device {self.device}: CUDA is not available on this machine; use --device cpu")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"--device {self.device}: expected cpu, cuda or cuda:N")


@dataclass
class BenchmarkResult:
    preset: str
    settings: dict[str, Any]
    times_s: list[float]
    median_s: float
    iqr_s: float  # spread: 75th minus 25th percentile of the iteration times
    min_s: float
    max_s: float
    images_per_s: float
    peak_memory_bytes: int
    memory_kind: str  # "cuda max allocated" or "cpu peak RSS (process)"
    forward_flops_per_image: int  # multiply and add counted separately
    achieved_gflops: float  # forward FLOPs per second at the median (inference only; 0 for --train)
    threads: int
    machine: dict[str, str] = field(default_factory=dict)


def machine_description(device: str) -> dict[str, str]:
    """What the numbers were measured on."""
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu": platform.processor()
            or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            info["cpu"] = f"{names[0]} ({len(names)} logical cores)"
    except OSError:
        pass
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_iterations(step: Callable[[], object], warmup: int, iters: int, sync: Callable[[], None],
                    desc: str = "benchmark", progress: bool = True) -> list[float]:
    """Seconds of each of `iters` timed calls of `step`, after `warmup` untimed ones."""
    for _ in tqdm(range(warmup), desc=f"{desc} warm-up", leave=False, disable=not progress):
        step()
    sync()
    times = []
    for _ in tqdm(range(iters), desc=desc, leave=False, disable=not progress):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def time_alternating(calls: dict[str, Callable[[], object]], rounds: int, warmup: int,
                     sync: Callable[[], None] = lambda: None, progress: bool = True) -> dict[str, list[float]]:
    """Seconds of each variant's calls, one call per variant per round, the order rotated each round.

    Alternating spreads the slow phases of a shared machine over all variants alike, so their
    ratios are fairer than those of back-to-back runs. Warm-up calls are untimed.
    """
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(warmup):
        for name in names:
            calls[name]()
    sync()
    for r in tqdm(range(rounds), desc="rounds", leave=False, disable=not progress):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            calls[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def peak_rss_bytes() -> int:
    """The process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024)


def inference_step(model: torch.nn.Module, x: torch.Tensor, settings: BenchmarkSettings) -> Callable[[], object]:
    """One forward of the fast inference path with these options."""
    # without --channels-last, prepare_for_inference's default (on for reduced precision on the CPU)
    fast = prepare_for_inference(model, settings.dtype, settings.channels_last or None, settings.fuse_bn,
                                 settings.compile,
                                 low_res_heads=settings.low_res_heads, blocked_layout=settings.blocked_layout,
                                 winograd=settings.winograd)

    def step() -> object:
        with torch.inference_mode():
            return fast(x)["out"]

    return step


def training_step(model: torch.nn.Module, x: torch.Tensor, preset: Preset,
                  settings: BenchmarkSettings) -> Callable[[], object]:
    """One iteration of `sceneparse train` on one process: forward in train mode (autocast for
    bf16/fp16, a grad scaler for fp16), the preset's loss (decode + aux), backward, the preset's SGD
    with its parameter groups, a poly-LR step. Labels are random; the work does not depend on them."""
    from sceneparse.engine.losses import build_criterion
    from sceneparse.engine.optimizer import build_optimizer
    from sceneparse.engine.schedule import PolyLR

    model.train()
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    run = torch.compile(model) if settings.compile else model
    cfg = preset.train
    optimizer = build_optimizer(model, cfg)
    scheduler = PolyLR(optimizer, 1_000_000, cfg.lr_power, cfg.min_lr)
    criterion = build_criterion(cfg, preset.model.num_classes, preset.data.ignore_index,
                                preset.model.aux_head.loss_weight, preset.model.align_corners).to(x.device)
    scaler = torch.amp.GradScaler(x.device.type) if settings.dtype == "fp16" else None
    labels = torch.randint(0, preset.model.num_classes, (x.shape[0], *x.shape[-2:]), device=x.device)

    def step() -> object:
        with autocast_context(x.device.type, settings.dtype):
            out = run(x, upsample=False)
        loss = criterion.consume(out, labels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        return loss

    return step


def run_benchmark(preset: Preset, settings: BenchmarkSettings, progress: bool = True) -> BenchmarkResult:
    """Build the preset's network (random weights: speed does not depend on them) and time it."""
    settings.validate()
    device = torch.device(settings.device)
    model = build_segmentor(preset.model).to(device)
    x = torch.randn(settings.batch, 3, *settings.size, device=device)
    if settings.train:
        step = training_step(model, x, preset, settings)
    else:
        step = inference_step(model, x, settings)
    sync = synchronizer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_iterations(step, settings.warmup, settings.iters, sync, preset.name, progress)
    if device.type == "cuda":
        memory, kind = int(torch.cuda.max_memory_allocated(device)), "cuda max allocated"
    else:
        memory, kind = peak_rss_bytes(), "cpu peak RSS (process)"
    flops = summarize(preset.model, settings.size).flops
    median = statistics.median(times)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return BenchmarkResult(
        preset=preset.name,
        settings=asdict(settings),
        times_s=times,
        median_s=median,
        iqr_s=quartiles[2] - quartiles[0],
        min_s=min(times),
        max_s=max(times),
        images_per_s=settings.batch / median,
        peak_memory_bytes=memory,
        memory_kind=kind,
        forward_flops_per_image=flops,
        achieved_gflops=0.0 if settings.train else flops * settings.batch / median / 1e9,
        threads=torch.get_num_threads(),
        machine=machine_description(settings.device),
    )


def format_result(result: BenchmarkResult) -> str:
    """A few aligned lines for the terminal."""
    s = result.settings
    options = [s["dtype"]] + [name for name in ("channels_last", "fuse_bn", "low_res_heads", "blocked_layout",
                                                      "winograd", "compile") if s[name]]
    what = "training step" if s["train"] else "inference"
    lines = [
        f"preset      {result.preset}",
        f"measured    {what}, batch {s['batch']} x {s['size'][0]}x{s['size'][1]}, {s['device']}, "
        f"{', '.join(options)}, {result.threads} threads",
        f"time        median {result.median_s * 1e3:.1f} ms (IQR {result.iqr_s * 1e3:.1f} ms, "
        f"min {result.min_s * 1e3:.1f}, max {result.max_s * 1e3:.1f}; {len(result.times_s)} iterations)",
        f"throughput  {result.images_per_s:.2f} images/s",
        f"memory      {result.peak_memory_bytes / 2**20:.0f} MiB ({result.memory_kind})",
        f"FLOPs       {result.forward_flops_per_image / 1e9:.1f} G per image (forward)"
        + (f", {result.achieved_gflops:.1f} GFLOP/s achieved" if not s["train"] else ""),
        f"machine     {result.machine.get('gpu') or result.machine.get('cpu')}, torch {result.machine['torch']}",
    ]
    return "\n".join(lines)
