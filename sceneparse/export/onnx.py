"""ONNX export of PSPNet, PSANet and UPerNet, and `OnnxSegmentor`, which runs an export with ONNX Runtime.

The graph takes a normalised float32 batch `image` (N x 3 x H x W) and returns `logits`
(N x classes x H x W), as `model(x)["out"]`. With `dynamic=True` the batch size, height and width
are free: the pyramid pooling is traced in its matrix form (`sceneparse.models.ppm`), and the PSA
head's size rules become tensor operations (`sceneparse.export.dynamic_psa`), so any size gives the
PyTorch answer. The file carries what running it needs in its `metadata_props`: "sceneparse" (JSON:
the resolved preset config, classes, palette, mean / std, align_corners, class count, input size
policy), and the same facts as plain keys ("preset", "classes", "palette", "mean", "std",
"align_corners", "num_classes", "input_size") for other runtimes. `sceneparse infer model.onnx`
needs nothing else.

The TorchScript-based exporter is used (`dynamo=False`): it records the size arithmetic of the
resizes as graph operations, where `torch.export` specialises on the example size.
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sceneparse.config.loader import to_dict
from sceneparse.config.schema import Preset
from sceneparse.errors import CheckpointError, ConfigError
from sceneparse.export.dynamic_psa import DynamicSizePSAHead
from sceneparse.models.blocked_layout import BlockedBackbone
from sceneparse.models.fuse import InferenceModel
from sceneparse.models.layers import resize
from sceneparse.models.psa_head import PSAHead
from sceneparse.weights import atomic_write

log = logging.getLogger(__name__)

METADATA_KEY = "sceneparse"
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class LogitsGraph(nn.Module):
    """The inference path of a `Segmentor` as one tensor in, one tensor out (what ONNX records).

    Shares the segmentor's modules; with `dynamic_psa`, a PSA decode head runs in its dynamic-size form.
    """

    def __init__(self, model: nn.Module, dynamic_psa: bool) -> None:
        super().__init__()
        backbone = model.backbone
        # a trunk prepared for the CPU's blocked layout cannot be traced: export its NCHW twin
        self.backbone = backbone.unblocked() if isinstance(backbone, BlockedBackbone) else backbone
        head = model.decode_head
        self.decode_head = DynamicSizePSAHead(head) if dynamic_psa and isinstance(head, PSAHead) else head
        self.align_corners = bool(model.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(self.decode_head(self.backbone(x)), x.shape[-2:], self.align_corners)


def export_onnx(model: nn.Module, path: str | Path, size: Sequence[int] = (512, 512), dynamic: bool = True,
                opset: int = DEFAULT_OPSET, metadata: dict[str, Any] | None = None) -> Path:
    """Write `model` (a `Segmentor` with its weights loaded) to `path` as ONNX, atomically.

    `size` is the example input's height and width: the only size accepted unless `dynamic`.
    """
    path = Path(path)
    if isinstance(model, InferenceModel):  # the fast path's wrapper: export the (folded) network inside
        if model.cast:  # cast to bf16/fp16 for the CPU: ONNX gets float32 (a copy; the wrapper keeps its own)
            log.warning("the model runs in %s with its weights cast: the export holds those weights in float32, "
                        "rounded to %s; export the fp32 model (e.g. Segmenter(..., dtype='fp32')) for the "
                        "full-precision weights", model.dtype, model.dtype)
            model = copy.deepcopy(model.model).float().to(memory_format=torch.contiguous_format)
        else:
            model = model.model
    model = model.eval()
    graph = LogitsGraph(model, dynamic_psa=dynamic).eval()
    device = next(model.parameters()).device
    example = torch.randn(1, 3, int(size[0]), int(size[1]), device=device)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    info = {"num_classes": int(model.num_classes), "align_corners": bool(model.align_corners),
            "dynamic": dynamic, "example_size": [int(size[0]), int(size[1])],
            "input_size": "any (dynamic batch, height and width)" if dynamic else f"{int(size[0])}x{int(size[1])}",
            **(metadata or {})}

    def write(tmp: str) -> None:
        import onnx

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes about shape arithmetic; the export is checked
            torch.onnx.export(graph, (example,), tmp, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                              do_constant_folding=True)
        proto = onnx.load(tmp)
        for key, value in metadata_props(info).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)

    atomic_write(path, write)
    return path


PLAIN_KEYS = ("preset", "classes", "palette", "mean", "std", "align_corners", "num_classes", "input_size")


def preset_metadata(preset: Preset) -> dict[str, Any]:
    """What an export of `preset`'s model needs to run alone: its config, classes, palette, mean / std."""
    from sceneparse.segmenter import _class_names_and_palette

    classes, palette = _class_names_and_palette(preset, preset.model.num_classes)
    return {"preset": preset.name, "config": to_dict(preset), "classes": list(classes),
            "palette": [list(map(int, c)) for c in palette], "mean": list(preset.data.mean),
            "std": list(preset.data.std)}


def metadata_props(info: dict[str, Any]) -> dict[str, str]:
    """The ONNX `metadata_props` entries: everything as JSON under "sceneparse", plus plain keys."""
    props = {METADATA_KEY: json.dumps(info)}
    for key in PLAIN_KEYS:
        if key in info:
            value = info[key]
            props[key] = value if isinstance(value, str) else json.dumps(value)
    return props


def read_onnx_metadata(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[list[int], str]]]:
    """(the "sceneparse" metadata, {initializer name: (shape, dtype)}) of an ONNX file, without running it."""
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"{path}: reading ONNX files needs the onnx package (pip install 'sceneparse[onnx]')") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for files that are not ONNX
        raise CheckpointError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        meta = json.loads(props.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError:
        meta = {}
    tensors = {t.name: (list(t.dims), onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name)
               for t in proto.graph.initializer}
    return meta, tensors


def preset_from_onnx_metadata(metadata: dict[str, Any], path: str | Path) -> Preset:
    """The preset an export was made from, as its metadata records it."""
    from sceneparse.config import load_preset
    from sceneparse.config.loader import from_dict

    config = metadata.get("config")
    if isinstance(config, dict):
        return from_dict(Preset, {**config, "name": metadata.get("preset") or Path(path).stem}, source=str(path))
    if metadata.get("preset"):
        return load_preset(str(metadata["preset"]))
    raise ConfigError(f"{path}: the file's metadata names no preset (exported by an older sceneparse or another "
                      "tool); pass the preset: sceneparse infer PRESET --onnx FILE ...")


class OnnxSegmentor:
    """An exported model run by ONNX Runtime on the CPU.

    `segmentor(batch)` with a numpy N x 3 x H x W float32 batch returns the logits as numpy; with a
    torch tensor it returns `{"out": logits}` as a `Segmentor` does, so `Segmenter` and the
    test-time modes (`sceneparse.models.inference`) run it unchanged. `num_classes` and
    `align_corners` come from the file's metadata.
    """

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such ONNX file")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (all cores)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for unreadable or invalid graphs
            raise CheckpointError(f"{path}: not a loadable ONNX model ({exc}); export it again with "
                                  "`sceneparse export onnx`") from exc
        self.path = path
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.metadata: dict[str, Any] = json.loads(raw) if raw else {}
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise CheckpointError(f"{path}: expected one image input and a logits output, got "
                                  f"{len(inputs)} inputs and {len(outputs)} outputs")
        self.input_name = inputs[0].name
        classes = self.metadata.get("num_classes", outputs[0].shape[1])
        if not isinstance(classes, int):
            raise CheckpointError(f"{path}: the class count is neither in the metadata nor a fixed output "
                                  "dimension; export it with `sceneparse export onnx`")
        self.num_classes = classes
        self.align_corners = bool(self.metadata.get("align_corners", False))
        self.input_shape = list(inputs[0].shape)  # ints where fixed, names where dynamic

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N x classes x H x W, float32) of a normalised N x 3 x H x W batch."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W batch, got shape {batch.shape}")
        fixed = [(i, n) for i, n in enumerate(self.input_shape) if isinstance(n, int)]
        for i, n in fixed:
            if batch.shape[i] != n:
                raise CheckpointError(f"{self.path} was exported for input {self.input_shape} (not dynamic); got "
                                 f"{list(batch.shape)}: export with --dynamic or resize to that size")
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray | dict[str, torch.Tensor]:
        if isinstance(batch, torch.Tensor):
            logits = self.run(batch.detach().float().cpu().numpy())
            return {"out": torch.from_numpy(logits).to(batch.device)}
        return self.run(batch)


def relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    """|a - b| / |b| over all elements."""
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-12))


@torch.no_grad()
def compare_with_pytorch(model: nn.Module, onnx_path: str | Path,
                         sizes: Sequence[Sequence[int]]) -> list[tuple[tuple[int, int], float]]:
    """Relative L2 between ONNX Runtime's and PyTorch's logits at each size (random normalised input)."""
    runner = OnnxSegmentor(onnx_path)
    model = model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    results = []
    for size in sizes:
        x = torch.randn(1, 3, int(size[0]), int(size[1]), generator=generator)
        reference = model(x.to(device))["out"].float().cpu().numpy()
        results.append(((int(size[0]), int(size[1])), relative_l2(runner.run(x.numpy()), reference)))
    return results
