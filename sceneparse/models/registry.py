"""The model registry: a plain dict from model name to a builder taking a `ModelConfig`.

    @register_model("pspnet")
    def build_pspnet(cfg: ModelConfig) -> Segmentor: ...

    model = get_model("pspnet")(cfg)      # or build_segmentor(cfg), which reads cfg.name
"""
from __future__ import annotations

from collections.abc import Callable

from sceneparse.config.schema import ModelConfig
from sceneparse.errors import ConfigError
from sceneparse.models.segmentor import Segmentor

Builder = Callable[[ModelConfig], Segmentor]
MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    def decorator(fn: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model '{name}' is registered twice")
        MODELS[name] = fn
        return fn

    return decorator


def get_model(name: str) -> Builder:
    if name not in MODELS:
        raise ConfigError(f"model.name '{name}' is not a model; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_segmentor(cfg: ModelConfig) -> Segmentor:
    """The untrained network that `cfg` describes (BatchNorm; the engine swaps in SyncBN when needed)."""
    return get_model(cfg.name)(cfg)
