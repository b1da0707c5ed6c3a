"""Bad configs and options are one-line errors, refused where configs are loaded (issue 14, point 7)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sceneparse.cli import main
from sceneparse.config import load_preset
from sceneparse.config.loader import to_dict
from sceneparse.errors import ConfigError
from sceneparse.segmenter import preset_from_weights
from sceneparse.weights import save_weights

PRESET = "pspnet_r50-d8_512x1024_40k_cityscapes"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(("text", "expected"), [
    ('extends = ["a", "b"]\n', "key 'extends' must be one preset name"),
    ("extends = 5\n", "key 'extends' must be one preset name"),
])
def test_extends_that_is_not_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    assert main(["show", str(path)]) == 1
    assert expected in one_line_error(capsys)


def test_a_toml_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(f'extends = "{PRESET}"\ndescription = "caf\xe9"\n'.encode("latin-1"))
    assert main(["show", str(path)]) == 1
    assert "latin1.toml: not UTF-8 text" in one_line_error(capsys)


@pytest.mark.parametrize(("override", "key"), [
    ("data.crop_size=[0,0]", "data.crop_size"),
    ("data.crop_size=[-512,512]", "data.crop_size"),
    ("test.stride=[0,0]", "test.stride"),
    ("test.scales=[]", "test.scales"),
    ("test.slide_style='mmsegmentation'", "test.slide_style"),
    ("data.scale=[0,0]", "data.scale"),
    ("data.ratio_range=[2.0,0.5]", "data.ratio_range"),
    ("model.backbone.depth=42", "model.backbone.depth"),
    ("data.num_workers=-1", "data.num_workers"),
])
def test_values_no_run_can_use_are_refused_by_show_as_by_train(
        override: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", PRESET, "--set", override]) == 1
    assert f"key '{key}'" in one_line_error(capsys)
    assert main(["train", PRESET, "--set", override, "--work-dir", str(tmp_path / "w")]) == 1
    assert f"key '{key}'" in one_line_error(capsys)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--workers", "-1"], "argument --workers: must be 0 or more"),
    (["--stop-at", "0"], "argument --stop-at: must be 1 or more"),
    (["--stop-at", "-1"], "argument --stop-at: must be 1 or more"),
])
def test_train_options_out_of_range(args: list[str], expected: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", PRESET, "--work-dir", str(tmp_path / "w"), *args])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_test_workers_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["test", PRESET, "--workers", "-1"])
    assert "argument --workers: must be 0 or more" in capsys.readouterr().err


def test_a_work_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "notes.txt"
    work.write_text("mine")
    assert main(["train", PRESET, "--work-dir", str(work)]) == 1
    assert f"--work-dir {work}: is a file, not a folder" in one_line_error(capsys)
    assert work.read_text() == "mine"


def test_a_config_inside_a_checkpoint_is_checked_as_a_file_is(tmp_path: Path) -> None:
    config = to_dict(load_preset(PRESET))
    config["test"]["stride"] = [0, 0]
    path = tmp_path / "edited.safetensors"
    save_weights({"w": torch.zeros(1)}, path, {"preset": PRESET, "config": config})
    with pytest.raises(ConfigError, match=r"edited\.safetensors: key 'test\.stride'"):
        preset_from_weights(path)
