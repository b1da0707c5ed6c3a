"""Shared test helpers: tiny model configs and the reference fixtures' location."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sceneparse.config.schema import AuxHeadConfig, BackboneConfig, DecodeHeadConfig, ModelConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = FIXTURES / "reference"

torch.set_num_threads(2)


def tiny_config(name: str, depth: int = 18, output_stride: int = 8, stem: str = "v1c", num_classes: int = 5,
                **head: object) -> ModelConfig:
    """A narrow network of the given architecture: same code paths, a fraction of the compute."""
    decode = DecodeHeadConfig(channels=16, mask_size=[9, 9], **head)  # type: ignore[arg-type]
    return ModelConfig(
        name=name,
        num_classes=num_classes,
        backbone=BackboneConfig(depth=depth, stem=stem, stem_channels=16, base_channels=8,
                                output_stride=output_stride),
        decode_head=decode,
        aux_head=AuxHeadConfig(channels=8),
    )


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
