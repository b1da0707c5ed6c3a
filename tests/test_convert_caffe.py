"""The original Caffe PSPNet: a small `.caffemodel` built with protobuf lands weight by weight.

The caffemodel is written in the test with the message classes of sceneparse's caffe.proto, whose
field numbers are checked first against those of the PSPNet Caffe fork, so the bytes are what Caffe
writes. Layer names follow the released pspnet*.prototxt files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from sceneparse.config import load_preset
from sceneparse.convert import convert_checkpoint
from sceneparse.convert.caffe import message_classes
from sceneparse.errors import CheckpointError

BLOCKS = (3, 4, 6, 3)
STEM = (4, 4, 8)
PLANES = (4, 8, 16, 32)
FEATURES = PLANES[-1] * 4
HEAD = FEATURES // 4
CLASSES = 5
FEAT = 9  # pooled feature size at the tiny "training crop"
CONCAT = (6, 3, 2, 1)  # conv5_3_concat: conv5_3, pool6, pool3, pool2, pool1 (the released order)


def tiny_overrides() -> list[str]:
    return [f"model.num_classes={CLASSES}", f"model.backbone.stem_channels={STEM[-1]}",
            f"model.backbone.base_channels={PLANES[0]}", f"model.decode_head.channels={HEAD}",
            "model.decode_head.pool_scales=[1,2,3,6]", f"model.decode_head.pool_input_size=[{FEAT},{FEAT}]"]


def test_schema_uses_the_pspnet_caffe_field_numbers() -> None:
    c = message_classes()
    numbers = {name: f.number for name, f in c["LayerParameter"].DESCRIPTOR.fields_by_name.items()}
    assert numbers == {"name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7, "concat_param": 104,
                       "convolution_param": 106, "pooling_param": 121, "interp_param": 143, "bn_param": 152}
    assert c["NetParameter"].DESCRIPTOR.fields_by_name["layer"].number == 100
    assert c["BlobProto"].DESCRIPTOR.fields_by_name["shape"].number == 7
    assert c["BlobProto"].DESCRIPTOR.fields_by_name["data"].number == 5
    assert c["BNParameter"].DESCRIPTOR.fields_by_name["eps"].number == 4


class NetBuilder:
    """Writes a PSPNet-shaped NetParameter and remembers every blob it wrote, by layer name."""

    def __init__(self, seed: int) -> None:
        self.net = message_classes()["NetParameter"](name="pspnet_tiny")
        self.rng = np.random.RandomState(seed)
        self.blobs: dict[str, list[np.ndarray]] = {}

    def _blob(self, layer, array: np.ndarray, legacy: bool = False) -> None:
        blob = layer.blobs.add()
        if legacy:  # old caffemodels: num / channels / height / width instead of shape
            blob.num, blob.channels, blob.height, blob.width = array.shape
        else:
            blob.shape.dim.extend(array.shape)
        blob.data.extend(array.ravel().tolist())
        self.blobs.setdefault(layer.name, []).append(array)

    def conv(self, name: str, out_c: int, in_c: int, k: int, bias: bool = False, legacy: bool = False) -> None:
        layer = self.net.layer.add(name=name, type="Convolution")
        layer.convolution_param.num_output = out_c
        layer.convolution_param.bias_term = bias
        self._blob(layer, self.rng.normal(0, 1, (out_c, in_c, k, k)).astype(np.float32), legacy)
        if bias:
            self._blob(layer, self.rng.normal(0, 1, (out_c,)).astype(np.float32))

    def bn(self, name: str, c: int, eps: float = 1e-5) -> None:
        layer = self.net.layer.add(name=name, type="BN")
        layer.bn_param.eps = eps
        layer.bn_param.frozen = True
        for low, high in ((0.5, 1.5), (-0.1, 0.1), (-0.1, 0.1), (0.5, 1.5)):  # scale, shift, mean, var
            self._blob(layer, self.rng.uniform(low, high, (1, c, 1, 1)).astype(np.float32))

    def plain(self, name: str, kind: str, **params: object) -> object:
        return self.net.layer.add(name=name, type=kind, **params)


def pspnet_caffemodel(seed: int = 0, bn_eps: float = 1e-5) -> NetBuilder:
    b = NetBuilder(seed)
    c_in = 3
    for i, (name, c) in enumerate(zip(("conv1_1_3x3_s2", "conv1_2_3x3", "conv1_3_3x3"), STEM)):
        b.conv(name, c, c_in, 3, legacy=i == 1)
        b.bn(f"{name}_bn", c, bn_eps)
        c_in = c
    for stage, (n, mid) in enumerate(zip(BLOCKS, PLANES), 2):
        for block in range(1, n + 1):
            p = f"conv{stage}_{block}"
            for part, out_c, in_c, k in (("1x1_reduce", mid, c_in, 1), ("3x3", mid, mid, 3),
                                         ("1x1_increase", mid * 4, mid, 1)):
                b.conv(f"{p}_{part}", out_c, in_c, k)
                b.bn(f"{p}_{part}_bn", out_c, bn_eps)
            if block == 1:
                b.conv(f"{p}_1x1_proj", mid * 4, c_in, 1)
                b.bn(f"{p}_1x1_proj_bn", mid * 4, bn_eps)
            c_in = mid * 4
    for bins in (1, 2, 3, 6):
        pool = b.plain(f"conv5_3_pool{bins}", "Pooling", bottom=["conv5_3"], top=[f"conv5_3_pool{bins}"])
        pool.pooling_param.pool = 1  # AVE
        pool.pooling_param.kernel_size = FEAT // bins
        pool.pooling_param.stride = FEAT // bins
        b.conv(f"conv5_3_pool{bins}_conv", HEAD, FEATURES, 1)
        b.bn(f"conv5_3_pool{bins}_conv_bn", HEAD, bn_eps)
        interp = b.plain(f"conv5_3_pool{bins}_interp", "Interp")
        interp.interp_param.height, interp.interp_param.width = FEAT, FEAT
    b.plain("conv5_3_concat", "Concat", bottom=["conv5_3"] + [f"conv5_3_pool{s}_interp" for s in CONCAT])
    b.conv("conv5_4", HEAD, 2 * FEATURES, 3)
    b.bn("conv5_4_bn", HEAD, bn_eps)
    b.plain("conv5_4_drop", "Dropout")
    b.conv("conv6", CLASSES, HEAD, 1, bias=True)
    b.plain("conv6_interp", "Interp").interp_param.zoom_factor = 8
    return b


def write(builder: NetBuilder, path: Path) -> Path:
    path.write_bytes(builder.net.SerializeToString())
    return path


def test_every_weight_lands_where_it_must(tmp_path: Path) -> None:
    preset = load_preset("caffe_pspnet50_ade20k", tiny_overrides())
    builder = pspnet_caffemodel(seed=0, bn_eps=1e-5)
    state = convert_checkpoint("caffe", write(builder, tmp_path / "pspnet.caffemodel"), preset)
    blobs = {name: [torch.from_numpy(a) for a in arrays] for name, arrays in builder.blobs.items()}

    def assert_bn(prefix: str, layer: str) -> None:
        scale, shift, mean, var = (t.reshape(-1) for t in blobs[layer])
        assert torch.equal(state[f"{prefix}.weight"], scale) and torch.equal(state[f"{prefix}.bias"], shift)
        assert torch.equal(state[f"{prefix}.running_mean"], mean)
        assert torch.allclose(state[f"{prefix}.running_var"], var)

    # the stem; conv1_1 reads RGB where Caffe read BGR
    assert torch.equal(state["backbone.stem.0.weight"], blobs["conv1_1_3x3_s2"][0][:, [2, 1, 0]])
    assert torch.equal(state["backbone.stem.3.weight"], blobs["conv1_2_3x3"][0])  # the legacy 4D blob
    assert torch.equal(state["backbone.stem.6.weight"], blobs["conv1_3_3x3"][0])
    for name, bn_index in (("conv1_1_3x3_s2", 1), ("conv1_2_3x3", 4), ("conv1_3_3x3", 7)):
        assert_bn(f"backbone.stem.{bn_index}", f"{name}_bn")
    # every bottleneck
    parts = {"1x1_reduce": ("conv1", "bn1"), "3x3": ("conv2", "bn2"), "1x1_increase": ("conv3", "bn3"),
             "1x1_proj": ("downsample.0", "downsample.1")}
    for stage, n in enumerate(BLOCKS, 2):
        for block in range(1, n + 1):
            for part, (conv, bn) in parts.items():
                layer = f"conv{stage}_{block}_{part}"
                if layer not in blobs:
                    continue
                prefix = f"backbone.layer{stage - 1}.{block - 1}"
                assert torch.equal(state[f"{prefix}.{conv}.weight"], blobs[layer][0]), layer
                assert_bn(f"{prefix}.{bn}", f"{layer}_bn")
    # the pyramid: stage i of pool_scales [1, 2, 3, 6] holds conv5_3_pool<bins>_conv
    for stage, bins in enumerate((1, 2, 3, 6)):
        assert torch.equal(state[f"decode_head.ppm.stages.{stage}.1.conv.weight"], blobs[f"conv5_3_pool{bins}_conv"][0])
        assert_bn(f"decode_head.ppm.stages.{stage}.1.bn", f"conv5_3_pool{bins}_conv_bn")
    # conv5_4 reads concat(x, pool6, pool3, pool2, pool1); ours concat(x, pool1, pool2, pool3, pool6)
    w, ours = blobs["conv5_4"][0], state["decode_head.ppm.bottleneck.conv.weight"]
    assert torch.equal(ours[:, :FEATURES], w[:, :FEATURES])
    for our_index, bins in enumerate((1, 2, 3, 6)):
        src = CONCAT.index(bins)
        theirs = w[:, FEATURES + src * HEAD: FEATURES + (src + 1) * HEAD]
        assert torch.equal(ours[:, FEATURES + our_index * HEAD: FEATURES + (our_index + 1) * HEAD], theirs), bins
    assert_bn("decode_head.ppm.bottleneck.bn", "conv5_4_bn")
    assert torch.equal(state["decode_head.classifier.weight"], blobs["conv6"][0])
    assert torch.equal(state["decode_head.classifier.bias"], blobs["conv6"][1])
    # and nothing else: one tensor per blob, plus the BN counters Caffe does not have
    weights = [k for k in state if not k.endswith("num_batches_tracked")]
    assert len(weights) == sum(len(arrays) for arrays in builder.blobs.values())


def test_bn_eps_comes_from_the_prototxt_over_the_caffemodel(tmp_path: Path) -> None:
    preset = load_preset("caffe_pspnet50_ade20k", tiny_overrides())
    builder = pspnet_caffemodel(seed=1, bn_eps=1e-5)
    model = write(builder, tmp_path / "pspnet.caffemodel")
    prototxt = tmp_path / "pspnet.prototxt"
    deploy = message_classes()["NetParameter"]()
    deploy.CopyFrom(builder.net)
    for layer in deploy.layer:
        del layer.blobs[:]
        if layer.type == "BN":
            layer.bn_param.eps = 1e-3
    # a deploy prototxt also holds fields sceneparse does not read: they are skipped
    prototxt.write_text('input: "data"\ninput_dim: 1\n' + text_format.MessageToString(deploy)
                        .replace('type: "Dropout"', 'type: "Dropout"\n  dropout_param { dropout_ratio: 0.1 }'))
    state = convert_checkpoint("caffe", model, preset, prototxt=prototxt)
    var = torch.from_numpy(builder.blobs["conv5_4_bn"][3]).reshape(-1)
    assert torch.allclose(state["decode_head.ppm.bottleneck.bn.running_var"], var + (1e-3 - 1e-5))


def test_settings_that_would_change_the_outputs_are_refused(tmp_path: Path) -> None:
    model = write(pspnet_caffemodel(seed=2), tmp_path / "pspnet.caffemodel")
    corners = load_preset("caffe_pspnet50_ade20k", tiny_overrides() + ["model.align_corners=false"])
    with pytest.raises(CheckpointError, match="align_corners=true"):
        convert_checkpoint("caffe", model, corners)
    windows = load_preset("caffe_pspnet50_ade20k", tiny_overrides() + ["model.decode_head.pool_mode=adaptive"])
    with pytest.raises(CheckpointError, match=rf"conv5_3_pool1 averages {FEAT}x{FEAT} windows.*pool_input_size=\[9, 9\]"):
        convert_checkpoint("caffe", model, windows)


def test_unknown_missing_and_broken_layers_are_named(tmp_path: Path) -> None:
    preset = load_preset("caffe_pspnet50_ade20k", tiny_overrides())
    builder = pspnet_caffemodel(seed=3)
    builder.conv("conv4_24", 8, 64, 3)  # e.g. a training net's auxiliary branch
    with pytest.raises(CheckpointError, match=r"unexpected 1: caffe:conv4_24\.0"):
        convert_checkpoint("caffe", write(builder, tmp_path / "aux.caffemodel"), preset)

    builder = pspnet_caffemodel(seed=3)
    for i, layer in enumerate(builder.net.layer):
        if layer.name == "conv3_2_3x3":
            del builder.net.layer[i]
            break
    with pytest.raises(CheckpointError, match=r"missing 1: backbone\.layer2\.1\.conv2\.weight"):
        convert_checkpoint("caffe", write(builder, tmp_path / "missing.caffemodel"), preset)

    (tmp_path / "junk.caffemodel").write_bytes(b"\x00\xff" * 64)
    with pytest.raises(CheckpointError, match="junk.caffemodel"):
        convert_checkpoint("caffe", tmp_path / "junk.caffemodel", preset)
