"""Weight converters from the peers' checkpoint formats; one file per source format.

`convert_checkpoint(fmt, src, preset)` is the one entry point: it reads the file safely (tensors
only: `torch.load(weights_only=True)`, `np.load(allow_pickle=False)`, protobuf), renames every key
through the format's explicit map, checks each tensor's shape against the preset's model and loads
it strictly, so that a missing, unexpected or misshapen tensor is an error that names it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from sceneparse.config.schema import Preset
from sceneparse.convert.common import fill_batchnorm_counters, load_state_strict, read_torch_checkpoint
from sceneparse.errors import CheckpointError

FORMATS = ("mmseg", "sssegmentation", "semseg", "caffe", "chainercv", "sceneparse")
NO_AUX_HEAD = ("caffe", "chainercv")  # released for inference only: no auxiliary head in the files


def read_and_rename(fmt: str, src: Path, preset: Preset, prototxt: Path | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under sceneparse's names, before any check against the model."""
    name = preset.model.name
    if fmt == "mmseg":
        from sceneparse.convert.mmseg import convert_mmseg

        return convert_mmseg(read_torch_checkpoint(src), name)
    if fmt == "sssegmentation":
        from sceneparse.convert.ssseg import convert_ssseg

        return convert_ssseg(read_torch_checkpoint(src), name)
    if fmt == "semseg":
        from sceneparse.convert.semseg import convert_semseg

        return convert_semseg(read_torch_checkpoint(src), name)
    if fmt == "chainercv":
        from sceneparse.convert.chainercv import convert_chainercv, read_npz

        _require_pspnet(fmt, preset)
        return convert_chainercv(read_npz(src), list(preset.model.decode_head.pool_scales))
    if fmt == "caffe":
        from sceneparse.convert.caffe import convert_caffe

        _require_pspnet(fmt, preset)
        return convert_caffe(src, preset, prototxt)
    if fmt == "sceneparse":
        if src.suffix == ".safetensors":
            from sceneparse.weights import load_weights_file

            return load_weights_file(src)[0]
        return read_torch_checkpoint(src)
    raise CheckpointError(f"unknown weights format {fmt!r}; known formats: {', '.join(FORMATS)}")


def _require_pspnet(fmt: str, preset: Preset) -> None:
    if preset.model.name != "pspnet":
        raise CheckpointError(f"{fmt} weights are PSPNets; preset {preset.name!r} builds a {preset.model.name}")


def convert_checkpoint(fmt: str, src: Path, preset: Preset, prototxt: Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of `preset`'s model holding the weights of `src`, a checkpoint in format `fmt`.

    Raises CheckpointError naming the file and every missing, unexpected or misshapen tensor when the
    checkpoint does not fit the preset's model. `prototxt` (Caffe only) overrides the layer settings
    stored in the `.caffemodel` (BN eps, pooling windows, concat order).
    """
    from sceneparse.models import build_segmentor

    src = Path(src)
    if not src.is_file():
        raise CheckpointError(f"{src}: no such checkpoint file")
    if prototxt is not None and fmt != "caffe":
        raise CheckpointError(f"--prototxt is for Caffe models only, not {fmt}")
    if fmt in NO_AUX_HEAD and preset.model.aux_head.enabled:
        raise CheckpointError(
            f"{src}: {fmt} PSPNets carry no auxiliary head but preset {preset.name!r} has one; use a preset "
            "with model.aux_head.enabled = false (or --set model.aux_head.enabled=false)")
    state = read_and_rename(fmt, src, preset, prototxt)
    model = build_segmentor(preset.model)
    state = fill_batchnorm_counters(state, model)
    load_state_strict(model, state, f"{src} ({fmt})")
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


__all__ = ["FORMATS", "convert_checkpoint"]
