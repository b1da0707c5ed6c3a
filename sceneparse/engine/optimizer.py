"""SGD with the published recipes' parameter groups: the backbone at `lr`, the heads at `lr * head_lr_mult`.

Weight decay applies to every parameter, BatchNorm included, as mmsegmentation's default optimizer
wrapper and sssegmentation do; the poly schedule (`schedule.PolyLR`) scales each group from its own
initial LR.
"""
from __future__ import annotations

from torch import nn
from torch.optim import SGD

from sceneparse.config.schema import TrainConfig
from sceneparse.errors import ConfigError


def parameter_groups(model: nn.Module, train: TrainConfig) -> list[dict]:
    """[backbone group, head group] (empty groups left out) with their learning rates."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ConfigError("the model has no `backbone` module; head_lr_mult needs to tell backbone from heads")
    backbone_ids = {id(p) for p in backbone.parameters()}
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    backbone_params = [p for _, p in trainable if id(p) in backbone_ids]
    head_params = [p for _, p in trainable if id(p) not in backbone_ids]
    groups = [
        {"params": backbone_params, "lr": train.lr, "name": "backbone"},
        {"params": head_params, "lr": train.lr * train.head_lr_mult, "name": "heads"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, train: TrainConfig) -> SGD:
    if train.lr <= 0:
        raise ConfigError(f"train.lr = {train.lr}: the learning rate must be positive")
    return SGD(parameter_groups(model, train), lr=train.lr, momentum=train.momentum,
               weight_decay=train.weight_decay)
