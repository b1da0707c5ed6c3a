"""Faster inference with the same answers: BatchNorm folded into convolutions, channels_last,
reduced-precision autocast and `torch.compile`, all behind one function, `prepare_for_inference`.

Folding happens on a model whose weights are already loaded: the module tree (and so every weight
name) is untouched until then. Each folded BatchNorm becomes an `nn.Identity` and its convolution
gains the bias, so the folded model computes `conv(x) * scale + shift` in one pass instead of two.

    from sceneparse.models.fuse import prepare_for_inference
    fast = prepare_for_inference(model, dtype="bf16", channels_last=True, fuse_bn=True)
    logits = fast(batch)["out"]        # float32 logits, like the model's own
"""
from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator

import torch
from torch import nn

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

_NUMBERED_CONV = re.compile(r"^conv(\d*)$")


def conv_bn_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """(parent, conv name, bn name) of every convolution directly followed by its BatchNorm.

    Two layouts occur in sceneparse's networks: an `nn.Sequential` where a `Conv2d` child is followed
    by a `BatchNorm2d` child (ConvBNReLU, stems, downsample), and a block with attributes `convN` and
    `bnN` (ResNet blocks and the 7x7 stem: `conv1`/`bn1`, ...).
    """
    for parent in model.modules():
        children = list(parent.named_children())
        if isinstance(parent, nn.Sequential):
            for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    yield parent, conv_name, bn_name
            continue
        named = dict(children)
        for conv_name, conv in children:
            match = _NUMBERED_CONV.match(conv_name)
            bn = named.get(f"bn{match.group(1)}") if match else None
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                yield parent, conv_name, f"bn{match.group(1)}"  # type: ignore[union-attr]


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Rewrite `conv` in place so that `conv(x) == bn(conv(x))` with the BN's running statistics.

    Computed in float64 so that the folded weights differ from the two-step result by rounding only.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    weight = conv.weight.double()
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    shift = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    conv.weight.copy_((weight * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
    else:
        conv.bias.copy_(shift.to(conv.bias.dtype))


def fuse_batchnorm(model: nn.Module) -> int:
    """Fold every conv -> BatchNorm pair of an eval-mode model in place; returns how many were folded.

    Refuses a model in training mode: there BatchNorm uses the batch's statistics, which folding
    would silently replace by the running ones.
    """
    if model.training:
        raise ValueError("fuse_batchnorm needs an eval-mode model (call model.eval() first)")
    pairs = list(conv_bn_pairs(model))
    for parent, conv_name, bn_name in pairs:
        fold_conv_bn(getattr(parent, conv_name), getattr(parent, bn_name))
        setattr(parent, bn_name, nn.Identity())
    return len(pairs)


def autocast_context(device_type: str, dtype: str) -> contextlib.AbstractContextManager:
    """`torch.autocast` for bf16 / fp16, a no-op for fp32."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=DTYPES[dtype])


class InferenceModel(nn.Module):
    """A segmentor run the fast way: inputs in the chosen memory format, reduced precision under
    autocast, float32 logits out. Keeps `num_classes` and `align_corners`, so the test-time modes
    (`sceneparse.models.inference`) and `Segmenter` take it as they take the model itself."""

    def __init__(self, model: nn.Module, dtype: str = "fp32", channels_last: bool = False,
                 compiled: nn.Module | None = None) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.num_classes = int(model.num_classes)
        self.align_corners = bool(model.align_corners)
        # kept out of the module tree (it holds the same parameters as `model`): one state_dict, not two
        self.__dict__["_compiled"] = compiled

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        run = self._compiled if self._compiled is not None else self.model
        with autocast_context(x.device.type, self.dtype):
            result = run(x)
        return {key: value.float().contiguous() for key, value in result.items()}


def prepare_for_inference(model: nn.Module, dtype: str = "fp32", channels_last: bool = False,
                          fuse_bn: bool = False, compile: bool | str = False,
                          copy_model: bool = False) -> InferenceModel:
    """The fast inference path: eval mode, optional BN folding, channels_last, autocast, compile.

    Load the weights before calling this. The model is changed in place (eval mode, folded BNs,
    memory format) unless `copy_model`, which leaves the caller's model as it was. Outputs are
    float32 logits in a dict, as the model's: fp32 options change them by rounding only, bf16 and
    fp16 by reduced precision. `compile` is True (inductor) or a `torch.compile` backend name.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if copy_model:
        model = copy.deepcopy(model)
    model.eval()
    if fuse_bn:
        fuse_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    compiled = None
    if compile:
        compiled = torch.compile(model, backend=compile if isinstance(compile, str) else "inductor")
    return InferenceModel(model, dtype, channels_last, compiled)
