"""sceneparse against mmsegmentation 1.x on the same model, input size and thread count, in one process.

    make peers                                   # the peers' own venv (.venv-peers), once
    .venv-peers/bin/python benchmarks/peers.py --rounds 3 --json peers.json
    .venv-peers/bin/python benchmarks/peers.py --train --models pspnet --size 256   # a training step

For each model (PSPNet R-50-D8, UPerNet R-50, PSANet R-50-D8; ADE20K, 150 classes, 512x512) the
script builds mmsegmentation's network from its packaged config, copies its (random) weights into
sceneparse's through the converter, checks that both give the same logits, then times every variant
one call at a time, alternating between variants and rotating their order each round, so slow
phases of a shared machine fall on all of them alike. It prints each variant's median, its spread
(IQR), images/s, the fraction of the machine's measured peak, and the ratio to mmsegmentation fp32.

With `--train` it compares one SGD step instead (cross-entropy + 0.4 x aux, random labels, SGD with
the recipe's momentum and weight decay), each toolbox in fresh processes that build only its own
network, alternating. Memory is reported two ways: the peak of the C allocator's live bytes above
the level before the first step (sampled every millisecond; what the step itself holds), and the
peak RSS above the RSS before the first step (what the system saw, including freed memory the
allocator kept).

The machine's peak is measured here too: a large 3x3 convolution (256 -> 256 channels, 128x128),
in fp32 and bf16, the best of NCHW and NHWC.

mmcv-lite has no compiled ops, and mmsegmentation imports `mmcv.ops` at start-up: the script puts
a stand-in module there whose ops refuse to run, except `PSAMask`: mmcv's own CPU kernel, compiled
from the sources mmcv-lite ships (benchmarks/mmcv_psamask.py; `make peers` builds it), under mmcv's
own Python wrapper. For PSANet the script also times mmsegmentation with sceneparse's pure-PyTorch
mask put in place of mmcv's ("mmseg fp32, sceneparse mask"), which separates what the op costs from
the rest. `--psa-mask sceneparse` lends our mask to every mmsegmentation model instead.

sssegmentation 1.7.0 is timed too where it imports ("ssseg fp32"): `benchmarks/ssseg_peer.py` builds
its networks with its own builder from the model part of its published configs, standing in for
torchvision (whose PyPI wheel for this torch is a CUDA build; only ssseg's SAM-family models use it).
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import platform
import statistics
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/mmcv_psamask.py

from sceneparse.benchmark import time_alternating  # noqa: E402
from sceneparse.models.psa_mask import psa_mask  # noqa: E402

# model -> (sceneparse preset, mmsegmentation config under mmseg/.mim/configs)
MODELS = {
    "pspnet": ("pspnet_r50-d8_512x512_80k_ade20k", "pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py"),
    "upernet": ("upernet_r50_512x512_80k_ade20k", "upernet/upernet_r50_4xb4-80k_ade20k-512x512.py"),
    "psanet": ("psanet_r50-d8_4xb4-80k_ade20k-512x512", "psanet/psanet_r50-d8_4xb4-80k_ade20k-512x512.py"),
}


class BorrowedPSAMask(nn.Module):
    """mmcv's `PSAMask(psa_type, mask_size)` interface over sceneparse's pure-PyTorch mask."""

    def __init__(self, psa_type: str, mask_size: tuple[int, int]) -> None:
        super().__init__()
        self.psa_type, self.mask_size = psa_type, tuple(mask_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return psa_mask(x, self.psa_type, self.mask_size)


def install_mmcv_ops_stand_in(psa_mask_kernel: str = "mmcv") -> None:
    """mmcv-lite's `mmcv.ops` fails to import (no compiled `_ext`); mmsegmentation imports it anyway.

    `psa_mask_kernel`: "mmcv" (mmcv's compiled CPU kernel and wrapper) or "sceneparse" (ours lent)."""
    stand_in = types.ModuleType("mmcv.ops")

    def unavailable(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("compiled mmcv op: not in mmcv-lite")

    for name in ("point_sample", "sigmoid_focal_loss", "CrissCrossAttention", "DeformConv2d",
                 "ModulatedDeformConv2d"):
        setattr(stand_in, name, unavailable)
    sys.modules["mmcv.ops"] = stand_in
    if psa_mask_kernel == "mmcv":
        from mmcv_psamask import mmcv_psamask_class

        stand_in.PSAMask = mmcv_psamask_class()
    else:
        stand_in.PSAMask = BorrowedPSAMask


def with_sceneparse_psa_mask(mm: nn.Module) -> nn.Module:
    """A copy of an mmsegmentation model whose PSA mask modules are sceneparse's pure-PyTorch mask."""
    mm = copy.deepcopy(mm)
    for parent in list(mm.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "PSAMask":
                setattr(parent, name, BorrowedPSAMask(child.psa_type, child.mask_size))
    return mm


@dataclass
class Timing:
    model: str
    variant: str
    times_s: list[float]
    median_s: float
    iqr_s: float
    gflop: float
    dtype: str

    @property
    def gflops(self) -> float:
        return self.gflop / self.median_s


def quartile_spread(times: list[float]) -> float:
    if len(times) < 2:
        return 0.0
    q = statistics.quantiles(times, n=4)
    return q[2] - q[0]


def measure_peak(dtype: torch.dtype, iters: int) -> float:
    """GFLOP/s of a 256 -> 256 3x3 convolution on 1 x 256 x 128 x 128, best of NCHW / NHWC and of `iters`.

    Without native bf16 (no AVX512-BF16 / AMX) a bf16 NCHW convolution takes minutes on the
    reference path, so only NHWC is measured there.
    """
    x = torch.randn(1, 256, 128, 128).to(dtype)
    w = torch.randn(256, 256, 3, 3).to(dtype) * 0.02
    flop = 2 * 256 * 256 * 9 * 128 * 128
    best = float("inf")
    formats = [torch.channels_last]
    if dtype == torch.float32 or native_bf16():
        formats.insert(0, torch.contiguous_format)
    for memory_format in formats:
        xm, wm = x.contiguous(memory_format=memory_format), w.contiguous(memory_format=memory_format)
        with torch.inference_mode():
            F.conv2d(xm, wm, padding=1)
            for _ in range(iters):
                start = time.perf_counter()
                F.conv2d(xm, wm, padding=1)
                best = min(best, time.perf_counter() - start)
    return flop / best / 1e9


def native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (else bf16 is emulated, far slower than fp32)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def build_mmseg(config: str, num_threads: int) -> nn.Module:
    import mmseg
    from mmseg.apis import init_model

    path = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", config)
    model = init_model(path, None, "cpu")  # SyncBN reverted to BN on the CPU
    torch.set_num_threads(num_threads)  # in case the import changed it
    return model.eval()


def sceneparse_twin(preset: str, mmseg_model: nn.Module) -> nn.Module:
    """sceneparse's network of `preset` holding mmsegmentation's weights (through the converter)."""
    from sceneparse.api import build_model
    from sceneparse.config import load_preset
    from sceneparse.convert.common import load_state_strict
    from sceneparse.convert.mmseg import convert_mmseg

    cfg = load_preset(preset)
    model = build_model(cfg)
    load_state_strict(model, convert_mmseg(mmseg_model.state_dict(), cfg.model.name), "mmsegmentation model")
    return model.eval()


def variants_for(model_name: str, mm: nn.Module, ours: nn.Module, x: torch.Tensor,
                 dtypes: list[str], ssseg: nn.Module | None = None
                 ) -> dict[str, tuple[str, Callable[[], torch.Tensor]]]:
    """name -> (dtype, call) of everything timed for one model (`ssseg`: sssegmentation's network, if built)."""
    from sceneparse.models.fuse import autocast_context, prepare_for_inference

    # "fast": prepare_for_inference's defaults plus BN folding (low-resolution head convolutions on)
    metas = [dict(img_shape=tuple(x.shape[-2:]), ori_shape=tuple(x.shape[-2:]), pad_shape=tuple(x.shape[-2:]))]
    fused = prepare_for_inference(ours, "fp32", channels_last=False, fuse_bn=True, copy_model=True)
    fused_cl = prepare_for_inference(ours, "fp32", channels_last=True, fuse_bn=True, copy_model=True)
    found: dict[str, tuple[str, Callable[[], torch.Tensor]]] = {
        "mmseg fp32": ("fp32", lambda: mm.encode_decode(x, metas)),
    }
    if any(type(m).__name__ == "PSAMask" and not isinstance(m, BorrowedPSAMask) for m in mm.modules()):
        mm_our_mask = with_sceneparse_psa_mask(mm)
        found["mmseg fp32, sceneparse mask"] = ("fp32", lambda: mm_our_mask.encode_decode(x, metas))
    if ssseg is not None:
        from ssseg_peer import ssseg_logits

        found["ssseg fp32"] = ("fp32", lambda: ssseg_logits(ssseg, x))
    found |= {
        "sceneparse eager fp32": ("fp32", lambda: ours(x)["out"]),
        "sceneparse fast fp32": ("fp32", lambda: fused(x)["out"]),
        "sceneparse fast+channels_last fp32": ("fp32", lambda: fused_cl(x)["out"]),
    }
    from sceneparse.models.winograd import winograd_available, winograd_by_default

    if winograd_available() and not winograd_by_default():  # AVX-512 CPUs: Winograd is off by default
        fused_wino = prepare_for_inference(ours, "fp32", fuse_bn=True, copy_model=True, winograd=True)
        found["sceneparse fast+Winograd fp32"] = ("fp32", lambda: fused_wino(x)["out"])
    if "bf16" in dtypes:
        # the path a user gets: on the CPU the model cast to bf16, channels_last (prepare_for_inference's defaults)
        fast_bf16 = prepare_for_inference(ours, "bf16", fuse_bn=True, copy_model=True)

        def mmseg_bf16() -> torch.Tensor:
            with autocast_context("cpu", "bf16"):
                return mm.encode_decode(x, metas)

        found["mmseg bf16 autocast"] = ("bf16", mmseg_bf16)
        found["sceneparse fast bf16"] = ("bf16", lambda: fast_bf16(x)["out"])
    return found


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def current_rss_bytes() -> int:
    with open("/proc/self/statm", encoding="utf-8") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def live_heap_bytes() -> int | None:
    """Bytes the C allocator has handed out and not taken back (glibc's mallinfo2: heap in use plus
    mmapped blocks). Unlike RSS it does not count freed memory the allocator keeps, so it compares
    two programs' peaks without their allocation histories. None where glibc is not the allocator."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


class PeakSampler:
    """The highest `live_heap_bytes` seen every millisecond, from a background thread, while in use."""

    def __init__(self) -> None:
        self.peak = live_heap_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, live_heap_bytes() or 0)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def train_child(toolbox: str, model_name: str, size: int, batch: int, steps: int) -> dict:
    """One toolbox's SGD steps in this (fresh) process: step times and the peak RSS above the
    resident size just before the first step (model, optimizer and data already built)."""
    import resource

    from sceneparse.benchmark import BenchmarkSettings, training_step

    preset, config = MODELS[model_name]
    x = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 150, (batch, size, size))
    if toolbox == "sceneparse":  # only its own network in this process (time and memory do not depend on weights)
        from sceneparse.api import build_model
        from sceneparse.config import load_preset

        cfg = load_preset(preset)
        step = training_step(build_model(cfg), x, cfg, BenchmarkSettings(size=(size, size), train=True, batch=batch))
    else:
        install_mmcv_ops_stand_in()
        mm = build_mmseg(config, torch.get_num_threads())
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample

        samples = []
        for i in range(batch):
            sample = SegDataSample()
            sample.gt_sem_seg = PixelData(data=labels[i][None])
            sample.set_metainfo(dict(img_shape=(size, size), pad_shape=(size, size), ori_shape=(size, size)))
            samples.append(sample)
        mm.train()
        optimizer = torch.optim.SGD(mm.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)  # the recipe's

        def step() -> object:
            losses = mm.loss(x, samples)
            loss = sum(v for k, v in losses.items() if "loss" in k)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

    before, live_before = current_rss_bytes(), live_heap_bytes() or 0
    times = []
    with PeakSampler() as sampler:
        for _ in range(steps + 1):  # the first is a warm-up
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"toolbox": toolbox, "times_s": times[1:], "peak_rss_above_start": peak - before, "peak_rss": peak,
            "peak_live_heap_above_start": sampler.peak - live_before}


def compare_training(model_name: str, size: int, batch: int, steps: int, repeats: int, threads: int) -> None:
    """Alternating fresh processes (so each peak RSS is its own), sceneparse then mmseg, `repeats` times."""
    import subprocess

    results: dict[str, list[dict]] = {"sceneparse": [], "mmseg": []}
    for _ in range(repeats):
        for toolbox in results:
            out = subprocess.run([sys.executable, __file__, "--train-child", toolbox, "--models", model_name,
                                  "--size", str(size), "--batch", str(batch), "--steps", str(steps),
                                  "--threads", str(threads)], capture_output=True, text=True, check=True)
            results[toolbox].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\ntraining step, {model_name}, batch {batch} x {size}x{size}, {threads} threads, "
          f"{repeats} alternating processes x {steps} steps each:")
    base = None
    for toolbox, runs in results.items():
        times = [t for run in runs for t in run["times_s"]]
        median = statistics.median(times)
        memory = max(run["peak_rss_above_start"] for run in runs) / 2**20
        live = max(run["peak_live_heap_above_start"] for run in runs) / 2**20
        base = base or median
        print(f"  {toolbox:11} median {median:6.2f} s (IQR {quartile_spread(times):.2f}), "
              f"peak live heap above start {live:6.0f} MiB, peak RSS above start {memory:6.0f} MiB, "
              f"time vs sceneparse {median / base:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--size", type=int, default=512, help="square input side (default 512)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per variant (default 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"],
                        help="default: fp32, plus bf16 where the CPU has native bf16")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--train", action="store_true", help="only compare a training step (time, peak RSS)")
    parser.add_argument("--batch", type=int, default=2, help="training batch (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per process (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="processes per toolbox, alternating (default 2)")
    parser.add_argument("--psa-mask", choices=["mmcv", "sceneparse"], default="mmcv",
                        help="mmsegmentation's PSA mask: mmcv's compiled CPU kernel (default) or sceneparse's")
    parser.add_argument("--no-ssseg", action="store_true", help="leave sssegmentation out even where it imports")
    parser.add_argument("--train-child", choices=["sceneparse", "mmseg"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.train_child:
        print(json.dumps(train_child(args.train_child, args.models[0], args.size, args.batch, args.steps)))
        return 0
    if args.train:
        for model_name in args.models:
            compare_training(model_name, args.size, args.batch, args.steps, args.repeats, args.threads)
        return 0
    if args.dtypes is None:
        args.dtypes = ["fp32", "bf16"] if native_bf16() else ["fp32"]
        if not native_bf16():
            print("this CPU has no native bf16: the bf16 model variants are skipped (--dtypes fp32 bf16 forces them)")
    install_mmcv_ops_stand_in(args.psa_mask)
    build_ssseg = None
    if not args.no_ssseg:
        try:
            from ssseg_peer import build_ssseg, import_ssseg

            import_ssseg()
        except Exception as exc:  # not installed, or does not import here: the table leaves it out
            build_ssseg = None
            print(f"sssegmentation left out: {type(exc).__name__}: {exc}")
    import mmseg

    from sceneparse.config import load_preset
    from sceneparse.summary import summarize

    peak = {"fp32": measure_peak(torch.float32, 3), "bf16": measure_peak(torch.bfloat16, 2)}
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"mmsegmentation {mmseg.__version__}; 3x3 conv peak " + ", ".join(f"{k} {v:.0f} GFLOP/s"
                                                                        for k, v in peak.items()), flush=True)
    results: list[Timing] = []
    parity: dict[str, float] = {}
    for model_name in args.models:
        preset, config = MODELS[model_name]
        mm = build_mmseg(config, args.threads)
        ours = sceneparse_twin(preset, mm)
        gflop = summarize(load_preset(preset).model, (args.size, args.size)).flops / 1e9
        x = torch.randn(1, 3, args.size, args.size)
        with torch.inference_mode():
            metas = [dict(img_shape=(args.size, args.size), ori_shape=(args.size, args.size),
                          pad_shape=(args.size, args.size))]
            parity[model_name] = relative_l2(ours(x)["out"], mm.encode_decode(x, metas))
        print(f"{model_name}: {gflop:.0f} GFLOP at {args.size}x{args.size}; sceneparse vs mmseg logits "
              f"relative L2 {parity[model_name]:.1e}", flush=True)
        ss = build_ssseg(model_name) if build_ssseg is not None else None
        calls = variants_for(model_name, mm, ours, x, args.dtypes, ss)
        with torch.inference_mode():
            times = time_alternating({name: call for name, (_, call) in calls.items()}, args.rounds, args.warmup,
                                     progress=False)
        print("  " + ", ".join(f"{name} {statistics.median(values):.2f}s" for name, values in times.items()),
              flush=True)
        for name, values in times.items():
            results.append(Timing(model_name, name, values, statistics.median(values), quartile_spread(values),
                                  gflop, calls[name][0]))
        del mm, ours, calls, ss

    print()
    header = f"{'model':8} {'variant':38} {'median s':>9} {'IQR s':>7} {'img/s':>6} {'GFLOP/s':>8} " \
             f"{'% peak':>7} {'vs mmseg fp32':>14}"
    print(header)
    print("-" * len(header))
    for t in results:
        base = next(r for r in results if r.model == t.model and r.variant == "mmseg fp32")
        print(f"{t.model:8} {t.variant:38} {t.median_s:9.2f} {t.iqr_s:7.2f} {1 / t.median_s:6.2f} "
              f"{t.gflops:8.1f} {100 * t.gflops / peak[t.dtype]:6.0f}% {base.median_s / t.median_s:13.2f}x")
    if args.json:
        from sceneparse.weights import atomic_write

        document = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                                "native_bf16": native_bf16(), "mmseg_psa_mask": args.psa_mask,
                                "torch": torch.__version__, "mmsegmentation": mmseg.__version__},
                    "size": args.size, "peak_gflops": peak, "parity_relative_l2": parity,
                    "results": [asdict(t) | {"gflops": t.gflops} for t in results]}
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(document, indent=2)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
