"""Values a config may not hold, refused where configs are loaded (so `show` rejects what `train` would).

`sceneparse.config.loader.from_dict` checks each field's type; this module checks what the types
allow but no run can use: sizes of zero, reversed ranges, a ResNet depth that does not exist.
Each error names the file (or preset) and the key, and says what would be accepted.
"""
from __future__ import annotations

from collections.abc import Sequence

from sceneparse.config.schema import SLIDE_STYLES, Preset, TrainConfig
from sceneparse.errors import ConfigError

RESNET_DEPTHS = (18, 34, 50, 101, 152)


def _fail(source: str, key: str, message: str) -> None:
    where = f"{source}: key '{key}'" if source else f"key '{key}'"
    raise ConfigError(f"{where}: {message}")


def _pair_of_positive(values: Sequence[float], source: str, key: str, what: str) -> None:
    if len(values) != 2 or any(v <= 0 for v in values):
        _fail(source, key, f"must be two positive numbers [{what}], got {list(values)}")


def validate_values(preset: Preset, source: str = "") -> None:
    """ConfigError for the first value of `preset` that no run could use."""
    data, test, model, train = preset.data, preset.test, preset.model, preset.train
    if model.backbone.depth not in RESNET_DEPTHS:
        _fail(source, "model.backbone.depth", f"ResNet depth {model.backbone.depth} does not exist; "
                                              f"use one of {', '.join(map(str, RESNET_DEPTHS))}")
    if model.num_classes < 1:
        _fail(source, "model.num_classes", f"must be at least 1, got {model.num_classes}")
    _pair_of_positive(data.crop_size, source, "data.crop_size", "height, width")
    _pair_of_positive(data.scale, source, "data.scale", "long side, short side")
    ratio = data.ratio_range
    if len(ratio) != 2 or ratio[0] <= 0 or ratio[0] > ratio[1]:
        _fail(source, "data.ratio_range", f"must be [low, high] with 0 < low <= high, got {list(ratio)}")
    if data.num_workers < 0:
        _fail(source, "data.num_workers", f"must be 0 or more, got {data.num_workers}")
    if len(data.mean) != 3 or len(data.std) != 3 or any(s <= 0 for s in data.std):
        _fail(source, "data.std" if len(data.mean) == 3 else "data.mean",
              "mean and std must hold one value per RGB channel, std positive")
    _pair_of_positive(test.crop_size, source, "test.crop_size", "height, width")
    _pair_of_positive(test.stride, source, "test.stride", "height, width")
    if test.slide_style not in SLIDE_STYLES:
        _fail(source, "test.slide_style", f"must be one of {', '.join(SLIDE_STYLES)}, got {test.slide_style!r}")
    if not test.scales or any(s <= 0 for s in test.scales):
        _fail(source, "test.scales", f"must list one or more positive scales (used by --tta), got {list(test.scales)}")
    if train.batch_size < 1:
        _fail(source, "train.batch_size", f"must be at least 1, got {train.batch_size}")
    if train.max_iters < 0 or train.max_epochs < 0:
        _fail(source, "train.max_iters" if train.max_iters < 0 else "train.max_epochs", "must not be negative")
    _check_recipe(train, source)


LOSS_AVERAGES = ("all_pixels", "labelled")  # sceneparse.engine.losses
POLY_ENDS = ("after_last", "at_last")  # sceneparse.engine.schedule
MOMENTUM_FORMS = ("pytorch", "chainer")  # sceneparse.engine.optimizer


def _check_recipe(train: TrainConfig, source: str) -> None:
    """The training recipe's choices (docs/recipes.md)."""
    if train.loss_average not in LOSS_AVERAGES:
        _fail(source, "train.loss_average", f"expected one of {', '.join(LOSS_AVERAGES)}, got {train.loss_average!r}")
    if train.poly_end not in POLY_ENDS:
        _fail(source, "train.poly_end", f"expected one of {', '.join(POLY_ENDS)}, got {train.poly_end!r}")
    if train.momentum_form not in MOMENTUM_FORMS:
        _fail(source, "train.momentum_form",
              f"expected one of {', '.join(MOMENTUM_FORMS)}, got {train.momentum_form!r}")
    for key, value in (("train.recipe_gpus", train.recipe_gpus), ("train.accumulate", train.accumulate)):
        if value < 1:
            _fail(source, key, f"must be at least 1, got {value}")
    if not 0.0 <= train.ema < 1.0:
        _fail(source, "train.ema", f"must be a decay in [0, 1) (0 turns the average off), got {train.ema}")
