"""What a weights file holds, read by the converters' own readers (nothing in it is run).

`inspect_weights(path)` recognises sceneparse safetensors (and ONNX exports), mmsegmentation 0.x
`.pth` and 1.x mmengine training checkpoints, sssegmentation and semseg `.pth`, Caffe
`.caffemodel` and ChainerCV `.npz` files, and reports the format, the preset (from the file's
metadata or its published file name), the classes, the tensors, the training iteration, the size
and the SHA-256. `sceneparse inspect FILE` prints it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sceneparse.atomic import file_sha256
from sceneparse.errors import CheckpointError, ConfigError, DataError

KNOWN_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".caffemodel", ".npz", ".onnx")


@dataclass
class WeightsReport:
    path: str
    format: str  # "sceneparse", "mmsegmentation 1.x (mmengine)", "caffe", ...
    size_bytes: int
    sha256: str
    tensors: dict[str, tuple[list[int], str]]  # name -> (shape, dtype)
    preset: str = ""
    preset_from: str = ""  # "metadata" or "file name"
    classes: list[str] = field(default_factory=list)
    num_classes: int | None = None
    iteration: int | None = None
    other_contents: list[str] = field(default_factory=list)  # e.g. optimizer, message_hub

    @property
    def parameters(self) -> int:
        total = 0
        for shape, _ in self.tensors.values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total



def inspect_weights(path: str | Path) -> WeightsReport:
    """The report for `path`; CheckpointError when it is no weights file sceneparse can read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in KNOWN_SUFFIXES:
        raise CheckpointError(f"{path}: not a weights file sceneparse reads (expected one of "
                              f"{', '.join(KNOWN_SUFFIXES)})")
    report = WeightsReport(str(path), "", path.stat().st_size, file_sha256(path), {})
    if suffix == ".safetensors":
        _read_safetensors(path, report)
    elif suffix == ".onnx":
        _read_onnx(path, report)
    elif suffix == ".caffemodel":
        _read_caffe(path, report)
    elif suffix == ".npz":
        _read_npz(path, report)
    else:
        _read_pth(path, report)
    if not report.preset:
        from sceneparse.config.names import preset_for_checkpoint

        found = preset_for_checkpoint(path)
        if found:
            report.preset, report.preset_from = found, "file name"
    if not report.classes and report.preset:
        report.classes = _preset_classes(report.preset)
    if report.num_classes is None and report.classes:
        report.num_classes = len(report.classes)
    return report


def _describe(state: Mapping[str, Any], report: WeightsReport) -> None:
    report.tensors = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()
                      if isinstance(v, torch.Tensor)}


def _preset_classes(name_or_config: str | dict) -> list[str]:
    """The class names of a preset (by name or resolved config dict); [] when its dataset has none."""
    from sceneparse.config import Preset, load_preset
    from sceneparse.config.loader import from_dict
    from sceneparse.data.dataset import config_dataset_info

    try:
        preset = load_preset(name_or_config) if isinstance(name_or_config, str) else from_dict(Preset, name_or_config)
        info = config_dataset_info(preset.data)
    except (ConfigError, DataError):
        return []
    return list(info.classes) if info.num_classes == preset.model.num_classes else []


def _read_safetensors(path: Path, report: WeightsReport) -> None:
    from sceneparse.weights import load_weights_file

    state, meta = load_weights_file(path)
    _describe(state, report)
    report.format = "sceneparse"
    if meta.get("source_format"):
        report.format = f"sceneparse (converted from {meta['source_format']} {meta.get('source_file', '')})".strip()
    report.preset = str(meta.get("preset", ""))
    report.preset_from = "metadata" if report.preset else ""
    if isinstance(meta.get("iteration"), int):
        report.iteration = meta["iteration"]
    config = meta.get("config")
    if isinstance(config, dict):
        report.classes = _preset_classes({**config, "name": report.preset or path.stem})
        report.num_classes = config.get("model", {}).get("num_classes")


def _read_onnx(path: Path, report: WeightsReport) -> None:
    from sceneparse.export.onnx import read_onnx_metadata

    meta, initializers = read_onnx_metadata(path)
    report.format = "onnx (sceneparse export)" if meta else "onnx"
    report.tensors = initializers
    report.preset = str(meta.get("preset", ""))
    report.preset_from = "metadata" if report.preset else ""
    report.classes = list(meta.get("classes", []))
    report.num_classes = meta.get("num_classes")


def _read_caffe(path: Path, report: WeightsReport) -> None:
    from sceneparse.convert.caffe import blob_tensor, read_caffemodel

    net = read_caffemodel(path)
    report.format = "caffe"
    for layer in net.layer:
        for i, blob in enumerate(layer.blobs):
            tensor = blob_tensor(blob, f"{path}: layer {layer.name}")
            report.tensors[f"{layer.name}/{i}"] = (list(tensor.shape), "float32")
    if net.name:
        report.other_contents.append(f"net name {net.name!r}")


def _read_npz(path: Path, report: WeightsReport) -> None:
    from sceneparse.convert.chainercv import is_chainercv_npz, read_npz

    _describe(read_npz(path), report)
    report.format = "chainercv" if is_chainercv_npz(path) else "npz (not a ChainerCV PSPNet)"


def _read_pth(path: Path, report: WeightsReport) -> None:
    from sceneparse.convert.common import read_checkpoint_object

    obj = read_checkpoint_object(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    state = obj
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            state = obj[key]
            break
    _describe(state, report)
    if not report.tensors:
        raise CheckpointError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(obj)[:8]))})")
    report.other_contents = sorted(str(k) for k in obj if obj.get(k) is not state) if state is not obj else []
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else {}
    keys = list(report.tensors)
    if "mmengine_version" in meta or "message_hub" in obj:
        report.format = "mmsegmentation 1.x (mmengine checkpoint)"
    elif any(k.startswith(("decode_head.", "auxiliary_head.")) for k in keys):
        report.format = "mmsegmentation 0.x" if "mmseg_version" in meta or "CLASSES" in meta else "mmsegmentation"
    elif any(k.startswith("backbone_net.") for k in keys):
        report.format = "sssegmentation"
    elif any(k.removeprefix("module.").startswith(("layer0.", "ppm.features.", "psa.")) for k in keys):
        report.format = "semseg (hszhao)"
    elif any(k.startswith("backbone.stem.") for k in keys):
        report.format = "sceneparse (.pth)"
    else:
        report.format = "PyTorch state dict (unknown toolbox)"
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), Mapping) else {}
    classes = dataset_meta.get("classes") or meta.get("CLASSES")
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        report.classes = list(classes)
    for source in (meta, obj):
        for key in ("iter", "iteration"):
            if isinstance(source.get(key), int) and report.iteration is None:
                report.iteration = source[key]
    if report.iteration is None and isinstance(obj.get("epoch"), int):
        report.other_contents.append(f"epoch {obj['epoch']}")
    experiment = meta.get("experiment_name")  # mmengine: "<config file stem>_<YYYYmmdd_HHMMSS>"
    if isinstance(experiment, str):
        from sceneparse.config.names import checkpoint_stem, resolve_name

        found = resolve_name(checkpoint_stem(experiment))
        if found:
            report.preset, report.preset_from = found, f"mmengine experiment name {experiment}"
    config_text = meta.get("cfg") or meta.get("config")
    if isinstance(config_text, str):
        lines = len(config_text.splitlines())
        report.other_contents.append(f"its config as text ({lines} line{'s' if lines != 1 else ''})")


def to_json(report: WeightsReport) -> str:
    data = {**report.__dict__, "parameters": report.parameters,
            "tensors": {k: {"shape": s, "dtype": d} for k, (s, d) in report.tensors.items()}}
    return json.dumps(data, indent=2)
