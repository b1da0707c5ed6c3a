"""The Python entry points: `load_preset` and `build_model`."""
from __future__ import annotations

from pathlib import Path

from sceneparse.config import Preset, load_preset
from sceneparse.models import Segmentor, build_segmentor
from sceneparse.weights import load_weights


def build_model(preset: str | Path | Preset, weights: str | Path | None = None) -> Segmentor:
    """The segmentor a preset describes (an `nn.Module`), with `weights` loaded strictly when given.

    Its forward takes a normalised float batch N x 3 x H x W and returns {"out": logits N x C x H x W}
    (plus "aux" in training mode).
    """
    cfg = preset if isinstance(preset, Preset) else load_preset(preset)
    model = build_segmentor(cfg.model)
    if weights is not None:
        load_weights(model, weights, cfg.model.name)
    return model
