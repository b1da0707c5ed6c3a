"""`sceneparse convert` end to end, and mmsegmentation / sssegmentation through `convert_checkpoint`.

The peers' reference fixtures (tests/fixtures/reference) prove parity of the key maps; here the same
files go through the command line and the converted safetensors file must give the peers' logits.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from sceneparse.api import build_model
from sceneparse.cli import main
from sceneparse.config.loader import dumps_toml, to_dict
from sceneparse.config.schema import Preset, TrainConfig
from sceneparse.convert import convert_checkpoint
from sceneparse.segmenter import preset_from_weights
from sceneparse.weights import load_weights_file
from tests.conftest import REFERENCE
from tests.test_parity import _seeded_state, config_from_mmseg, rel_l2


def preset_file_for(case: str, tmp_path: Path) -> Path:
    """A user TOML file describing the fixture's network (the fixtures are narrower than any preset)."""
    cfg = config_from_mmseg(json.loads((REFERENCE / f"{case}.json").read_text()))
    preset = Preset(name=case, model=cfg, train=TrainConfig(max_iters=1))
    path = tmp_path / f"{case}.toml"
    path.write_text(dumps_toml(to_dict(preset)))
    return path


def test_cli_converts_mmseg_checkpoint_to_same_logits(tmp_path: Path, capsys) -> None:
    case = "psanet_r50-d8_tiny"
    src, dst = REFERENCE / f"{case}.pth", tmp_path / "out" / "psanet.safetensors"
    assert main(["convert", "--from", "mmseg", str(src), str(dst), "--preset", str(preset_file_for(case, tmp_path))]) == 0
    state, meta = load_weights_file(dst)
    assert meta["source_format"] == "mmseg" and meta["preset"] == case
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    preset = preset_from_weights(dst)  # the file names its model: no preset needed to use it
    model = build_model(preset, dst).eval()
    x = torch.from_numpy(np.load(REFERENCE / f"{case}.input.npy"))
    with torch.no_grad():
        out = model(x)["out"].numpy()
    assert rel_l2(out, np.load(REFERENCE / f"{case}.logits.npy")) < 1e-4
    assert not list(dst.parent.glob(".*.tmp")), "the write is atomic: no temporary file left"


def test_cli_reports_a_checkpoint_that_does_not_fit(tmp_path: Path, capsys) -> None:
    preset = preset_file_for("pspnet_r50-d8_tiny", tmp_path)
    dst = tmp_path / "psanet.safetensors"
    status = main(["convert", "--from", "mmseg", str(REFERENCE / "psanet_r50-d8_tiny.pth"), str(dst),
                   "--preset", str(preset)])
    err = capsys.readouterr().err
    assert status == 1 and "does not fit the model" in err and "decode_head.reduce.conv.weight" in err
    assert len(err.strip().splitlines()) == 1 and not dst.exists()
    status = main(["convert", "--from", "semseg", str(REFERENCE / "psanet_r50-d8_tiny.pth"), str(dst),
                   "--preset", str(preset), "--prototxt", str(preset)])
    assert status == 1 and "--prototxt is for --from caffe only" in capsys.readouterr().err


def test_sssegmentation_checkpoint_through_convert_checkpoint(tmp_path: Path) -> None:
    from sceneparse.config import load_preset

    case = "pspnet_resnet50os8_cityscapes"
    j = json.loads((REFERENCE / "ssseg" / f"{case}.json").read_text())
    src = tmp_path / f"{case}.pth"
    torch.save({"model": _seeded_state(j["spec"], j["seed"]), "epoch": 220}, src)  # sssegmentation's envelope
    preset = load_preset(case)
    model = build_model(preset).eval()
    model.load_state_dict(convert_checkpoint("sssegmentation", src, preset), strict=True)
    h, w = j["input_hw"]
    x = torch.from_numpy(np.random.RandomState(j["seed"]).normal(0, 1, (1, 3, h, w)).astype(np.float32))
    with torch.no_grad():
        out = model(x)["out"].numpy()
    assert rel_l2(out, np.load(REFERENCE / "ssseg" / f"{case}.logits.npy")) < 1e-4
