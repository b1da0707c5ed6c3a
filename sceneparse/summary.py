"""What a model is: parameters, FLOPs at an input size, output stride, per-stage feature shapes.

FLOPs are counted on the meta device (no memory, no compute), so any preset at any size is instant.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from sceneparse.config import ModelConfig
from sceneparse.models import build_segmentor


@dataclass
class ModelSummary:
    params: int
    params_without_aux: int
    flops: int  # multiply and add counted separately (2 x MACs), inference forward
    input_size: tuple[int, int]
    output_stride: int
    stage_shapes: list[tuple[int, ...]]
    head_shape: tuple[int, ...]


def summarize(cfg: ModelConfig, size: tuple[int, int]) -> ModelSummary:
    with torch.device("meta"):
        model = build_segmentor(cfg).eval()
        x = torch.empty(1, 3, *size)
        with torch.no_grad():
            stages = model.backbone(x)
            probe = model.backbone(torch.empty(1, 3, 256, 256))[-1]  # a size every stride divides
            head = model.decode_head(stages)
            counter = FlopCounterMode(display=False)
            with counter:
                model(x)
    params = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for p in model.aux_head.parameters()) if model.aux_head is not None else 0
    return ModelSummary(
        params=params,
        params_without_aux=params - aux,
        flops=int(counter.get_total_flops()),
        input_size=size,
        output_stride=256 // probe.shape[-2],
        stage_shapes=[tuple(s.shape) for s in stages],
        head_shape=tuple(head.shape),
    )


def format_summary(name: str, s: ModelSummary) -> str:
    lines = [
        f"preset        {name}",
        f"parameters    {s.params:,} ({s.params_without_aux:,} without the auxiliary head)",
        f"input         1x3x{s.input_size[0]}x{s.input_size[1]}",
        f"FLOPs         {s.flops / 1e9:.1f} G ({s.flops / 2e9:.1f} GMACs)",
        f"output stride {s.output_stride}",
    ]
    for i, shape in enumerate(s.stage_shapes):
        lines.append(f"layer{i + 1}        {'x'.join(map(str, shape))}")
    lines.append(f"decode head   {'x'.join(map(str, s.head_shape))} (before resizing to the input)")
    return "\n".join(lines)
