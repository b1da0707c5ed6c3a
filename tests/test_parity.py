"""Same weights, same answers: mmsegmentation's and sssegmentation's logits from their own weights.

The fixtures in tests/fixtures/reference/ were produced by the peers (see its README); each case is
loaded through the converters' key maps and must match to a relative L2 error under 1e-4.
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from sceneparse.config.schema import AuxHeadConfig, BackboneConfig, DecodeHeadConfig, ModelConfig
from sceneparse.convert.common import load_state_strict, read_torch_checkpoint
from sceneparse.convert.mmseg import convert_mmseg
from sceneparse.convert.ssseg import convert_ssseg
from sceneparse.models import build_segmentor
from tests.conftest import REFERENCE

MMSEG_CASES = sorted(p.name.removesuffix(".pth") for p in REFERENCE.glob("*.pth"))
SSSEG_CASES = sorted(p.name.removesuffix(".json") for p in (REFERENCE / "ssseg").glob("*.json"))
HEADS = {"PSPHead": "pspnet", "PSAHead": "psanet", "UPerHead": "upernet"}
STRIDES = {(1, 2, 1, 1): 8, (1, 2, 2, 1): 16, (1, 2, 2, 2): 32}


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def config_from_mmseg(j: dict) -> ModelConfig:
    """Our ModelConfig for an mmsegmentation `model` config dict."""
    b, d, a = j["backbone"], j["decode_head"], j["auxiliary_head"]
    head = DecodeHeadConfig(channels=d["channels"])
    for key in ("pool_scales", "mask_size", "psa_type", "compact", "shrink_factor", "psa_softmax"):
        if key in d:
            setattr(head, key, list(d[key]) if isinstance(d[key], list) else d[key])
    if "normalization_factor" in d:
        head.normalization_factor = d["normalization_factor"] or 0.0
    return ModelConfig(
        name=HEADS[d["type"]], num_classes=d["num_classes"], align_corners=j["encode_decode_align_corners"],
        backbone=BackboneConfig(depth=b["depth"], stem="v1c" if b["type"] == "ResNetV1c" else "b",
                                stem_channels=b["stem_channels"], base_channels=b["base_channels"],
                                output_stride=STRIDES[tuple(b["strides"])],
                                contract_dilation=b["contract_dilation"]),
        decode_head=head,
        aux_head=AuxHeadConfig(channels=a["channels"], in_index=a["in_index"]),
    )


@pytest.mark.parametrize("case", MMSEG_CASES)
def test_mmseg_logits(case: str) -> None:
    j = json.loads((REFERENCE / f"{case}.json").read_text())
    cfg = config_from_mmseg(j)
    model = build_segmentor(cfg).eval()
    load_state_strict(model, convert_mmseg(read_torch_checkpoint(REFERENCE / f"{case}.pth"), cfg.name), case)
    x = torch.from_numpy(np.load(REFERENCE / f"{case}.input.npy"))
    with torch.no_grad():
        features = model.backbone(x)
        head = model.decode_head(features).numpy()
        out = model(x)["out"].numpy()
    assert head.shape == tuple(j["head_logits_shape"])
    assert rel_l2(head, np.load(REFERENCE / f"{case}.head_logits.npy")) < 1e-4
    assert rel_l2(out, np.load(REFERENCE / f"{case}.logits.npy")) < 1e-4


def _seeded_state(spec: list, seed: int) -> dict[str, torch.Tensor]:
    path = REFERENCE / "ssseg" / "seeded_weights.py"
    module_spec = importlib.util.spec_from_file_location("seeded_weights", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # our own fixture file, not user input
    return {k: torch.from_numpy(v) for k, v in module.seeded_state(spec, seed).items()}


@pytest.mark.parametrize("case", SSSEG_CASES)
def test_ssseg_logits(case: str) -> None:
    from sceneparse.config import load_preset

    j = json.loads((REFERENCE / "ssseg" / f"{case}.json").read_text())
    preset = load_preset(case)  # the sssegmentation-style preset of the same name builds its network
    assert preset.model.num_classes == j["num_classes"]
    model = build_segmentor(preset.model).eval()
    load_state_strict(model, convert_ssseg(_seeded_state(j["spec"], j["seed"]), preset.model.name), case)
    h, w = j["input_hw"]
    x = torch.from_numpy(np.random.RandomState(j["seed"]).normal(0, 1, (1, 3, h, w)).astype(np.float32))
    with torch.no_grad():
        out = model(x)["out"].numpy()
    assert rel_l2(out, np.load(REFERENCE / "ssseg" / f"{case}.logits.npy")) < 1e-4
