"""An exponential moving average of the weights (`train.ema`, a decay such as 0.999).

After every optimizer step: ema = decay * ema + (1 - decay) * weights, for every floating-point
entry of the model's state dict (BatchNorm's running statistics too, as timm's ModelEmaV2 does);
integer entries (BatchNorm's batch counters) are copied. Validation runs on the averaged weights
and the checkpoint's weights file holds them (what `test`, `infer` and `export` read); the trained
weights travel in the checkpoint's state file, so that --resume continues exactly.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from sceneparse.errors import ConfigError


class WeightAverage:
    """The averaged copy of a model's state dict."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema = {decay}: the decay must be between 0 and 1 (0 turns the average off)")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        for key, value in model.state_dict().items():
            average = self.shadow[key]
            if average.is_floating_point():
                average.mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) ^ set(state))
        if missing:
            raise ConfigError(f"the checkpoint's averaged weights do not fit the model ({', '.join(missing[:5])})")
        for key, value in state.items():
            self.shadow[key].copy_(value)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            model.load_state_dict(own)
