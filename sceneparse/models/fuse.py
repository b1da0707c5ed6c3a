"""Faster inference with the same answers: BatchNorm folded into convolutions, the heads'
convolutions of upsampled maps done at low resolution, the CPU trunk in oneDNN's blocked layout
(`sceneparse.models.blocked_layout`), the heads' wide 3x3 convolutions by Winograd on AVX2 CPUs
(`sceneparse.models.winograd`), channels_last, reduced precision (on the CPU the model cast to bf16
in NHWC, on a GPU autocast) and `torch.compile`, all behind one function, `prepare_for_inference`.

Folding happens on a model whose weights are already loaded: the module tree (and so every weight
name) is untouched until then. Each folded BatchNorm becomes an `nn.Identity` and its convolution
gains the bias, so the folded model computes `conv(x) * scale + shift` in one pass instead of two.

    from sceneparse.models.fuse import prepare_for_inference
    fast = prepare_for_inference(model, fuse_bn=True)                # CPU, or GPU fp32
    fast = prepare_for_inference(model, dtype="fp16", fuse_bn=True)   # GPU
    fast = prepare_for_inference(model, dtype="bf16", fuse_bn=True)   # CPU with AVX512-BF16 / AMX
    logits = fast(batch)["out"]        # float32 logits, like the model's own

The PSP, UPer and PSA heads are also switched to forms that convolve upsampled maps at their own,
lower resolution (`convolve_upsampled_at_low_resolution`, below): the same sums in another order.
Which options pay off where is measured in docs/benchmarks.md (channels_last did not in fp32, on
the CPUs measured, but does in bf16 on AMX; bf16 on a CPU without native bf16 is far slower than fp32).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import logging
import re
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.models.blocked_layout import BlockedBackbone, blocked_layout_available
from sceneparse.models.layers import resize
from sceneparse.models.ppm import PyramidPooling
from sceneparse.models.psa_head import PSAHead
from sceneparse.models.resnet import ResNet
from sceneparse.models.uper_head import UPerHead
from sceneparse.models.winograd import (
    WinogradConv2d,
    conv3x3_same,
    use_winograd,
    winograd_available,
    winograd_by_default,
)

log = logging.getLogger(__name__)

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
    """A segmentor run the fast way: inputs in the chosen memory format, reduced precision (the model
    cast to it, or autocast), float32 logits out. Keeps `num_classes` and `align_corners`, so the
    test-time modes (`sceneparse.models.inference`) and `Segmenter` take it as they take the model itself.

    With `cast` the model's weights are already in `dtype` and the input is cast to it; the logits
    come back at the heads' own size, are turned into float32 there and upsampled to the input size
    in float32, as the model would, so the final bilinear resize adds no reduced-precision rounding.
    """

    def __init__(self, model: nn.Module, dtype: str = "fp32", channels_last: bool = False,
                 compiled: nn.Module | None = None, cast: bool = False) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.cast = cast and dtype != "fp32"
        self.num_classes = int(model.num_classes)
        self.align_corners = bool(model.align_corners)
        # kept out of the module tree (it holds the same parameters as `model`): one state_dict, not two
        self.__dict__["_compiled"] = compiled

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        run = self._compiled if self._compiled is not None else self.model
        if self.cast:
            size = x.shape[-2:]
            x = x.to(DTYPES[self.dtype])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            result = run(x, upsample=False)
            # NCHW before the resize: resizing an NHWC map and then making it contiguous was the
            # slowest step of the bf16 forward (a transposing copy of the full-size logits)
            return {key: resize(value.to(torch.float32, memory_format=torch.contiguous_format), size,
                                self.align_corners) for key, value in result.items()}
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(x.device.type, self.dtype):
            result = run(x)
        return {key: value.float().contiguous() for key, value in result.items()}


def casts_the_model(device: torch.device, dtype: str) -> bool:
    """Whether reduced precision runs with the model cast to it (True) or under autocast (False).

    On the CPU the model is cast: autocast casts every weight again on every call and moves
    activations between float32 and bf16 around the ops it keeps in float32, which made PSPNet /
    UPerNet / PSANet R-50 1.4x slower than the cast model on a Xeon with AMX (docs/benchmarks.md).
    On a GPU autocast stays: that is what was measured there.
    """
    return device.type == "cpu" and dtype != "fp32"


def channels_last_pays_off(device: torch.device, dtype: str) -> bool:
    """The default of `channels_last`: on for reduced precision on the CPU, where oneDNN's bf16
    kernels (AMX) want NHWC (a 3x3 convolution ran 2.3x faster than in NCHW on a Xeon with AMX);
    off elsewhere (fp32 on the CPU runs the blocked trunk instead; on an H100 it was slower)."""
    return device.type == "cpu" and dtype != "fp32"


def native_reduced_precision_cpu(dtype: str) -> bool:
    """Whether oneDNN has native kernels for `dtype` ("bf16" / "fp16") on this CPU."""
    if dtype == "bf16":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dtype == "fp16":
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return True


def low_res_heads_pay_off(device: torch.device, dtype: str, matmul_tf32: bool | None = None,
                          conv_tf32: bool | None = None) -> bool:
    """Whether the low-resolution head convolutions are faster here (measured: docs/benchmarks.md).

    Always on the CPU and in reduced precision. On a GPU in fp32 they trade TF32 convolutions for
    matrix products that PyTorch runs in full fp32 unless `torch.backends.cuda.matmul.allow_tf32`,
    which made UPerNet slower on an H100; so there they follow that setting. The TF32 flags
    default to PyTorch's current ones.
    """
    if device.type != "cuda" or dtype != "fp32":
        return True
    if matmul_tf32 is None:
        matmul_tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
    if conv_tf32 is None:
        conv_tf32 = bool(torch.backends.cudnn.allow_tf32)
    return matmul_tf32 or not conv_tf32


def cpu_fp32_eager_nchw(device: torch.device, dtype: str, channels_last: bool, compile: bool | str) -> str:
    """Why an option that runs its own CPU kernels eagerly on NCHW fp32 tensors does not apply ('' if it does).

    The blocked trunk and Winograd both call oneDNN / NNPACK directly: neither has a reduced-precision
    or GPU form here, neither takes channels_last tensors, and `torch.compile` would trace around them.
    """
    if device.type != "cpu" or dtype != "fp32":
        return f"it is for fp32 on the CPU (got {dtype} on {device.type})"
    if channels_last:
        return "it runs on NCHW tensors, not channels_last"
    if compile:
        return "torch.compile does not trace its kernels"
    return ""


def blocked_layout_applies(model: nn.Module, device: torch.device, dtype: str, channels_last: bool,
                           fuse_bn: bool, compile: bool | str) -> tuple[bool, str]:
    """Whether `BlockedBackbone` can run this model's trunk with these options, and if not, why."""
    why_not = cpu_fp32_eager_nchw(device, dtype, channels_last, compile)
    if not why_not and not fuse_bn:
        why_not = "it needs the BatchNorms folded (fuse_bn=True)"
    if not why_not and not isinstance(getattr(model, "backbone", None), ResNet):
        why_not = "it is for sceneparse's ResNet trunks"
    if not why_not and not blocked_layout_available():
        why_not = "this PyTorch build has no oneDNN CPU kernels"
    return not why_not, why_not


def winograd_applies(model: nn.Module, device: torch.device, dtype: str, channels_last: bool,
                     compile: bool | str) -> tuple[bool, str]:
    """Whether the heads' 3x3 convolutions can run by Winograd (`sceneparse.models.winograd`), and if not, why."""
    why_not = cpu_fp32_eager_nchw(device, dtype, channels_last, compile)
    if not why_not and getattr(model, "decode_head", None) is None:
        why_not = "it is for a segmentor's decode head"
    if not why_not and not winograd_available():
        why_not = "this PyTorch build has no NNPACK"
    return not why_not, why_not


def prepare_for_inference(model: nn.Module, dtype: str = "fp32", channels_last: bool | None = None,
                          fuse_bn: bool = False, compile: bool | str = False, copy_model: bool = False,
                          low_res_heads: bool | None = None, blocked_layout: bool | None = None,
                          winograd: bool | None = None) -> InferenceModel:
    """The fast inference path: eval mode, optional BN folding, channels_last, autocast, compile,
    (`low_res_heads`) the heads' 3x3 convolutions of upsampled maps computed at low resolution,
    (`blocked_layout`) the ResNet trunk run in oneDNN's blocked layout on the CPU, and (`winograd`)
    the heads' wide 3x3 convolutions by Winograd on the CPU.

    Load the weights before calling this. The model is changed in place (eval mode, folded BNs,
    memory format, and on the CPU the precision: `casts_the_model`) unless `copy_model`, which
    leaves the caller's model as it was. `channels_last` None chooses by `channels_last_pays_off`. Outputs are
    float32 logits in a dict, as the model's: fp32 options change them by rounding only, bf16 and
    fp16 by reduced precision. `compile` is True (inductor) or a `torch.compile` backend name.
    `low_res_heads` None chooses by `low_res_heads_pay_off` for the model's device. `blocked_layout`
    None turns it on where it applies: a sceneparse ResNet trunk, on the CPU, fp32, `fuse_bn`, neither
    channels_last nor compile (`sceneparse.models.blocked_layout`; identical outputs). `winograd` None
    turns it on for CPU fp32 on AVX2 CPUs, neither channels_last nor compile
    (`sceneparse.models.winograd`; outputs differ by rounding, as oneDNN's own).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if copy_model:
        model = copy.deepcopy(model)
    model.eval()
    if fuse_bn:
        fuse_batchnorm(model)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    if device.type == "cpu" and dtype != "fp32" and not native_reduced_precision_cpu(dtype):
        log.warning("%s on this CPU runs on an emulated path (no native %s kernels): expect it slower than fp32",
                    dtype, dtype)
    if channels_last is None:
        channels_last = channels_last_pays_off(device, dtype)
    if low_res_heads is None:
        low_res_heads = low_res_heads_pay_off(device, dtype)
    if low_res_heads:
        convolve_upsampled_at_low_resolution(model)
    blocked_ok, why_not = blocked_layout_applies(model, device, dtype, channels_last, fuse_bn, compile)
    if blocked_layout and not blocked_ok:
        raise ValueError(f"blocked_layout=True does not apply here: {why_not}")
    if blocked_layout is None:
        blocked_layout = blocked_ok
    if blocked_layout:
        model.backbone = BlockedBackbone(model.backbone)
    winograd_ok, why_not = winograd_applies(model, device, dtype, channels_last, compile)
    if winograd and not winograd_ok:
        raise ValueError(f"winograd=True does not apply here: {why_not}")
    if winograd is None:
        winograd = winograd_ok and winograd_by_default()
    if winograd:
        use_winograd(model.decode_head)
    cast = casts_the_model(device, dtype)
    if cast:
        model.to(DTYPES[dtype])
    if channels_last:
        model.to(memory_format=torch.channels_last)
    compiled = None
    if compile:
        compiled = torch.compile(model, backend=compile if isinstance(compile, str) else "inductor")
    return InferenceModel(model, dtype, channels_last, compiled, cast)


# ------------------------------------------------------------------ convolutions of upsampled maps
#
# The 3x3 "bottleneck" convolutions of the PSP, UPer and PSA heads run on a concatenation in which
# many channels are bilinear upsamplings of small maps (the pooled bins; the coarser FPN levels; the
# shrunk attention map). Both
# operations are linear, so conv3x3(upsample(z)) can be computed at z's resolution: apply the nine
# kernel taps to z (a 1x1 convolution with 9x the outputs), then upsample with the interpolation
# matrices shifted by each tap's offset (zero rows where the padding is). Same sums, a fraction of
# the multiply-adds: for PSPNet R-50-D8 at 512x512 the head's 3x3 conv does about half its work.


def shifted_interpolation(in_size: int, out_size: int, align_corners: bool, device: torch.device,
                          dtype: torch.dtype) -> torch.Tensor:
    """(3, out, in): row `y` of slice `k` interpolates output row y + k - 1 (zero outside: the padding)."""
    from sceneparse.export.dynamic_psa import interpolation_matrix

    weights = interpolation_matrix(torch.tensor(in_size), torch.tensor(out_size), torch.tensor(align_corners),
                                   torch.float64)
    padded = torch.cat([weights.new_zeros(1, in_size), weights, weights.new_zeros(1, in_size)])
    return torch.stack([padded[k:k + out_size] for k in range(3)]).to(device=device, dtype=dtype)


_cached_shifted_interpolation = functools.lru_cache(maxsize=64)(shifted_interpolation)


def taps_as_1x1(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 kernel (o, c, 3, 3) as a 1x1 convolution with the nine taps as outputs: (9 * o, c, 1, 1),
    ordered (ky, kx, o). A 1x1 convolution, not a matrix product: on the CPU it runs on oneDNN, which
    was 20% faster than the BLAS matrix product for these shapes."""
    out_channels, in_channels = weight.shape[:2]
    return weight.permute(2, 3, 0, 1).reshape(9 * out_channels, in_channels, 1, 1).contiguous()


def conv3x3_of_upsampled(z: torch.Tensor, size: tuple[int, int], weight: torch.Tensor,
                         align_corners: bool, taps: torch.Tensor | None = None) -> torch.Tensor:
    """`conv2d(interpolate(z, size, "bilinear"), weight, padding=1)` without the upsampled map.
    `taps` is `taps_as_1x1(weight)` when the caller has it already."""
    n, c, h, w = z.shape
    out_channels = weight.shape[0]
    taps = taps_as_1x1(weight) if taps is None else taps
    if torch.jit.is_tracing():  # ONNX export: its convolutions need kernels of known shape, products do not
        q = torch.matmul(taps.flatten(1), z.reshape(n, c, h * w)).reshape(n, 3, 3, out_channels, h, w)
    else:
        q = F.conv2d(z, taps).reshape(n, 3, 3, out_channels, h, w)
    matrices = shifted_interpolation if torch.compiler.is_compiling() else _cached_shifted_interpolation
    rows = matrices(h, size[0], align_corners, z.device, z.dtype)
    cols = matrices(w, size[1], align_corners, z.device, z.dtype)
    t = torch.einsum("nyxohb,xWb->nyohW", q, cols)  # (n, ky, o, h, W)
    # the row taps and rows in one product whose output is already (n, o, H, W): no permuted copy
    t = t.permute(0, 2, 1, 3, 4).reshape(n, out_channels, 3 * h, size[1])
    return torch.matmul(rows.permute(1, 0, 2).reshape(size[0], 3 * h), t)


def split_bottleneck_weight(conv: nn.Conv2d, widths: tuple[int, ...], num_full: int
                            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The bottleneck's weight split by input: the full-resolution inputs' part (contiguous), and each
    small input's taps (`taps_as_1x1`). Without autograd, cached on the conv until its weight
    changes, so the copies are made once, not on every call."""
    cacheable = not torch.compiler.is_compiling() and not (torch.is_grad_enabled() and conv.weight.requires_grad)
    key = (conv.weight.data_ptr(), conv.weight._version, widths, num_full, conv.weight.dtype)
    cached = conv.__dict__.get("_split_weight")
    if cacheable and cached is not None and cached[0] == key:
        return cached[1]
    parts = torch.split(conv.weight, list(widths), dim=1)
    split = (torch.cat(parts[:num_full], dim=1).contiguous(), [taps_as_1x1(part) for part in parts[num_full:]])
    if cacheable:
        conv.__dict__["_split_weight"] = (key, split)
    return split


WINOGRAD_UPSAMPLE_MAX_CHANNELS = 1024


def upsample_for_winograd(z: torch.Tensor, size: tuple[int, int]) -> bool:
    """Whether a small input of a bottleneck that runs by Winograd is cheaper upsampled and convolved
    with the full-resolution inputs than through its taps: at half the size or more, up to 1024
    channels. Measured at 512x512: UPerNet's 512-channel 1/8 FPN level took 150 ms that way against
    213 ms through the taps (whose interpolation products do not shrink with the channels), while
    PSANet's 2048-channel attention output was 0.2 s slower that way (Winograd transforms the whole
    kernel on every call, and the taps' 1x1 convolution is cheap beside it)."""
    return (2 * z.shape[-2] >= size[0] and 2 * z.shape[-1] >= size[1]
            and z.shape[1] <= WINOGRAD_UPSAMPLE_MAX_CHANNELS)


def bottleneck_of_concat(bottleneck: nn.Module, full: list[torch.Tensor], small: list[torch.Tensor],
                         size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """`bottleneck(cat([*full, *[resize(s, size) for s in small]]))` for a 3x3 ConvBNReLU, computing
    the upsampled channels' part at their own resolution (except, when the convolution runs by
    Winograd, the inputs `upsample_for_winograd` picks)."""
    conv = bottleneck.conv
    if isinstance(conv, WinogradConv2d):
        while small and upsample_for_winograd(small[0], size):  # only a prefix keeps the channel order
            full, small = [*full, resize(small[0], size, align_corners)], small[1:]
    widths = tuple(t.shape[1] for t in full) + tuple(t.shape[1] for t in small)
    full_weight, small_taps = split_bottleneck_weight(conv, widths, len(full))
    x = torch.cat(full, dim=1) if len(full) > 1 else full[0]
    if isinstance(conv, WinogradConv2d):
        out = conv3x3_same(x, full_weight, conv.bias)
    else:
        out = F.conv2d(x, full_weight, conv.bias, padding=1)
    parts = torch.split(conv.weight, list(widths), dim=1)[len(full):]
    if small:  # the products below are NCHW: adding them to an NHWC map would be a strided pass per input
        out = out.contiguous()
    for z, weight, taps in zip(small, parts, small_taps):
        if tuple(z.shape[-2:]) == tuple(size):
            out = out + F.conv2d(z, weight, padding=1)
        else:
            out = out + conv3x3_of_upsampled(z, size, weight, align_corners, taps)
    return bottleneck.act(bottleneck.bn(out))


def is_plain_3x3(block: nn.Module) -> bool:
    """A ConvBNReLU whose conv is 3x3, stride 1, padding 1, dilation 1, ungrouped: the form the rewrite needs."""
    conv = getattr(block, "conv", None)
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and hasattr(block, "bn") and hasattr(block, "act"))


class FastPyramidPooling(PyramidPooling):
    """`PyramidPooling` whose bottleneck convolves the pooled branches at their own size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        pooled = [stage(x) for stage in self.stages]
        return bottleneck_of_concat(self.bottleneck, [x], pooled, size, self.align_corners)


class FastUPerHead(UPerHead):
    """`UPerHead` whose fusing convolution takes the coarser FPN levels at their own size."""

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        features = [features[i] for i in self.in_index]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features[:-1])]
        laterals.append(self.ppm(features[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:], self.align_corners)
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = (outs[0].shape[-2], outs[0].shape[-1])
        return self.classify(bottleneck_of_concat(self.fpn_bottleneck, outs[:1], outs[1:], size,
                                                  self.align_corners))


class FastPSAHead(PSAHead):
    """`PSAHead` whose bottleneck takes the projected attention map at its own (shrunk) size, and
    whose halving of the reduced features is a 2x2 average where that is what the bilinear resize
    computes (exactly half the size, align_corners False: each output samples the middle of a 2x2
    block), which the CPU does without the copy its bilinear downsampling makes."""

    def _to_shrunk(self, features: torch.Tensor, size: tuple[int, int], align: bool) -> torch.Tensor:
        h, w = features.shape[-2:]
        if not align and (h, w) == (2 * size[0], 2 * size[1]):
            return F.avg_pool2d(features, 2)
        return super()._to_shrunk(features, size, align)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        align = self._shrink(x.shape[-2], x.shape[-1])[2]
        size = (x.shape[-2], x.shape[-1])
        return self.classify(bottleneck_of_concat(self.bottleneck, [x], [self.proj(self.attend_all(x))], size, align))


def convolve_upsampled_at_low_resolution(model: nn.Module) -> int:
    """Switch the PSP / UPer / PSA heads (in place) to the forms above; returns how many modules changed.

    Only exact types are switched (a subclass may compute something else), and only where the
    bottleneck is a plain 3x3 ConvBNReLU. Parameters and their names do not change.
    """
    changed = 0
    for module in model.modules():
        if type(module) is PyramidPooling and is_plain_3x3(module.bottleneck):
            module.__class__ = FastPyramidPooling
            changed += 1
        elif type(module) is UPerHead and is_plain_3x3(module.fpn_bottleneck):
            module.__class__ = FastUPerHead
            changed += 1
        elif type(module) is PSAHead and is_plain_3x3(module.bottleneck):
            module.__class__ = FastPSAHead
            changed += 1
    return changed
