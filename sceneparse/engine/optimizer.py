"""The published recipes' optimizer: the backbone at `lr`, the heads at `lr * head_lr_mult`.

Weight decay applies to every parameter, normalisation layers included, as mmsegmentation's default
optimizer wrapper, sssegmentation and semseg do; `train.norm_weight_decay = false` leaves the
normalisation layers' weight and bias out (ChainerCV: its WeightDecay hook skips BatchNorm's gamma
and beta). `train.momentum_form` picks torch's SGD or chainer's MomentumSGD (`chainer_sgd.py`). The
poly schedule (`schedule.PolyLR`) scales each group from its own initial LR.
"""
from __future__ import annotations

from torch import nn
from torch.optim import SGD, Optimizer

from sceneparse.config.schema import TrainConfig
from sceneparse.engine.chainer_sgd import ChainerMomentumSGD
from sceneparse.errors import ConfigError

# the layers whose weight and bias are chainer's BatchNormalization gamma and beta (and the other norms')
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def norm_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the normalisation layers' own parameters (weight and bias)."""
    return {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}


def parameter_groups(model: nn.Module, train: TrainConfig) -> list[dict]:
    """[backbone, heads] groups (plus `backbone_norm`, `heads_norm` without weight decay when
    `train.norm_weight_decay` is false), empty groups left out, with their LRs and weight decay."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ConfigError("the model has no `backbone` module; head_lr_mult needs to tell backbone from heads")
    backbone_ids = {id(p) for p in backbone.parameters()}
    no_decay = set() if train.norm_weight_decay else norm_parameter_ids(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = []
    for name, in_part, lr in (("backbone", True, train.lr), ("heads", False, train.lr * train.head_lr_mult)):
        part = [p for p in trainable if (id(p) in backbone_ids) == in_part]
        groups.append({"params": [p for p in part if id(p) not in no_decay], "lr": lr,
                       "weight_decay": train.weight_decay, "name": name})
        groups.append({"params": [p for p in part if id(p) in no_decay], "lr": lr,
                       "weight_decay": 0.0, "name": f"{name}_norm"})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, train: TrainConfig) -> Optimizer:
    if train.lr <= 0:
        raise ConfigError(f"train.lr = {train.lr}: the learning rate must be positive")
    groups = parameter_groups(model, train)
    if train.momentum_form == "chainer":
        return ChainerMomentumSGD(groups, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    if train.momentum_form != "pytorch":
        raise ConfigError(f"train.momentum_form = {train.momentum_form!r}: expected 'pytorch' or 'chainer'")
    return SGD(groups, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
