"""Every published row is a preset; every preset loads and builds; parameter counts equal the peers'."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from sceneparse.config import load_preset, preset_names
from sceneparse.config.loader import preset_aliases
from sceneparse.models import build_segmentor
from tests.conftest import REFERENCE

ZOO = Path(__file__).resolve().parent.parent / "docs" / "model_zoo"
PARAM_COUNTS = json.loads((REFERENCE / "param_counts.json").read_text())


def table_config_names() -> list[str]:
    """Config names of every row of the mmsegmentation-style tables, read independently of the generator."""
    names = []
    for path in ZOO.glob("mmseg_*.md"):
        names += re.findall(r"\[config\]\([^)]*/([\w.-]+?)\.py?\)", path.read_text())
    return sorted(set(names))


def ssseg_row_names() -> list[str]:
    names = []
    for path in ZOO.glob("ssseg_*.md"):
        model = path.stem.split("_")[1]
        section = ""
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                section = {"PASCAL VOC": "voc", "ADE20k": "ade20k", "CityScapes": "cityscapes"}.get(
                    line.lstrip("# ").strip(), section)
            m = re.match(r"\|\s*(?:ResNet(\d+) \(OS=(\d+)|R-(\d+)-D(\d+))", line)
            if m:
                depth, os_ = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
                names.append(f"{model}_resnet{depth}os{os_}_{section}")
    return names


def test_every_table_row_is_a_preset() -> None:
    names = set(preset_names()) | set(preset_aliases())
    rows = table_config_names() + ssseg_row_names()
    assert len(rows) >= 80
    missing = [r for r in rows if r not in names]
    assert not missing, f"table rows without a preset: {missing}"


def test_published_figures_are_carried() -> None:
    assert load_preset("psanet_resnet50os8_voc").published.mIoU == pytest.approx(77.06)
    assert load_preset("pspnet_resnet50os8_ade20k").published.mIoU == pytest.approx(42.10)
    assert load_preset("upernet_resnet50os8_ade20k").published.mIoU == pytest.approx(43.02)
    p = load_preset("pspnet_r50-d8_512x1024_40k_cityscapes")
    assert (p.published.mIoU, p.published.mIoU_ms_flip, p.published.fps, p.published.mem_gb) == (
        77.85, 79.18, 4.07, 6.1)
    assert p.published.sha256_prefix == "2966598c"
    assert load_preset("chainercv_pspnet_resnet101_cityscapes_converted").published.mIoU == pytest.approx(79.03)


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_and_builds(name: str) -> None:
    preset = load_preset(name)
    assert preset.name == name
    assert (preset.train.max_iters > 0) != (preset.train.max_epochs > 0)
    assert preset.train.batch_size > 0 and preset.model.num_classes > 1 and preset.data.dataset
    with torch.device("meta"):
        model = build_segmentor(preset.model)
    assert model.decode_head.classifier.out_channels == preset.model.num_classes


def _preset_for(key: str) -> tuple[str, list[str]] | None:
    """The preset a reference count describes, with overrides for the two counts no table row has.

    mmsegmentation lists R-50 Pascal Context configs but publishes only R-101 rows: those counts are
    checked on the R-101 preset built at depth 50.
    """
    source, config = key.split("/", 1)
    names = set(preset_names())
    aliases = preset_aliases()
    if config in names:
        return config, []
    if config in aliases:
        return aliases[config], []
    sibling = config.replace("_r50-", "_r101-")
    if sibling != config and (sibling in names or sibling in aliases):
        return (sibling if sibling in names else aliases[sibling]), ["model.backbone.depth=50"]
    return None


@pytest.mark.parametrize("key", sorted(PARAM_COUNTS))
def test_parameter_counts_equal_reference(key: str) -> None:
    found = _preset_for(key)
    assert found is not None, f"no preset for {key}"
    name, overrides = found
    expected = PARAM_COUNTS[key]
    preset = load_preset(name, overrides)
    assert preset.model.num_classes == expected["num_classes"]
    if "mask_size" in expected:
        assert preset.model.decode_head.mask_size == expected["mask_size"]
    with torch.device("meta"):
        model = build_segmentor(preset.model)
    total = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for p in model.aux_head.parameters())
    assert (total, total - aux) == (expected["total"], expected["without_aux"])


def test_most_reference_counts_have_a_preset() -> None:
    matched = [k for k in PARAM_COUNTS if _preset_for(k)]
    assert len(matched) >= 50, f"only {len(matched)} of {len(PARAM_COUNTS)} reference counts matched a preset"
