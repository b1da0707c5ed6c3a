"""Synchronised BatchNorm for processes that torch's SyncBatchNorm does not serve (CPU, gloo).

`torch.nn.SyncBatchNorm` refuses CPU tensors, yet a 2-process CPU run must normalise over the
global batch exactly as the published 4- or 8-GPU recipes did. This module computes the statistics
over every process with two differentiable all-reduces (the sum, then the centred sum of squares:
the same two-pass arithmetic as a single process, so 1 process with batch 2B and 2 processes with
batch B agree to rounding), and falls back to plain BatchNorm in eval mode or on one process.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        out = grad.clone()
        dist.all_reduce(out)
        return out


def all_reduce_sum_differentiable(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class ProcessGroupBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch summed over all processes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _world_size() == 1:
            return super().forward(x)
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # statistics in float32 under autocast
        channels = x.shape[1]
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() // channels], dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum(dim=dims), count])
        total = all_reduce_sum_differentiable(local)
        n = total[-1]
        mean = total[:channels] / n
        shape = [1, channels] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = all_reduce_sum_differentiable((centred * centred).sum(dim=dims)) / n  # biased, as BN normalises
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return out.to(dtype)


def convert_process_group_bn(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d of `module` replaced by ProcessGroupBatchNorm, parameters and buffers kept."""
    converted = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, ProcessGroupBatchNorm):
        converted = ProcessGroupBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                          module.track_running_stats)
        with torch.no_grad():
            if module.affine:
                converted.weight = module.weight
                converted.bias = module.bias
            if module.track_running_stats:
                converted.running_mean = module.running_mean
                converted.running_var = module.running_var
                converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_process_group_bn(child))
    return converted

