"""Fine-tuning: start a run from a whole segmentation checkpoint (`train --load-from`, mmsegmentation's load_from).

The file may be in any format the converters read (sceneparse safetensors, mmsegmentation,
sssegmentation, semseg `.pth`; ChainerCV `.npz`); its tensors are renamed by the format's explicit
key map and loaded strictly. The one exception is the classifiers (the last 1x1 convolution of the
decode head and of the auxiliary head): a checkpoint trained on another number of classes keeps its
classifiers out and the model's freshly initialised ones stay, with a warning that says so. Any
other missing, extra or misshapen tensor is an error naming it. Only the weights are taken: the
optimizer, the schedule and the iteration start from zero (use --resume to continue a run).
"""
from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from sceneparse.config.schema import Preset
from sceneparse.convert import NO_AUX_HEAD, read_and_rename
from sceneparse.convert.common import fill_batchnorm_counters, load_state_strict, read_torch_checkpoint
from sceneparse.errors import CheckpointError
from sceneparse.weights import check_finite, detect_format

log = logging.getLogger(__name__)

CLASSIFIERS = ("decode_head.classifier.", "aux_head.classifier.")  # re-initialised for another class count


def checkpoint_format(path: Path) -> str:
    """The converter that reads `path`: by suffix, then (for .pth) by its key names."""
    if path.suffix == ".safetensors":
        return "sceneparse"
    if path.suffix == ".npz":
        return "chainercv"
    if path.suffix == ".caffemodel":
        raise CheckpointError(f"{path}: a Caffe model needs its prototxt; convert it first with `sceneparse convert "
                              "--from caffe ... --prototxt P` and pass the .safetensors to --load-from")
    state = read_torch_checkpoint(path)
    fmt = detect_format(state)
    if fmt == "sceneparse" and any(k.startswith("layer0.") for k in state):
        return "semseg"
    return fmt


def load_from(model: nn.Module, path: str | Path, preset: Preset) -> list[str]:
    """Load a whole segmentation checkpoint into `model`; returns the classifier keys left re-initialised."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (train.load_from / --load-from)")
    fmt = checkpoint_format(path)
    state = dict(read_and_rename(fmt, path, preset))
    check_finite(state, path)
    own = model.state_dict()
    reinitialised = []
    for key in [k for k in state if k.startswith(CLASSIFIERS)]:
        if key in own and state[key].shape != own[key].shape:
            reinitialised.append(key)
    if reinitialised:
        classes = {tuple(state[k].shape)[0] for k in reinitialised}
        log.warning("%s has %s classes, the model %d: its classifiers (%s) are re-initialised, everything else is "
                    "loaded", path, "/".join(str(c) for c in sorted(classes)), preset.model.num_classes,
                    ", ".join(sorted({k.rsplit('.', 1)[0] for k in reinitialised})))
        for key in reinitialised:
            state[key] = own[key]
    if fmt in NO_AUX_HEAD and not any(k.startswith("aux_head.") for k in state):
        aux = {k: v for k, v in own.items() if k.startswith("aux_head.")}
        if aux:
            log.warning("%s (%s) has no auxiliary head: the model's stays freshly initialised", path, fmt)
            state.update(aux)
    state = fill_batchnorm_counters(state, model)
    load_state_strict(model, state, f"{path} ({fmt} format, --load-from)")
    log.info("loaded %s (%s format) to fine-tune from", path, fmt)
    return reinitialised
