"""sceneparse's own weights files: safetensors with JSON metadata, written atomically.

A foreign `.pth` (mmsegmentation, sssegmentation) is recognised by its keys and renamed through
the converters in `sceneparse.convert`; it is read with `torch.load(weights_only=True)` only.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sceneparse.atomic import atomic_write
from sceneparse.convert.common import load_state_strict, read_torch_checkpoint
from sceneparse.convert.mmseg import convert_mmseg
from sceneparse.convert.ssseg import convert_ssseg
from sceneparse.errors import CheckpointError

METADATA_KEY = "sceneparse"


def save_weights(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, Any] | None = None) -> None:
    """Write a state dict as safetensors; `metadata` (JSON-serialisable) is stored beside the tensors."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    meta = {METADATA_KEY: json.dumps(metadata or {})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_weights_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of a sceneparse safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(METADATA_KEY, "{}")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    check_finite(state, path)
    return state, json.loads(raw)


def check_finite(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """CheckpointError naming the tensors that hold NaN or infinity: such weights give NaN outputs
    (often only on some images), so they are refused where they are read, not found later."""
    bad = [key for key, value in state.items()
           if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values ({shown}); the run that "
                              "wrote it diverged: use an earlier checkpoint")


def detect_format(state: Mapping[str, torch.Tensor]) -> str:
    """Which toolbox wrote this state dict, from its key names."""
    keys = list(state)
    if any(k.startswith("backbone_net.") for k in keys):
        return "sssegmentation"
    if any(k.startswith(("decode_head.conv_seg.", "auxiliary_head.")) for k in keys):
        return "mmseg"
    return "sceneparse"


def load_weights(model: nn.Module, path: str | Path, model_name: str) -> dict[str, Any]:
    """Load `path` into `model` strictly; returns the file's metadata (empty for foreign files)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state, meta = load_weights_file(path)
    else:
        state, meta = read_torch_checkpoint(path), {}
        fmt = detect_format(state)
        if fmt == "mmseg":
            state = convert_mmseg(state, model_name)
        elif fmt == "sssegmentation":
            state = convert_ssseg(state, model_name)
        check_finite(state, path)
    load_state_strict(model, state, str(path))
    return meta
