"""What every converter shares: safe reading, explicit key maps, strict loading with named errors."""
from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sceneparse.errors import CheckpointError

KeyRule = tuple[str, str]  # (regex on the source key, replacement), applied in order, first match wins


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without terminal colour codes (torch adds some)."""
    text = ANSI_ESCAPE.sub("", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_checkpoint_object(path: str | Path) -> Any:
    """Everything a `.pth` file holds, reading tensors and plain data only; nothing in it is run.

    Weights-only files load with `torch.load(weights_only=True)`. Training checkpoints that pickle
    other objects (mmengine's message hub, numpy arrays, ...) are read again through
    `sceneparse.convert.restricted_pickle`: those objects come back as inert placeholders, and a
    file naming code to run (os.system, eval, subprocess, ...) is refused.
    """
    from sceneparse.convert import restricted_pickle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: the outcome is what counts
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # more than tensors: read it again without running anything
    except Exception as exc:  # RuntimeError for corrupt zips, EOFError, ...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: refused or unreadable ({_first_line(exc)}). Pickled code is never run; tensors, plain "
            "data and inert stand-ins for other objects are all that is read."
        ) from None


def read_torch_checkpoint(path: str | Path, envelope_keys: Sequence[str] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """The state dict of a `.pth` file (read by `read_checkpoint_object`: nothing in it is run).

    The checkpoint envelopes of the peers (mmsegmentation's `{"meta", "state_dict"}`, mmengine's
    `{"meta", "state_dict", "message_hub", "optimizer", ...}`, sssegmentation's `{"model", ...}`) are
    unwrapped.
    """
    path = Path(path)
    obj = read_checkpoint_object(path)
    if isinstance(obj, Mapping):
        for key in envelope_keys:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    return dict(obj)


def rename_keys(state: Mapping[str, torch.Tensor], rules: Sequence[KeyRule],
                drop: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Rename every key by the first matching rule (unmatched keys stay as they are); `drop` regexes are removed.

    Nothing is dropped silently: only keys matching an explicit `drop` pattern disappear, and
    `load_state_strict` reports anything left over.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    dropped = [re.compile(p) for p in drop]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if any(p.search(key) for p in dropped):
            continue
        new = key
        for pattern, repl in compiled:
            if pattern.search(key):
                new = pattern.sub(repl, key)
                break
        if new in out:
            raise CheckpointError(f"two source keys map to '{new}' (the second is '{key}')")
        out[new] = value
    return out


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load every tensor into `model` or fail naming each missing, unexpected or misshapen key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshapen:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:8])}"
                         + (" ..." if len(unexpected) > 8 else ""))
        if misshapen:
            parts.append(f"misshapen {len(misshapen)}: {'; '.join(misshapen[:8])}")
        raise CheckpointError(
            f"{source} does not fit the model ({'; '.join(parts)}). Check that the preset matches the "
            "checkpoint (depth, classes, mask size, aux head width)."
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def fill_batchnorm_counters(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Add a zero `num_batches_tracked` for each BatchNorm whose statistics the checkpoint carries.

    The counter is bookkeeping, not a weight: Caffe, Chainer and PyTorch before 0.4.1 never saved it.
    Only counters of BatchNorms present in `state` are added, so a missing layer is still reported.
    """
    out = dict(state)
    for key in model.state_dict():
        stats = key.removesuffix("num_batches_tracked") + "running_mean"
        if key.endswith(".num_batches_tracked") and key not in out and stats in out:
            out[key] = torch.zeros((), dtype=torch.long)
    return out
