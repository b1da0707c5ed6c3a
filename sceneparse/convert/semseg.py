"""semseg (hszhao/semseg, PyTorch PSPNet / PSANet) checkpoints -> sceneparse.

semseg's networks keep the deep ResNet stem as `layer0` (conv-bn-relu x3 + max pool, 64-64-128),
the dilated stages as `layer1..4` (every block of a dilated stage at full dilation: our
`contract_dilation = false`), its heads as `nn.Sequential`s (`ppm.features.i`, `psa.*`, `cls`,
`aux`), and it saves from DataParallel / DDP, hence the `module.` prefix. The architecture
settings that go with these weights are the `semseg` recipes in `sceneparse/presets/semseg.toml`.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from sceneparse.convert.common import KeyRule, rename_keys
from sceneparse.errors import CheckpointError

BACKBONE_AND_AUX: list[KeyRule] = [
    (r"^layer0\.(\d+)\.", r"backbone.stem.\1."),  # same Sequential indices: conv 0/3/6, bn 1/4/7
    (r"^layer([1-4])\.", r"backbone.layer\1."),
    (r"^aux\.0\.", "aux_head.convs.0.conv."),
    (r"^aux\.1\.", "aux_head.convs.0.bn."),
    (r"^aux\.4\.", "aux_head.classifier."),
]

HEAD_RULES: dict[str, list[KeyRule]] = {
    "pspnet": [
        (r"^ppm\.features\.(\d+)\.1\.", r"decode_head.ppm.stages.\1.1.conv."),
        (r"^ppm\.features\.(\d+)\.2\.", r"decode_head.ppm.stages.\1.1.bn."),
        (r"^cls\.0\.", "decode_head.ppm.bottleneck.conv."),
        (r"^cls\.1\.", "decode_head.ppm.bottleneck.bn."),
        (r"^cls\.4\.", "decode_head.classifier."),
    ],
    "psanet": [
        (r"^psa\.(reduce|reduce_p|proj)\.0\.", r"decode_head.\1.conv."),
        (r"^psa\.(reduce|reduce_p|proj)\.1\.", r"decode_head.\1.bn."),
        (r"^psa\.(attention|attention_p)\.0\.", r"decode_head.\1.0.conv."),
        (r"^psa\.(attention|attention_p)\.1\.", r"decode_head.\1.0.bn."),
        (r"^psa\.(attention|attention_p)\.3\.", r"decode_head.\1.1."),
        (r"^cls\.0\.", "decode_head.bottleneck.conv."),
        (r"^cls\.1\.", "decode_head.bottleneck.bn."),
        (r"^cls\.4\.", "decode_head.classifier."),
    ],
}


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` that DataParallel / DistributedDataParallel put before every key."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def convert_semseg(state: Mapping[str, torch.Tensor], model_name: str) -> dict[str, torch.Tensor]:
    """Rename a semseg state dict (its checkpoint's "state_dict" entry) for `model_name` (pspnet or psanet)."""
    if model_name not in HEAD_RULES:
        raise CheckpointError(f"semseg released PSPNet and PSANet only; the preset's model is {model_name!r}")
    return rename_keys(strip_module_prefix(state), BACKBONE_AND_AUX + HEAD_RULES[model_name])
