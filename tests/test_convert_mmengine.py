"""mmsegmentation 1.x training checkpoints (mmengine's CheckpointHook) convert; pickled code never runs.

tests/fixtures/mmengine/ is a real mmengine checkpoint of a narrow mmsegmentation PSPNet after two
SGD steps (message hub with HistoryBuffers, optimizer and scheduler state), with mmsegmentation's own
logits for one input; tools/fixtures/make_mmengine_checkpoint.py made it in the peers' venv.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from sceneparse.api import build_model
from sceneparse.cli import main
from sceneparse.config.loader import dumps_toml, to_dict
from sceneparse.config.schema import Preset, TrainConfig
from sceneparse.convert.common import read_checkpoint_object, read_torch_checkpoint
from sceneparse.convert.restricted_pickle import Placeholder
from sceneparse.errors import CheckpointError
from tests.conftest import FIXTURES
from tests.test_parity import config_from_mmseg, rel_l2

MMENGINE = FIXTURES / "mmengine"
CASE = "pspnet_r18_mmengine"


def test_weights_only_loading_refuses_the_file_so_the_restricted_reader_is_needed() -> None:
    with pytest.raises(pickle.UnpicklingError):
        torch.load(MMENGINE / f"{CASE}.pth", weights_only=True)


def test_the_whole_checkpoint_reads_with_inert_placeholders() -> None:
    ckpt = read_checkpoint_object(MMENGINE / f"{CASE}.pth")
    assert set(ckpt) == {"meta", "state_dict", "message_hub", "optimizer", "param_schedulers"}
    info = json.loads((MMENGINE / f"{CASE}.json").read_text())
    assert ckpt["meta"]["iter"] == info["iter"]
    assert list(ckpt["meta"]["dataset_meta"]["classes"]) == info["classes"]
    loss = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(loss, Placeholder) and loss.qualified_name.endswith("history_buffer.HistoryBuffer")
    assert not callable(loss)
    assert all(isinstance(v, torch.Tensor) for v in ckpt["optimizer"]["state"][0].values())


def test_mmengine_checkpoint_converts_to_mmsegmentations_logits(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_from_mmseg(json.loads((MMENGINE / f"{CASE}.json").read_text()))
    preset_file = tmp_path / "tiny.toml"
    preset_file.write_text(dumps_toml(to_dict(Preset(name="tiny", model=cfg, train=TrainConfig(max_iters=1)))))
    dst = tmp_path / "tiny.safetensors"
    assert main(["convert", "--from", "mmseg", str(MMENGINE / f"{CASE}.pth"), str(dst),
                 "--preset", str(preset_file)]) == 0, capsys.readouterr().err
    model = build_model(Preset(name="tiny", model=cfg, train=TrainConfig(max_iters=1)), dst).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.load(MMENGINE / f"{CASE}.input.npy")))["out"].numpy()
    assert rel_l2(out, np.load(MMENGINE / f"{CASE}.logits.npy")) < 1e-4


class _Payload:
    """Pickles as a call of `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write(path: Path, payload: object, legacy: bool) -> Path:
    obj = {"state_dict": {"w": torch.zeros(2)}, "meta": payload}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess", "getattr"])
def test_payloads_that_run_code_are_refused_and_not_run(kind: str, legacy: bool, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    command = f"touch {marker}"
    payload = {
        "os.system": _Payload(os.system, command),
        "eval": _Payload(eval, f"open({str(marker)!r}, 'w')"),
        "subprocess": _Payload(subprocess.call, ["touch", str(marker)]),
        "getattr": _Payload(getattr, collections.OrderedDict, "fromkeys"),  # getattr on a real object
    }[kind]
    path = _write(tmp_path / "evil.pth", payload, legacy)
    with pytest.raises(CheckpointError, match="refused") as info:
        read_torch_checkpoint(path)
    assert not marker.exists(), "the payload ran"
    assert "\x1b" not in str(info.value), "no terminal colour codes in messages"


def test_an_unknown_class_is_a_placeholder_and_its_code_never_runs(tmp_path: Path) -> None:
    # a class that would run code when rebuilt: the unpickler never imports its module nor calls it
    marker = tmp_path / "ran"
    source = tmp_path / "evil_module.py"
    source.write_text(f"open({str(marker)!r}, 'w').close()\n"
                      "class Thing:\n    def __setstate__(self, state):\n"
                      f"        open({str(marker)!r}, 'w').close()\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        import evil_module

        marker.unlink()
        thing = evil_module.Thing()
        thing.x = 1
        path = tmp_path / "thing.pth"
        torch.save({"state_dict": {"w": torch.ones(3)}, "meta": {"thing": thing}}, path)
        del sys.modules["evil_module"]
    finally:
        sys.path.remove(str(tmp_path))
    assert not marker.exists()
    ckpt = read_checkpoint_object(path)
    assert isinstance(ckpt["meta"]["thing"], Placeholder) and ckpt["meta"]["thing"].state == {"x": 1}
    assert "evil_module" not in sys.modules and not marker.exists()
    assert torch.equal(read_torch_checkpoint(path)["w"], torch.ones(3))


def test_cli_error_for_a_payload_is_one_clean_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "evil.pth", _Payload(os.system, "true"), legacy=False)
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "\x1b" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_torchs_coloured_messages_lose_their_colour_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(b"\x00")

    def coloured(*args, **kwargs):  # torch.load's weights-only message bolds "do those steps only if ..."
        raise RuntimeError("\x1b[1mdo those steps only if you trust the source\x1b[0m")

    monkeypatch.setattr(torch, "load", coloured)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_object(path)
    assert "\x1b" not in str(info.value) and "do those steps" in str(info.value)
