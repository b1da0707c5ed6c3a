"""Chainer's MomentumSGD, for the ChainerCV recipes (`train.momentum_form = "chainer"`).

chainer/optimizers/momentum_sgd.py keeps the learning rate inside the velocity:

    v *= momentum; v -= lr * grad; param += v

while torch's SGD applies it outside: `v = momentum * v + grad; param -= lr * v`. With a constant LR the
two give the same weights; under a poly schedule they differ, because chainer's velocity still carries
the earlier, larger LRs. Weight decay is chainer's WeightDecay hook, which runs before the update
(`timing = 'pre'`) and does `g += rate * p`, as torch's `weight_decay` does.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim import Optimizer


class ChainerMomentumSGD(Optimizer):
    """`v = momentum * v - lr * (grad + weight_decay * param); param += v`, per parameter group.

    The velocity lives in `state[param]["velocity"]` (zeros at the first step, as chainer's
    `init_state`), so `state_dict()` / `load_state_dict()` resume a run exactly."""

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr must be positive, momentum and weight_decay non-negative; got lr={lr}, "
                             f"momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("ChainerMomentumSGD takes no closure")
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:  # chainer's update_core: `if grad is None: return`
                    continue
                grad = param.grad.add(param, alpha=decay) if decay else param.grad
                state = self.state[param]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                velocity = state["velocity"]
                velocity.mul_(momentum).add_(grad, alpha=-lr)
                param.add_(velocity)
