"""The TOML config: unknown keys and wrong types are named; overrides and user files work."""
from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from sceneparse.config import dumps_toml, load_preset, to_dict
from sceneparse.config.loader import from_dict, parse_overrides
from sceneparse.config.schema import Preset
from sceneparse.errors import ConfigError

BASE = "pspnet_r50-d8_512x1024_40k_cityscapes"


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(f'extends = "{BASE}"\n[train]\nlearning_rate = 0.1\n')
    with pytest.raises(ConfigError, match=r"mine.toml: key 'train.learning_rate': unknown key"):
        load_preset(path)


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"key 'model.backbone.depth': expected an integer"):
        from_dict(Preset, {"model": {"backbone": {"depth": "fifty"}}})
    with pytest.raises(ConfigError, match=r"key 'data.crop_size\[1\]'"):
        from_dict(Preset, {"data": {"crop_size": [512, "a"]}})


def test_overrides_and_user_file(tmp_path: Path) -> None:
    p = load_preset(BASE, ["train.lr=0.02", "data.crop_size=[256, 256]", "model.backbone.depth=101"])
    assert (p.train.lr, p.data.crop_size, p.model.backbone.depth) == (0.02, [256, 256], 101)
    assert parse_overrides(["test.mode=slide"]) == {"test": {"mode": "slide"}}
    path = tmp_path / "run.toml"
    path.write_text(f'extends = "{BASE}"\n[train]\nmax_iters = 100\n')
    mine = load_preset(path)
    assert mine.train.max_iters == 100 and mine.model.backbone.depth == 50 and mine.name == "run"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_preset(BASE, ["train.lr"])


def test_show_output_round_trips() -> None:
    original = load_preset(BASE)
    text = dumps_toml(to_dict(original))
    again = from_dict(Preset, tomllib.loads(text))
    assert again == original


def test_unknown_preset_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        load_preset("pspnet_r50-d8_512x1024")


def test_inconsistent_schedule_is_refused() -> None:
    with pytest.raises(ConfigError, match="exactly one of train.max_iters and train.max_epochs"):
        load_preset(BASE, ["train.max_epochs=3"])


def test_mmseg_1x_names_are_aliases() -> None:
    assert load_preset("pspnet_r50-d8_4xb2-40k_cityscapes-512x1024").name == BASE
