"""mmsegmentation checkpoints -> sceneparse: the backbone names are the same; head names differ a little."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from sceneparse.convert.common import KeyRule, rename_keys

BACKBONE_AND_AUX: list[KeyRule] = [
    (r"^auxiliary_head\.conv_seg\.", "aux_head.classifier."),
    (r"^auxiliary_head\.convs\.", "aux_head.convs."),
    (r"^decode_head\.conv_seg\.", "decode_head.classifier."),
]

HEAD_RULES: dict[str, list[KeyRule]] = {
    # PSPNet and UPerNet keep the pyramid pooling and its bottleneck in one module
    "pspnet": [(r"^decode_head\.psp_modules\.", "decode_head.ppm.stages."),
               (r"^decode_head\.bottleneck\.", "decode_head.ppm.bottleneck.")],
    "upernet": [(r"^decode_head\.psp_modules\.", "decode_head.ppm.stages."),
                (r"^decode_head\.bottleneck\.", "decode_head.ppm.bottleneck.")],
    "psanet": [],  # reduce, attention(_p), proj, bottleneck: same names
}


def convert_mmseg(state: Mapping[str, torch.Tensor], model_name: str) -> dict[str, torch.Tensor]:
    """Rename an mmsegmentation EncoderDecoder state dict for the sceneparse model `model_name`."""
    return rename_keys(state, BACKBONE_AND_AUX + HEAD_RULES[model_name])
