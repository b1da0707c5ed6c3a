"""The original Caffe PSPNet (`.caffemodel`, optionally with its `.prototxt`) -> sceneparse.

The message schema is `caffe.proto` beside this file: the few Caffe messages sceneparse reads, with
the field numbers of the PSPNet Caffe fork (its `BN` and `Interp` layers). Its message classes are
built at run time with protobuf's descriptor API, so no `protoc` is needed; parsing protobuf is
reading data, nothing in the file is ever executed.

Layer names follow the released PSPNet prototxts:

    conv1_1_3x3_s2, conv1_2_3x3, conv1_3_3x3 (+ _bn)          deep stem 64-64-128, input BGR
    conv{2..5}_{i}_1x1_reduce / _3x3 / _1x1_increase / _1x1_proj (+ _bn)   bottleneck i of stage 2..5
    conv5_3_pool{1,2,3,6}_conv (+ _bn)                         pyramid branches; conv5_3_pool{b} pools
    conv5_4 (+ _bn), conv6                                      bottleneck after the concat, classifier

The first convolution's input channels are reversed (BGR -> RGB), so the converted model takes the
RGB images the rest of sceneparse feeds (normalised with the preset's mean, std 1). The `BN` blobs
are scale, shift, mean and variance; its eps (from the layer's `bn_param`) is folded into the
variance. Layer settings that decide the outputs are checked against the preset: the Interp layers
resize with aligned corners (`model.align_corners = true`) and the pyramid pools with fixed
windows rounded up (`pool_mode = "fixed"`, `pool_input_size` = the pooled feature size, 90 at 713).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from sceneparse.config.schema import Preset
from sceneparse.convert.chainercv import reorder_pyramid_input
from sceneparse.errors import CheckpointError

SCHEMA = Path(__file__).with_name("caffe.proto")
TORCH_BN_EPS = 1e-5
DEFAULT_PYRAMID_ORDER = (6, 3, 2, 1)  # concat(conv5_3, pool6, pool3, pool2, pool1) in the released nets
STEM = {"1": 0, "2": 3, "3": 6}  # conv1_<n> -> index of its conv in our stem (its bn is the next index)
BOTTLENECK = {"1x1_reduce": ("conv1", "bn1"), "3x3": ("conv2", "bn2"), "1x1_increase": ("conv3", "bn3"),
              "1x1_proj": ("downsample.0", "downsample.1")}

# ---------------------------------------------------------------- the schema, without protoc

_SCALARS = {
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}
_LABELS = {"optional": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
           "repeated": descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
           "required": descriptor_pb2.FieldDescriptorProto.LABEL_REQUIRED}
_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|[-+]?\d[\w.+-]*|[{}\[\]=;,]')


def parse_proto_schema(text: str) -> descriptor_pb2.FileDescriptorProto:
    """A FileDescriptorProto from proto2 text using only: package, messages, enums nested in messages,
    scalar / message / enum fields with `default` and `packed` options (what caffe.proto uses)."""
    tokens = _TOKEN.findall(re.sub(r"//[^\n]*", "", text))
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"{SCHEMA.name}: unexpected end of file")
        token = tokens[pos]
        if expected is not None and token != expected:
            raise ValueError(f"{SCHEMA.name}: expected {expected!r}, found {token!r} (token {pos})")
        pos += 1
        return token

    fdp = descriptor_pb2.FileDescriptorProto(name="sceneparse/convert/caffe.proto", syntax="proto2")
    fields: list[tuple[descriptor_pb2.DescriptorProto, descriptor_pb2.FieldDescriptorProto, str]] = []
    while pos < len(tokens):
        keyword = take()
        if keyword == "syntax":
            take("=")
            take()
            take(";")
        elif keyword == "package":
            fdp.package = take()
            take(";")
        elif keyword == "message":
            message = fdp.message_type.add(name=take())
            take("{")
            while tokens[pos] != "}":
                if tokens[pos] == "enum":
                    take()
                    enum = message.enum_type.add(name=take())
                    take("{")
                    while tokens[pos] != "}":
                        name = take()
                        take("=")
                        enum.value.add(name=name, number=int(take()))
                        take(";")
                    take("}")
                    continue
                label, type_name, name = take(), take(), take()
                take("=")
                field = message.field.add(name=name, number=int(take()), label=_LABELS[label])
                if tokens[pos] == "[":
                    take()
                    while True:
                        option = take()
                        take("=")
                        value = take().strip('"')
                        if option == "default":
                            field.default_value = value
                        elif option == "packed":
                            field.options.packed = value == "true"
                        if take() == "]":
                            break
                take(";")
                fields.append((message, field, type_name))
            take("}")
        else:
            raise ValueError(f"{SCHEMA.name}: unexpected {keyword!r}")
    messages = {m.name for m in fdp.message_type}
    for message, field, type_name in fields:
        if type_name in _SCALARS:
            field.type = _SCALARS[type_name]
        elif type_name in {e.name for e in message.enum_type}:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
            field.type_name = f".{fdp.package}.{message.name}.{type_name}"
        elif type_name in messages:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
            field.type_name = f".{fdp.package}.{type_name}"
        else:
            raise ValueError(f"{SCHEMA.name}: field {message.name}.{field.name} has unknown type {type_name!r}")
    return fdp


@functools.cache
def message_classes() -> dict[str, type]:
    """The message classes of caffe.proto by name (NetParameter, LayerParameter, BlobProto, ...)."""
    fdp = parse_proto_schema(SCHEMA.read_text(encoding="utf-8"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get_class = getattr(message_factory, "GetMessageClass", None)
    classes = {}
    for message in fdp.message_type:
        descriptor = pool.FindMessageTypeByName(f"{fdp.package}.{message.name}")
        classes[message.name] = (get_class(descriptor) if get_class is not None
                                 else message_factory.MessageFactory(pool).GetPrototype(descriptor))
    return classes


# ---------------------------------------------------------------- reading the files


def read_caffemodel(path: str | Path) -> Any:
    """The NetParameter of a binary `.caffemodel`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such caffemodel file")
    net = message_classes()["NetParameter"]()
    try:
        net.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a binary Caffe NetParameter ({exc})") from exc
    if not net.layer:
        if net.layers:
            raise CheckpointError(f"{path}: uses Caffe's old V1 layer format; upgrade it with Caffe's "
                                  "upgrade_net_proto_binary tool first")
        raise CheckpointError(f"{path}: no layers; is this a .caffemodel?")
    return net


def read_prototxt(path: str | Path) -> Any:
    """The NetParameter of a text `.prototxt` (fields sceneparse does not use are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such prototxt file")
    net = message_classes()["NetParameter"]()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), net, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a Caffe prototxt ({exc})") from exc
    return net


def blob_tensor(blob: Any, where: str) -> torch.Tensor:
    """A BlobProto as a float32 tensor of its shape (`shape`, or the old num/channels/height/width)."""
    if blob.shape.dim:
        shape = [int(d) for d in blob.shape.dim]
    else:
        shape = [d for d in (blob.num, blob.channels, blob.height, blob.width)]
    values = list(blob.data) if len(blob.data) else list(blob.double_data)
    numel = 1
    for d in shape:
        numel *= d
    if numel != len(values):
        raise CheckpointError(f"{where}: blob of shape {shape} holds {len(values)} values")
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


# ---------------------------------------------------------------- names and settings


def target_prefix(layer_name: str, pool_scales: list[int]) -> tuple[str, str] | None:
    """(sceneparse module path, "conv" or "bn") of a PSPNet layer name; None for names outside the map."""
    m = re.fullmatch(r"conv1_([123])_3x3(?:_s2)?(_bn)?", layer_name)
    if m:
        index = STEM[m.group(1)] + (1 if m.group(2) else 0)
        return f"backbone.stem.{index}", "bn" if m.group(2) else "conv"
    m = re.fullmatch(r"conv([2-5])_(\d+)_(1x1_reduce|3x3|1x1_increase|1x1_proj)(_bn)?", layer_name)
    if m:
        stage, block, part, bn = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        module = BOTTLENECK[part][1 if bn else 0]
        return f"backbone.layer{stage - 1}.{block - 1}.{module}", "bn" if bn else "conv"
    m = re.fullmatch(r"conv5_3_pool(\d+)_conv(_bn)?", layer_name)
    if m and int(m.group(1)) in pool_scales:
        stage = pool_scales.index(int(m.group(1)))
        return f"decode_head.ppm.stages.{stage}.1.{'bn' if m.group(2) else 'conv'}", "bn" if m.group(2) else "conv"
    m = re.fullmatch(r"conv5_4(_bn)?", layer_name)
    if m:
        return f"decode_head.ppm.bottleneck.{'bn' if m.group(1) else 'conv'}", "bn" if m.group(1) else "conv"
    if layer_name == "conv6":
        return "decode_head.classifier", "conv"
    return None


def _settings(net: Any, prototxt: Any | None) -> dict[str, Any]:
    """Each layer's parameters by name: the caffemodel's, replaced by the prototxt's where it has the layer."""
    layers = {layer.name: layer for layer in net.layer}
    if prototxt is not None:
        layers.update({layer.name: layer for layer in prototxt.layer})
    return layers


def _pyramid_order(layers: dict[str, Any]) -> list[int]:
    """Bins of the pyramid branches in the order the concat before conv5_4 stacks them."""
    for layer in layers.values():
        if layer.type == "Concat":
            bins = [int(m.group(1)) for b in layer.bottom if (m := re.search(r"pool(\d+)", b))]
            if bins:
                return bins
    return list(DEFAULT_PYRAMID_ORDER)


def check_settings(layers: dict[str, Any], preset: Preset, source: str) -> None:
    """Fail, saying what to set, where the preset would compute something else than the Caffe net."""
    head = preset.model.decode_head
    problems = []
    if any(layer.type == "Interp" for layer in layers.values()) and not preset.model.align_corners:
        problems.append("Caffe's Interp layers resize with aligned corners: set model.align_corners=true")
    for bins in head.pool_scales:
        layer = layers.get(f"conv5_3_pool{bins}")
        if layer is None or layer.type != "Pooling":
            continue
        p = layer.pooling_param
        kernel = (p.kernel_h or p.kernel_size, p.kernel_w or p.kernel_size)
        expected = ((head.pool_input_size[0] // bins, head.pool_input_size[-1] // bins)
                    if head.pool_mode == "fixed" and head.pool_input_size else None)
        if expected != kernel or not head.pool_ceil_mode:
            size = [kernel[0] * bins, kernel[1] * bins]
            problems.append(
                f"layer conv5_3_pool{bins} averages {kernel[0]}x{kernel[1]} windows (rounding the count up): set "
                f"model.decode_head.pool_mode=\"fixed\", pool_input_size={size}, pool_ceil_mode=true")
            break
    if problems:
        raise CheckpointError(f"{source}: preset {preset.name!r} does not compute what the Caffe net does: "
                              + "; ".join(problems))


def _layer_tensors(layer: Any, settings: Any, prefix: str, kind: str, where: str) -> Iterator[tuple[str, torch.Tensor]]:
    blobs = [blob_tensor(b, f"{where}: layer {layer.name}") for b in layer.blobs]
    if kind == "bn":
        if settings.type != "BN" or len(blobs) != 4:
            raise CheckpointError(f"{where}: layer {layer.name} should be a BN layer with 4 blobs (scale, shift, "
                                  f"mean, variance); found {settings.type} with {len(blobs)}")
        eps = settings.bn_param.eps
        scale, shift, mean, var = (b.reshape(-1) for b in blobs)
        yield from ((f"{prefix}.weight", scale), (f"{prefix}.bias", shift), (f"{prefix}.running_mean", mean),
                    (f"{prefix}.running_var", var + (eps - TORCH_BN_EPS)))
        return
    if settings.type != "Convolution" or len(blobs) not in (1, 2):
        raise CheckpointError(f"{where}: layer {layer.name} should be a Convolution with 1 or 2 blobs; found "
                              f"{settings.type} with {len(blobs)}")
    yield f"{prefix}.weight", blobs[0]
    if len(blobs) == 2:
        yield f"{prefix}.bias", blobs[1].reshape(-1)


def convert_caffe(src: str | Path, preset: Preset, prototxt: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Every blob of a PSPNet `.caffemodel` under sceneparse's names, conv1_1 turned to RGB input.

    Layers whose names the map does not know keep a `caffe:` name, so strict loading reports them.
    """
    src = Path(src)
    net = read_caffemodel(src)
    layers = _settings(net, read_prototxt(prototxt) if prototxt is not None else None)
    check_settings(layers, preset, str(src))
    pool_scales = list(preset.model.decode_head.pool_scales)
    state: dict[str, torch.Tensor] = {}
    for layer in net.layer:
        if not layer.blobs:
            continue
        target = target_prefix(layer.name, pool_scales)
        if target is None:
            for i, blob in enumerate(layer.blobs):
                state[f"caffe:{layer.name}.{i}"] = blob_tensor(blob, str(src))
            continue
        for key, tensor in _layer_tensors(layer, layers[layer.name], target[0], target[1], str(src)):
            if key in state:
                raise CheckpointError(f"{src}: two layers map to {key} (the second is {layer.name})")
            state[key] = tensor
    first = "backbone.stem.0.weight"
    if first in state and state[first].shape[1] == 3:
        state[first] = state[first].flip(1)  # Caffe's nets read BGR images; sceneparse feeds RGB
    key, stage0 = "decode_head.ppm.bottleneck.conv.weight", "decode_head.ppm.stages.0.1.conv.weight"
    if key in state and stage0 in state:
        branch, in_channels = state[stage0].shape[:2]
        state[key] = reorder_pyramid_input(state[key], in_channels, branch, _pyramid_order(layers), pool_scales)
    return state
