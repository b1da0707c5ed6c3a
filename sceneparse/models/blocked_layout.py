"""A backbone run in oneDNN's blocked memory layout on the CPU, for fp32 inference.

PyTorch's CPU convolutions are oneDNN kernels that compute in a blocked layout (channels in groups
of 8: nChw8c). Given ordinary NCHW tensors, every convolution reorders its input, its output and its
weights to and from that layout, on every call. Keeping the activations blocked from the first
convolution to the last, with each weight reordered once here, runs the same kernels on the same
numbers without the reorders: the outputs are identical, and a ResNet-50-D8 trunk at 512x512 ran
about 9% faster on a 2-core Zen 2 (docs/benchmarks.md).

Only the trunk is converted: convolutions, ReLU, max pooling and residual additions, which all have
blocked-layout kernels. The heads (pooling, resizing, attention) stay in NCHW and get the features
back in it.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class BlockedConv2d(nn.Module):
    """An `nn.Conv2d` (zero padding, numeric padding) whose weight is stored pre-reordered for oneDNN."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"blocked layout needs numeric zero padding, got {conv.padding!r} / {conv.padding_mode}")
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        weight = conv.weight.detach().float()
        bias = conv.bias.detach().float() if conv.bias is not None else weight.new_zeros(weight.shape[0])
        # plain attributes, not buffers: oneDNN tensors have no storage to save, copy or move
        self.__dict__["packed_weight"] = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups)
        self.__dict__["packed_bias"] = bias.to_mkldnn()

    def __deepcopy__(self, memo: dict) -> BlockedConv2d:
        # oneDNN tensors cannot be deep-copied; they are only ever read, so the copy shares them
        clone = type(self).__new__(type(self))
        nn.Module.__init__(clone)
        for key in ("padding", "stride", "dilation", "groups", "packed_weight", "packed_bias"):
            clone.__dict__[key] = self.__dict__[key]
        return clone.train(self.training)

    def to_conv2d(self) -> nn.Conv2d:
        """The ordinary `nn.Conv2d` with these weights (for tracing and export, which need NCHW)."""
        weight, bias = self.packed_weight.to_dense(), self.packed_bias.to_dense()
        conv = nn.Conv2d(weight.shape[1] * self.groups, weight.shape[0], tuple(weight.shape[2:]),
                         stride=tuple(self.stride), padding=tuple(self.padding), dilation=tuple(self.dilation),
                         groups=self.groups)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        return conv.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(x, self.packed_weight, self.packed_bias, self.padding, self.stride,
                                        self.dilation, self.groups)


def convert_convolutions(module: nn.Module) -> nn.Module:
    """`module` with every `nn.Conv2d` below it replaced by a `BlockedConv2d` (in place)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d:
            setattr(module, name, BlockedConv2d(child))
        else:
            convert_convolutions(child)
    return module


def restore_convolutions(module: nn.Module) -> nn.Module:
    """`convert_convolutions` undone: every `BlockedConv2d` below `module` back to an `nn.Conv2d` (in place)."""
    for name, child in list(module.named_children()):
        if isinstance(child, BlockedConv2d):
            setattr(module, name, child.to_conv2d())
        else:
            restore_convolutions(child)
    return module


class BlockedBackbone(nn.Module):
    """Wraps a CNN trunk (BatchNorms already folded): NCHW float32 in, the same feature list out,
    computed in the blocked layout in between."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        remaining = [type(m).__name__ for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        if remaining:
            raise ValueError(f"blocked layout needs the BatchNorms folded first (fuse_bn=True); found {remaining[0]}")
        self.backbone = convert_convolutions(backbone)
        self.out_channels = getattr(backbone, "out_channels", None)

    def unblocked(self) -> nn.Module:
        """A copy of the trunk in NCHW with ordinary convolutions: what tracing (ONNX export) needs."""
        return restore_convolutions(copy.deepcopy(self.backbone))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.device.type != "cpu":
            raise RuntimeError(f"this model was prepared for the CPU (blocked layout) but got a {x.device.type} "
                               "input: call prepare_for_inference after moving the model")
        features = self.backbone(x.float().contiguous().to_mkldnn())
        return [f.to_dense() for f in features]


def blocked_layout_available() -> bool:
    """Whether this PyTorch build has oneDNN (MKLDNN) CPU kernels."""
    return bool(torch.backends.mkldnn.is_available())
