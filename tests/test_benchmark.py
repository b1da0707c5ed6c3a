"""`sceneparse benchmark`: the numbers it reports are consistent with each other and with the
model summary, every option runs, and impossible combinations are refused with the option named."""
from __future__ import annotations

import json

import pytest
import torch

from sceneparse.benchmark import BenchmarkSettings, run_benchmark, time_iterations, training_step
from sceneparse.cli import main
from sceneparse.config import load_preset
from sceneparse.errors import ConfigError
from sceneparse.models import build_segmentor
from sceneparse.summary import summarize

PRESET = "pspnet_r50-d8_512x1024_40k_cityscapes"
TINY = ["model.backbone.depth=18", "model.backbone.stem_channels=16", "model.backbone.base_channels=8",
        "model.decode_head.channels=16", "model.aux_head.channels=8", "model.num_classes=5"]
TINY_ARGS = [arg for setting in TINY for arg in ("--set", setting)]


def run_cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    status = main(["benchmark", PRESET, "--size", "64x80", "--warmup", "1", "--iters", "3", "--json",
                   *TINY_ARGS, *args])
    assert status == 0
    return json.loads(capsys.readouterr().out)


def test_json_result_is_consistent(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli_json(capsys, "--batch", "2")
    assert len(result["times_s"]) == 3
    assert result["min_s"] <= result["median_s"] <= result["max_s"]
    assert result["iqr_s"] >= 0
    assert result["images_per_s"] == pytest.approx(2 / result["median_s"])
    flops = summarize(load_preset(PRESET, TINY).model, (64, 80)).flops
    assert result["forward_flops_per_image"] == flops
    assert result["achieved_gflops"] == pytest.approx(flops * 2 / result["median_s"] / 1e9)
    assert result["peak_memory_bytes"] > 0 and result["memory_kind"].startswith("cpu")
    assert result["settings"]["size"] == [64, 80] and result["settings"]["batch"] == 2


@pytest.mark.parametrize("options", [["--fuse-bn", "--channels-last", "--low-res-heads"], ["--dtype", "bf16"],
                                     ["--train", "--batch", "2"], ["--fuse-bn", "--low-res-heads", "--blocked-layout", "--winograd"]])
def test_options_run_and_are_recorded(capsys: pytest.CaptureFixture[str], options: list[str]) -> None:
    result = run_cli_json(capsys, *options)
    settings = result["settings"]
    assert settings["fuse_bn"] == ("--fuse-bn" in options)
    assert settings["low_res_heads"] == ("--low-res-heads" in options)
    assert settings["channels_last"] == ("--channels-last" in options)
    assert settings["blocked_layout"] == ("--blocked-layout" in options)
    assert settings["winograd"] == ("--winograd" in options)
    assert settings["train"] == ("--train" in options)
    assert settings["dtype"] == ("bf16" if "bf16" in options else "fp32")
    assert all(t > 0 for t in result["times_s"])


def test_training_step_updates_the_weights() -> None:
    """The timed training step is a real one: parameters move."""
    preset = load_preset(PRESET, TINY)
    settings = BenchmarkSettings(size=(64, 64), batch=2, train=True, warmup=0, iters=1)
    model = build_segmentor(preset.model)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("conv.weight")}
    step = training_step(model, torch.randn(2, 3, 64, 64), preset, settings)
    step()
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_human_readable_output(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        status = main(["benchmark", PRESET, "--size", "64", "--warmup", "0", "--iters", "2", "--threads", "1",
                       *TINY_ARGS])
    finally:
        torch.set_num_threads(threads)  # --threads sets the whole process's count
    assert status == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "GFLOP/s achieved" in out and "1 threads" in out


@pytest.mark.parametrize(("settings", "message"), [
    (BenchmarkSettings(train=True, fuse_bn=True, batch=2), "--fuse-bn"),
    (BenchmarkSettings(train=True, low_res_heads=True, batch=2), "--low-res-heads"),
    (BenchmarkSettings(train=True, batch=1), "--batch 2"),
    (BenchmarkSettings(blocked_layout=True), "--blocked-layout"),  # needs --fuse-bn
    (BenchmarkSettings(blocked_layout=True, fuse_bn=True, channels_last=True), "--blocked-layout"),
    (BenchmarkSettings(winograd=True, dtype="bf16"), "--winograd"),
    (BenchmarkSettings(winograd=True, train=True, batch=2), "--winograd"),
    (BenchmarkSettings(dtype="int8"), "--dtype"),
    (BenchmarkSettings(device="tpu"), "--device tpu"),
])
def test_impossible_settings_are_refused(settings: BenchmarkSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_benchmark(load_preset(PRESET, TINY), settings, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", PRESET, "--device", "cuda", *TINY_ARGS]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


def test_time_iterations_counts_calls() -> None:
    calls = []
    times = time_iterations(lambda: calls.append(1), warmup=2, iters=4, sync=lambda: None, progress=False)
    assert len(calls) == 6 and len(times) == 4
