"""Typed configuration: the schema, and the TOML loader with the preset registry."""
from sceneparse.config.loader import dumps_toml, load_preset, preset_names, to_dict
from sceneparse.config.schema import (
    AuxHeadConfig,
    BackboneConfig,
    DataConfig,
    DecodeHeadConfig,
    ModelConfig,
    Preset,
    PublishedConfig,
    TestConfig,
    TrainConfig,
)

__all__ = [
    "AuxHeadConfig", "BackboneConfig", "DataConfig", "DecodeHeadConfig", "ModelConfig", "Preset",
    "PublishedConfig", "TestConfig", "TrainConfig", "dumps_toml", "load_preset", "preset_names", "to_dict",
]
