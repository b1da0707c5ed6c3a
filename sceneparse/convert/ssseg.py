"""sssegmentation checkpoints -> sceneparse.

sssegmentation builds its layers as `nn.Sequential(conv, norm, act, ...)`, so its keys carry
indices (`decoder.0`, `decoder.1`, `decoder.4`) where sceneparse names `conv`, `bn`, `classifier`.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from sceneparse.convert.common import KeyRule, rename_keys

COMMON: list[KeyRule] = [
    (r"^backbone_net\.", "backbone."),
    (r"^auxiliary_decoder\.0\.", "aux_head.convs.0.conv."),
    (r"^auxiliary_decoder\.1\.", "aux_head.convs.0.bn."),
    (r"^auxiliary_decoder\.4\.", "aux_head.classifier."),
]

PPM: list[KeyRule] = [
    (r"^ppm_net\.branches\.(\d+)\.1\.", r"decode_head.ppm.stages.\1.1.conv."),
    (r"^ppm_net\.branches\.(\d+)\.2\.", r"decode_head.ppm.stages.\1.1.bn."),
    (r"^ppm_net\.bottleneck\.0\.", "decode_head.ppm.bottleneck.conv."),
    (r"^ppm_net\.bottleneck\.1\.", "decode_head.ppm.bottleneck.bn."),
]

HEAD_RULES: dict[str, list[KeyRule]] = {
    "pspnet": PPM + [(r"^decoder\.1\.", "decode_head.classifier.")],
    "upernet": PPM + [
        (r"^(lateral_convs|fpn_convs)\.(\d+)\.0\.", r"decode_head.\1.\2.conv."),
        (r"^(lateral_convs|fpn_convs)\.(\d+)\.1\.", r"decode_head.\1.\2.bn."),
        (r"^decoder\.0\.", "decode_head.fpn_bottleneck.conv."),
        (r"^decoder\.1\.", "decode_head.fpn_bottleneck.bn."),
        (r"^decoder\.4\.", "decode_head.classifier."),
    ],
    "psanet": [
        (r"^(reduce|reduce_p|proj)\.0\.", r"decode_head.\1.conv."),
        (r"^(reduce|reduce_p|proj)\.1\.", r"decode_head.\1.bn."),
        (r"^(attention|attention_p)\.0\.", r"decode_head.\1.0.conv."),
        (r"^(attention|attention_p)\.1\.", r"decode_head.\1.0.bn."),
        (r"^(attention|attention_p)\.3\.", r"decode_head.\1.1."),
        (r"^decoder\.0\.", "decode_head.bottleneck.conv."),
        (r"^decoder\.1\.", "decode_head.bottleneck.bn."),
        (r"^decoder\.4\.", "decode_head.classifier."),
    ],
}


def convert_ssseg(state: Mapping[str, torch.Tensor], model_name: str) -> dict[str, torch.Tensor]:
    """Rename an sssegmentation state dict (its checkpoint's "model" entry) for `model_name`."""
    return rename_keys(state, COMMON + HEAD_RULES[model_name])
