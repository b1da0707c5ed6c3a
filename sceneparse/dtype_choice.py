"""`--dtype auto`: the forward precision that is fastest on this device, and why.

The rule follows what was measured (docs/benchmarks.md):

- CUDA: half precision with folded BN and low-resolution heads ran 1.4-1.9x fp32 on an H100 at
  1024x2048, bf16 as fast as fp16 or faster, and it halves the activations' memory; at 512x512
  with batch 1 the H100 was bound by kernel launches and bf16 ran 0.77-1.05x fp32 (there
  `--dtype fp32` or larger batches). So bf16 on GPUs with bf16 tensor cores (compute capability
  8.0+), fp16 on those with fp16 tensor cores only (7.x; not measured here: tensor cores are what
  make half precision pay), fp32 on older ones.
- CPU: bf16 only where the CPU has native bf16 instructions (the `avx512_bf16` or `amx_bf16`
  flags; on a 2-core Xeon with AMX the cast bf16 model ran 3.1-3.5x eager fp32) *and* a short measurement on this CPU
  finds bf16 faster. Without them bf16 runs on an emulated path about 13x slower than fp32
  (AMD EPYC Zen 3 here), so fp32. The measurement (a 3x3 convolution in fp32 and in bf16, well
  under a second) runs once per CPU model, PyTorch version and thread count; its result is kept
  in the cache folder (`dtype_choice.json` in `~/.cache/sceneparse` or `$SCENEPARSE_CACHE`).

The decision itself (`choose_dtype`) takes the facts as arguments, so it is tested with faked
CPU flags and GPUs; `resolve_dtype` gathers the facts of this machine and logs the choice.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CHOICES = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_MIN_SPEEDUP = 1.2  # measured bf16 must beat fp32 by this much: the margin covers measurement noise
CACHE_FILE = "dtype_choice.json"


@dataclass(frozen=True)
class CpuInfo:
    """What decides the CPU's precision: its model name and its instruction-set flags."""

    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> frozenset[str]:
        """The native-bf16 flags this CPU has (empty when it has none)."""
        return self.flags & frozenset(NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: tuple[int, int]  # CUDA compute capability (major, minor)


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # "fp32", "bf16" or "fp16"
    reason: str  # one sentence for the log


def choose_dtype(device_type: str, cpu: CpuInfo, gpu: GpuInfo | None,
                 bf16_speedup: Callable[[CpuInfo], float]) -> DtypeChoice:
    """The precision `--dtype auto` runs for these facts.

    `bf16_speedup(cpu)` (fp32 time / bf16 time on this CPU) is only called for a CPU with native bf16.
    """
    if device_type == "cuda":
        if gpu is None:
            return DtypeChoice("fp32", "the CUDA device could not be queried")
        cc = f"compute capability {gpu.capability[0]}.{gpu.capability[1]}"
        if gpu.capability >= (8, 0):
            return DtypeChoice("bf16", f"{gpu.name} ({cc}) has bf16 tensor cores; half precision ran "
                                       "1.4-1.9x fp32 on an H100 (docs/benchmarks.md)")
        if gpu.capability >= (7, 0):
            return DtypeChoice("fp16", f"{gpu.name} ({cc}) has fp16 tensor cores but no bf16 ones")
        return DtypeChoice("fp32", f"{gpu.name} ({cc}) has no tensor cores")
    if device_type != "cpu":
        return DtypeChoice("fp32", f"no measured rule for {device_type} devices")
    native = sorted(cpu.native_bf16)
    if not native:
        return DtypeChoice("fp32", f"this CPU ({cpu.model}) has no native bf16 ({' / '.join(NATIVE_BF16_FLAGS)} "
                                   "flag); bf16 would run emulated, far slower than fp32")
    speedup = bf16_speedup(cpu)
    if speedup >= BF16_MIN_SPEEDUP:
        return DtypeChoice("bf16", f"this CPU ({cpu.model}) has native bf16 ({', '.join(native)}) and bf16 "
                                   f"measured {speedup:.2f}x fp32 here")
    return DtypeChoice("fp32", f"this CPU ({cpu.model}) has native bf16 ({', '.join(native)}) but bf16 "
                               f"measured only {speedup:.2f}x fp32 here (needs {BF16_MIN_SPEEDUP}x)")


def read_cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This CPU's model and flags: /proc/cpuinfo (Linux), plus what PyTorch detects (any system)."""
    model, flags = "unknown CPU", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    # PyTorch's own cpuinfo-based checks (private, so looked up defensively)
    detected = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    for flag, name in detected.items():
        check = getattr(torch.cpu, name, None)
        if check is not None and check():
            flags.add(flag)
    return CpuInfo(model, frozenset(flags))


def read_gpu_info(device: torch.device) -> GpuInfo | None:
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return GpuInfo(torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index)))


def measure_bf16_speedup(repeats: int = 5) -> float:
    """fp32 time / bf16 time of a 128 -> 128 3x3 convolution on 1 x 128 x 64 x 64 (best of `repeats`),
    each as the fast path runs it on the CPU: fp32 in NCHW, bf16 with weights and input cast to bf16
    in channels_last (`sceneparse.models.fuse.casts_the_model`, `channels_last_pays_off`)."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).eval()
    x = torch.randn(1, 128, 64, 64)
    conv_bf16 = copy.deepcopy(conv).to(torch.bfloat16).to(memory_format=torch.channels_last)
    x_bf16 = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)

    def best(run: Callable[[], torch.Tensor]) -> float:
        times = []
        with torch.inference_mode():
            for i in range(repeats + 2):  # two warm-up calls
                start = time.perf_counter()
                run()
                if i >= 2:
                    times.append(time.perf_counter() - start)
        return min(times)

    return best(lambda: conv(x)) / best(lambda: conv_bf16(x_bf16))


def cached_bf16_speedup(cpu: CpuInfo, cache: Path | None = None,
                        measure: Callable[[], float] = measure_bf16_speedup) -> float:
    """The measured bf16 speedup of this CPU model, measured once and kept in the cache folder."""
    from sceneparse.data.files import write_text
    from sceneparse.hub import cache_dir

    path = cache if cache is not None else cache_dir() / CACHE_FILE
    key = f"{cpu.model} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    try:
        table = json.loads(path.read_text())
        if not isinstance(table, dict):
            table = {}
    except (OSError, ValueError):
        table = {}  # no cache yet, or an unreadable one: measure again and rewrite it
    value = table.get(key)
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    log.info("measuring bf16 against fp32 on this CPU once (kept in %s)", path)
    speedup = measure()
    table[key] = round(speedup, 3)
    try:
        write_text(path, json.dumps(table, indent=1, sort_keys=True) + "\n")
    except OSError as exc:  # a read-only home: the choice still holds for this run
        log.warning("could not keep the bf16 measurement in %s (%s)", path, exc)
    return speedup


def resolve_dtype(requested: str, device: torch.device | str) -> str:
    """`requested` itself, or for "auto" the precision `choose_dtype` picks here (logged with its reason)."""
    if requested != "auto":
        if requested not in CHOICES:
            raise ValueError(f"dtype must be one of {', '.join(CHOICES)}, got {requested!r}")
        return requested
    device = torch.device(device)
    choice = choose_dtype(device.type, read_cpu_info(), read_gpu_info(device), cached_bf16_speedup)
    log.info("--dtype auto: %s, because %s", choice.dtype, choice.reason)
    return choice.dtype
