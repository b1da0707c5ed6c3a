"""The learning rate: poly decay to a floor, with an optional linear warm-up, set every iteration.

    lr(i) = (base - min_lr) * (1 - i / span) ** power + min_lr
    during warm-up (i < warmup_iters): lr(i) * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))

`i` is the number of optimizer steps done (iteration i trains at lr(i)). `span` is max_iters in
mmcv's PolyLrUpdaterHook (mmsegmentation 0.x, which trained the published tables), sssegmentation's
PolyScheduler, semseg's poly_learning_rate and ChainerCV's PolynomialShift (`train.poly_end =
"after_last"`: the floor would come one step after the last); mmengine's PolyLR (mmsegmentation 1.x)
uses max_iters - 1 (`"at_last"`: the last iteration trains at the floor).

`base` is each parameter group's own initial LR (the heads' is `lr * head_lr_mult`). Epoch-based
recipes decay per iteration too, over max_epochs x iterations per epoch. The LR is a pure function
of the iteration, so the scheduler's state is the iteration alone.
"""
from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from sceneparse.errors import ConfigError

POLY_ENDS = {"after_last": 0, "at_last": 1}  # train.poly_end -> how much shorter than max_iters the span is


def poly_lr(base: float, iteration: int, max_iters: int, power: float, min_lr: float,
            warmup_iters: int = 0, warmup_ratio: float = 1.0, poly_end: str = "after_last") -> float:
    """The LR of the step that follows `iteration` completed steps."""
    span = max(max_iters - POLY_ENDS[poly_end], 1)
    progress = min(iteration, span) / span
    lr = (base - min_lr) * (1.0 - progress) ** power + min_lr
    if warmup_iters > 0 and iteration < warmup_iters:
        lr *= 1.0 - (1.0 - iteration / warmup_iters) * (1.0 - warmup_ratio)
    return lr


class PolyLR:
    """Sets `group["lr"]` of every optimizer group from its `initial_lr` at each `step()`."""

    def __init__(self, optimizer: Optimizer, max_iters: int, power: float = 0.9, min_lr: float = 1e-4,
                 warmup_iters: int = 0, warmup_ratio: float = 1e-6, poly_end: str = "after_last") -> None:
        if poly_end not in POLY_ENDS:
            raise ConfigError(f"train.poly_end = {poly_end!r}: expected one of {', '.join(POLY_ENDS)}")
        self.poly_end = poly_end
        self.optimizer = optimizer
        self.max_iters, self.power, self.min_lr = max_iters, power, min_lr
        self.warmup_iters, self.warmup_ratio = warmup_iters, warmup_ratio
        self.iteration = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], self.iteration, self.max_iters, self.power, self.min_lr,
                                  self.warmup_iters, self.warmup_ratio, self.poly_end)

    def step(self) -> None:
        """Call after `optimizer.step()`: moves to the LR of the next iteration."""
        self.iteration += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "max_iters": self.max_iters}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self._apply()
