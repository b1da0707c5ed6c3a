"""`--dtype auto`: bf16 only on CPUs with native bf16 where measured faster, half precision on tensor-core
GPUs, fp32 elsewhere; decided from faked CPU flags and GPUs."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from sceneparse import dtype_choice
from sceneparse.cli import build_parser
from sceneparse.dtype_choice import (
    BF16_MIN_SPEEDUP,
    CpuInfo,
    GpuInfo,
    cached_bf16_speedup,
    choose_dtype,
    read_cpu_info,
    resolve_dtype,
)

ZEN3 = CpuInfo("AMD EPYC 7B13", frozenset({"avx2", "fma", "avx512f"}))
ZEN4 = CpuInfo("AMD EPYC 9B14", frozenset({"avx2", "avx512f", "avx512_bf16"}))
SAPPHIRE_RAPIDS = CpuInfo("Intel Xeon Platinum 8481C", frozenset({"avx512f", "amx_tile", "amx_bf16"}))


def never_measured(cpu: CpuInfo) -> float:
    raise AssertionError(f"{cpu.model} has no native bf16: nothing to measure")


def test_cpu_without_native_bf16_runs_fp32_without_measuring() -> None:
    choice = choose_dtype("cpu", ZEN3, None, never_measured)
    assert choice.dtype == "fp32"
    assert "AMD EPYC 7B13" in choice.reason and "no native bf16" in choice.reason


@pytest.mark.parametrize("cpu", [ZEN4, SAPPHIRE_RAPIDS], ids=["avx512_bf16", "amx_bf16"])
def test_cpu_with_native_bf16_runs_bf16_only_where_measured_faster(cpu: CpuInfo) -> None:
    fast = choose_dtype("cpu", cpu, None, lambda _: 1.9)
    assert fast.dtype == "bf16" and "1.90x" in fast.reason
    slow = choose_dtype("cpu", cpu, None, lambda _: BF16_MIN_SPEEDUP - 0.1)
    assert slow.dtype == "fp32" and "measured only" in slow.reason


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"),
                                                      ((7, 0), "fp16"), ((6, 1), "fp32")])
def test_cuda_follows_tensor_cores(capability: tuple[int, int], expected: str) -> None:
    choice = choose_dtype("cuda", ZEN3, GpuInfo("a GPU", capability), never_measured)
    assert choice.dtype == expected and f"{capability[0]}.{capability[1]}" in choice.reason


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    info = read_cpu_info(cpuinfo)
    assert info.model == "AMD EPYC 9B14" and info.native_bf16 == {"avx512_bf16"}
    missing = read_cpu_info(tmp_path / "absent")  # not Linux: no flags, so fp32
    assert missing.native_bf16 == frozenset()


def test_measurement_runs_once_per_cpu_and_is_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "dtype_choice.json"
    calls: list[int] = []

    def measure() -> float:
        calls.append(1)
        return 1.75

    assert cached_bf16_speedup(ZEN4, cache, measure) == 1.75
    assert cached_bf16_speedup(ZEN4, cache, measure) == 1.75
    assert len(calls) == 1 and "AMD EPYC 9B14" in cache.read_text()
    assert cached_bf16_speedup(SAPPHIRE_RAPIDS, cache, measure) == 1.75  # another CPU model: measured again
    assert len(calls) == 2
    cache.write_text("{not json")  # a damaged cache is measured again and rewritten
    assert cached_bf16_speedup(ZEN4, cache, measure) == 1.75 and len(calls) == 3


def test_resolve_logs_the_choice_and_passes_explicit_ones(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(dtype_choice, "read_cpu_info", lambda: ZEN3)
    with caplog.at_level(logging.INFO, logger="sceneparse.dtype_choice"):
        assert resolve_dtype("auto", "cpu") == "fp32"
    assert "--dtype auto: fp32, because this CPU (AMD EPYC 7B13) has no native bf16" in caplog.text
    assert resolve_dtype("bf16", "cpu") == "bf16"  # what the user asked for, whatever the CPU
    with pytest.raises(ValueError, match="fp8"):
        resolve_dtype("fp8", "cpu")


def test_auto_is_the_default_of_infer_test_keeps_fp32_benchmark_refuses_it() -> None:
    parser = build_parser()
    assert parser.parse_args(["infer", "m", "x.png", "--out", "o"]).dtype == "auto"
    assert parser.parse_args(["test", "m"]).dtype == "fp32"  # published numbers are fp32
    assert parser.parse_args(["test", "m", "--dtype", "auto"]).dtype == "auto"
    assert parser.parse_args(["benchmark", "m"]).dtype == "fp32"
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmark", "m", "--dtype", "auto"])


def test_segmenter_runs_the_automatic_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sceneparse.segmenter import Segmenter
    from tests.test_eval_cli import tiny_preset, tiny_weights

    weights = tiny_weights(tmp_path / "tiny.safetensors")
    monkeypatch.setattr(dtype_choice, "read_cpu_info", lambda: ZEN3)
    assert Segmenter.from_pretrained(tiny_preset(), weights, device="cpu").model.dtype == "fp32"
    monkeypatch.setattr(dtype_choice, "read_cpu_info", lambda: ZEN4)  # as if this CPU had native bf16
    monkeypatch.setattr(dtype_choice, "cached_bf16_speedup", lambda cpu: 1.9)
    assert Segmenter.from_pretrained(tiny_preset(), weights, device="cpu").model.dtype == "bf16"
    assert Segmenter.from_pretrained(tiny_preset(), weights, device="cpu", dtype="fp32").model.dtype == "fp32"
