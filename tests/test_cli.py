"""The command line: presets, show, summary, and clear errors."""
from __future__ import annotations

import pytest
import tomllib

from sceneparse.cli import main


def test_presets_filters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "--model", "psanet", "--dataset", "ade20k"]) == 0
    out = capsys.readouterr().out
    assert "psanet_resnet50os8_ade20k" in out and "pspnet_" not in out and "41.99" in out


def test_show_prints_loadable_toml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "upernet_resnet50os8_ade20k", "--set", "train.lr=0.02"]) == 0
    doc = tomllib.loads(capsys.readouterr().out)
    assert doc["model"]["name"] == "upernet" and doc["train"]["lr"] == 0.02


def test_summary_reports_stride_and_flops(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "pspnet_r50-d8_512x1024_40k_cityscapes", "--size", "512x512"]) == 0
    out = capsys.readouterr().out
    assert "48,975,494" in out and "output stride 8" in out and "356.6 G" in out
    assert main(["summary", "upernet_resnet50os16_voc", "--size", "97x129"]) == 0
    assert "output stride 16" in capsys.readouterr().out


def test_unknown_preset_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "no_such_preset"]) == 1
    assert "unknown preset 'no_such_preset'" in capsys.readouterr().err


def test_output_into_a_closed_pipe_is_no_error() -> None:
    # `sceneparse zoo | head -1`: the reader goes away; no traceback, status 0
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "sceneparse", "zoo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()
