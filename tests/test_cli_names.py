"""Every published name works: mmsegmentation's 0.x and 1.x config names and checkpoint file names.

The expected names come from mmsegmentation 1.2.2's own metafiles and config files
(tests/fixtures/mmseg_names.json, made by tools/fixtures/make_mmseg_names.py in the peers' venv):
a model's 1.x name is its metafile `Name`, its 0.x name is the folder of its checkpoint URL.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sceneparse.cli import main
from sceneparse.config import load_preset, preset_names
from sceneparse.config.names import mmseg_v0_name, mmseg_v1_name, preset_for_checkpoint, resolve_name

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "mmseg_names.json").read_text())
MODELS = FIXTURE["models"]
CONFIGS = [c["config"] for c in FIXTURE["configs"]]
MMSEG_ROWS = [n for n in preset_names() if load_preset(n).published.source == "mmsegmentation"]
TARGETS = {"dark_zurich": "dark-zurich-1920x1080", "night_driving": "night-driving-1920x1080"}


def _model_with_weights(url: str) -> dict:
    # by file name: one metafile URL has a typo in its host ("download.oz1z1penmmlab.com")
    file_name = url.rsplit("/", 1)[-1]
    found = [m for m in MODELS if m["weights"].endswith("/" + file_name)
             and "amp" not in m["config"] and "rsb" not in m["config"]]
    assert len(found) == 1, url
    return found[0]


def test_the_fixture_covers_the_three_architectures() -> None:
    assert {load_preset(n).model.name for n in MMSEG_ROWS} == {"pspnet", "psanet", "upernet"}
    assert {c.split("_")[0] for c in CONFIGS} == {"pspnet", "psanet", "upernet"}


@pytest.mark.parametrize("preset", MMSEG_ROWS)
def test_every_mmseg_row_answers_to_its_published_names(preset: str) -> None:
    cfg = load_preset(preset)
    url = cfg.published.weights_url
    if cfg.data.dataset in TARGETS:
        # scored on Dark Zurich / Nighttime Driving with the Cityscapes model: 1.x name = that model's + target
        twin = _model_with_weights(url)["config"]
        v1 = f"{twin}_{TARGETS[cfg.data.dataset]}"
        assert v1 in CONFIGS
        assert resolve_name(v1) == preset and load_preset(v1).name == preset
        # the shared checkpoint file is the Cityscapes model's
        assert preset_for_checkpoint(url.rsplit("/", 1)[-1]) == resolve_name(twin)
        return
    v1 = cfg.published.source_config
    assert v1 in CONFIGS, f"{v1} is not an mmsegmentation 1.x config"
    assert resolve_name(v1) == preset
    if url:
        model = _model_with_weights(url)
        assert model["config"] == v1
        v0 = url.rsplit("/", 2)[-2]
        assert resolve_name(v0) == preset and load_preset(v0).name == preset
        assert preset_for_checkpoint(url.rsplit("/", 1)[-1]) == preset
        assert preset_for_checkpoint(f"/downloads/{url.rsplit('/', 1)[-1]}") == preset
    else:  # no published checkpoint (UPerNet R-18): the 0.x name by mmsegmentation's renaming rule
        assert resolve_name(mmseg_v0_name(v1)) == preset


# the metafile models whose checkpoint is one of the tables' rows (not LoveDA, Potsdam, RSB, AMP, ...)
TABLE_FILES = {load_preset(n).published.weights_url.rsplit("/", 1)[-1] for n in MMSEG_ROWS}
TABLE_MODELS = [m for m in MODELS if m["weights"].rsplit("/", 1)[-1] in TABLE_FILES
                and "amp" not in m["config"] and "rsb" not in m["config"]]


@pytest.mark.parametrize("model", TABLE_MODELS, ids=lambda m: m["config"])
def test_renaming_rule_matches_mmsegmentation(model: dict) -> None:
    v1, v0 = model["config"], model["weights"].rsplit("/", 2)[-2]
    assert mmseg_v0_name(v1) == v0 and mmseg_v1_name(v0) == v1


def test_the_issue_names_work_in_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("pspnet_r50-d8_4xb2-40k_cityscapes-512x1024_dark-zurich-1920x1080",
                 "psanet_r50-d8_512x1024_40k_cityscapes", "upernet_r18_512x1024_40k_cityscapes"):
        assert main(["show", name]) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_convert_finds_the_preset_from_the_checkpoint_file_name(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # a file that is not a checkpoint, under a published name: the preset is found, then the file refused
    src = tmp_path / "pspnet_r50-d8_512x1024_40k_cityscapes_20200605_003338-2966598c.pth"
    src.write_bytes(b"not a checkpoint")
    assert main(["convert", "--from", "mmseg", str(src), str(tmp_path / "out.safetensors")]) == 1
    captured = capsys.readouterr()
    assert "preset pspnet_r50-d8_512x1024_40k_cityscapes" in captured.out + captured.err
    assert "unreadable" in captured.err or "refused" in captured.err
    unknown = tmp_path / "my_own_run.pth"
    unknown.write_bytes(b"x")
    assert main(["convert", "--from", "mmseg", str(unknown), str(tmp_path / "out.safetensors")]) == 1
    assert "--preset" in capsys.readouterr().err
