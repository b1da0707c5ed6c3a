"""Each preset selects its source's definitions, and the LR at any iteration equals the source's.

LR references: tests/fixtures/recipes/lr_reference.json, made by mmengine's PolyLR (mmsegmentation's
schedule) and sssegmentation's PolyScheduler themselves (tools/fixtures/make_loss_fixtures.py).
semseg (hszhao) is not installable: its documented `poly_learning_rate` formula is the reference.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from sceneparse.api import build_model
from sceneparse.config import load_preset
from sceneparse.config.loader import preset_names
from sceneparse.engine.optimizer import build_optimizer
from sceneparse.engine.pretrained import IMAGENET_BACKBONES, sha256_prefix_of
from sceneparse.engine.schedule import PolyLR, poly_lr
from sceneparse.errors import ConfigError

LRS = json.loads((Path(__file__).parent / "fixtures" / "recipes" / "lr_reference.json").read_text())
PRESETS = {name: load_preset(name) for name in preset_names()}


def by_source(source: str) -> list[str]:
    return sorted(name for name, p in PRESETS.items() if p.published.source == source)


@pytest.mark.parametrize("table", ["mmengine_poly_40k", "mmengine_poly_80k"])
def test_poly_at_last_equals_mmengine_polylr(table: str) -> None:
    ref = LRS[table]
    ours = [poly_lr(ref["lr"], i, ref["max_iters"], ref["power"], ref["eta_min"], poly_end="at_last")
            for i in LRS["iterations"]]
    assert ours == pytest.approx(ref["values"], rel=1e-6)


def test_mmseg_rows_use_mmcvs_poly_which_trained_the_tables() -> None:
    """mmsegmentation 0.x's PolyLrUpdaterHook (mmcv 1.x): coeff = (1 - runner.iter / runner.max_iters) ** power,
    lr = (base_lr - min_lr) * coeff + min_lr. It equals mmengine's PolyLR (max_iters - 1 in the denominator)
    except near the end, where the fixture tells them apart."""
    preset = PRESETS["pspnet_r50-d8_512x1024_40k_cityscapes"]
    t = preset.train
    assert t.poly_end == "after_last"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t.lr, momentum=t.momentum,
                                weight_decay=t.weight_decay)
    scheduler = PolyLR(optimizer, t.max_iters, t.lr_power, t.min_lr, t.warmup_iters, t.warmup_ratio, t.poly_end)
    seen = []
    for iteration in LRS["iterations"]:
        scheduler.load_state_dict({"iteration": iteration})
        seen.append(optimizer.param_groups[0]["lr"])
    mmcv = [(0.01 - 1e-4) * (1 - i / 40000) ** 0.9 + 1e-4 for i in LRS["iterations"]]
    assert seen == pytest.approx(mmcv, rel=1e-12)
    mmengine = LRS["mmengine_poly_40k"]["values"]
    assert seen[:5] == pytest.approx(mmengine[:5], rel=1e-6)  # the same schedule ...
    assert seen[-1] != pytest.approx(mmengine[-1], rel=1e-3)  # ... but for the end: mmengine reaches 1e-4 a step early


def test_ssseg_poly_equals_its_polyscheduler() -> None:
    ref = LRS["ssseg_poly_voc"]
    preset = PRESETS["pspnet_resnet50os8_voc"]
    t = preset.train
    assert (t.lr, t.lr_power, t.max_epochs) == (ref["lr"], ref["power"], ref["max_epochs"])
    max_iters = ref["max_epochs"] * ref["iters_per_epoch"]
    ours = [poly_lr(t.lr, i, max_iters, t.lr_power, t.min_lr) for i in ref["iterations"]]
    assert ours == pytest.approx(ref["values"], rel=1e-6)


def test_semseg_poly_and_head_multiplier_follow_its_train_py() -> None:
    """semseg's train.py: lr = base_lr * (1 - curr_iter / max_iter) ** power for layer0..layer4, x10 for the
    modules after them (index_split = 5), set after each step for the next one; no floor."""
    preset = load_preset("semseg_pspnet50_ade20k", ["model.backbone.depth=18", "model.backbone.base_channels=8",
                                                    "model.backbone.stem_channels=16", "model.decode_head.channels=16",
                                                    "model.aux_head.channels=8"])
    t = preset.train
    model = build_model(preset)
    optimizer = build_optimizer(model, t)
    max_iters = 1000
    scheduler = PolyLR(optimizer, max_iters, t.lr_power, t.min_lr, t.warmup_iters, t.warmup_ratio)
    groups = {g["name"]: g for g in optimizer.param_groups}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone
    assert len(groups["heads"]["params"]) == sum(1 for _ in model.parameters()) - len(backbone)
    for iteration in (0, 1, 500, 999):
        scheduler.load_state_dict({"iteration": iteration})
        expected = 0.01 * (1 - iteration / max_iters) ** 0.9
        assert groups["backbone"]["lr"] == pytest.approx(expected, rel=1e-12)
        assert groups["heads"]["lr"] == pytest.approx(10 * expected, rel=1e-12)
    assert all(g["weight_decay"] == 1e-4 and g["momentum"] == 0.9 for g in optimizer.param_groups)


def backbone_url(name: str) -> tuple[str, str]:
    entry = IMAGENET_BACKBONES[name]
    return entry.url, entry.sha256_prefix


@pytest.mark.parametrize("name", by_source("mmsegmentation"))
def test_mmseg_rows_select_mmsegs_definitions(name: str) -> None:
    p = PRESETS[name]
    t, depth = p.train, p.model.backbone.depth
    assert (t.loss_average, t.recipe_gpus, t.loss) == ("all_pixels", 4, "ce")
    named = re.search(r"4xb(\d+)", p.published.source_config)  # the 1.x name: GPUs x images per GPU
    assert t.batch_size == 4 * int(named.group(1)) if named else t.batch_size in (8, 16)
    assert (t.momentum, t.lr_power, t.min_lr, t.head_lr_mult, t.warmup_iters) == (0.9, 0.9, 1e-4, 1.0, 0)
    assert p.model.aux_head.loss_weight == 0.4 and not t.class_weights
    scheme = f"open-mmlab://resnet{depth}_v1c" if p.model.backbone.stem == "v1c" else f"torchvision://resnet{depth}"
    assert (t.pretrained, t.pretrained_sha256) == backbone_url(scheme)
    assert sha256_prefix_of(t.pretrained) == t.pretrained_sha256  # the mmcv/torchvision file-name convention


@pytest.mark.parametrize("name", by_source("sssegmentation"))
def test_ssseg_rows_select_sssegs_definitions(name: str) -> None:
    p = PRESETS[name]
    t = p.train
    assert (t.loss_average, t.recipe_gpus, t.loss) == ("labelled", 8, "ce")  # batch 16 (8) on 8 GPUs
    assert t.min_lr == pytest.approx(t.lr * 0.01)  # PolyScheduler's default min_lr
    assert (t.momentum, t.lr_power, t.head_lr_mult) == (0.9, 0.9, 1.0)
    assert p.model.aux_head.loss_weight == 0.4
    assert (t.pretrained, t.pretrained_sha256) == backbone_url(f"open-mmlab://resnet{p.model.backbone.depth}_v1c")


@pytest.mark.parametrize("name", by_source("semseg"))
def test_semseg_rows_select_semsegs_definitions(name: str) -> None:
    t = PRESETS[name].train
    assert (t.loss_average, t.recipe_gpus, t.head_lr_mult, t.min_lr, t.weight_decay) == ("labelled", 8, 10.0, 0.0,
                                                                                          1e-4)
    assert t.pretrained == f"semseg://resnet{PRESETS[name].model.backbone.depth}_v2"


@pytest.mark.parametrize("name", by_source("chainercv"))
def test_chainercv_rows_normalise_per_process_without_a_floor(name: str) -> None:
    t = PRESETS[name].train
    assert (t.loss_average, t.recipe_gpus, t.min_lr, t.weight_decay) == ("labelled", 8, 0.0, 1e-4)


def test_every_model_has_an_mmseg_and_an_ssseg_row() -> None:
    for model in ("pspnet", "psanet", "upernet"):
        for source in ("mmsegmentation", "sssegmentation"):
            assert any(PRESETS[n].model.name == model for n in by_source(source)), (model, source)


@pytest.mark.parametrize("override", ["train.loss_average=global", "train.poly_end=never", "train.recipe_gpus=0",
                                      "train.accumulate=0", "train.ema=1.0"])
def test_recipe_choices_are_refused_where_configs_load(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_preset("pspnet_resnet50os8_voc", [override])
