"""Checkpoints of a run: weights in safetensors, the training state beside them, a manifest on top.

A work dir holds, per checkpoint `iter_0004000`:

    iter_0004000.safetensors   the model weights (loadable by `build_model(preset, weights=...)`)
    iter_0004000.state.pt      iteration, epoch, optimizer/scheduler/grad-scaler state, the RNG
                               states of every generator of every process, the config, the metrics
    checkpoints.json           the manifest: which checkpoints are complete, the latest, the best
    best.safetensors           the best checkpoint's weights (a hard link, or a copy), for `sceneparse test`

Every file is written to a temporary name and renamed (`sceneparse.atomic.atomic_write`), and the
manifest is written last: a save killed at any moment leaves the previous manifest, which names
only complete files. The manifest also records each file's SHA-256, so `--resume` notices a
checkpoint damaged after it was written and falls back to the newest one that is intact. A save
that fails (a full disk) removes what it wrote of the new checkpoint. The state file is a plain
`torch.save` of tensors and containers, read back with `weights_only=True` (nothing is unpickled
but tensors, numbers and strings).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sceneparse import atomic
from sceneparse.atomic import file_sha256
from sceneparse.errors import CheckpointError
from sceneparse.weights import atomic_write, load_weights_file, save_weights

log = logging.getLogger(__name__)

MANIFEST = "checkpoints.json"
BEST_WEIGHTS = "best.safetensors"
NAME_PATTERN = re.compile(r"^iter_(\d+)$")


@dataclass(frozen=True)
class CheckpointFiles:
    """The two files of one checkpoint."""

    name: str
    weights: Path
    state: Path

    @property
    def iteration(self) -> int:
        match = NAME_PATTERN.match(self.name)
        return int(match.group(1)) if match else -1


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def files_of(work_dir: str | Path, name: str) -> CheckpointFiles:
    work_dir = Path(work_dir)
    return CheckpointFiles(name, work_dir / f"{name}.safetensors", work_dir / f"{name}.state.pt")


def read_manifest(work_dir: str | Path) -> dict[str, Any]:
    """{"checkpoints": [names, oldest first], "latest": name, "best": {"name", "metric", "value"}}."""
    path = Path(work_dir) / MANIFEST
    if not path.is_file():
        return {"checkpoints": [], "latest": None, "best": None, "sha256": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint manifest ({exc}); it is written atomically, so "
                              "this file was edited or copied incompletely") from exc
    manifest.setdefault("checkpoints", [])
    manifest.setdefault("latest", None)
    manifest.setdefault("best", None)
    manifest.setdefault("sha256", {})
    return manifest



def latest_checkpoint(work_dir: str | Path) -> CheckpointFiles | None:
    """The newest complete checkpoint of a work dir, or None when it has none."""
    name = read_manifest(work_dir)["latest"]
    return files_of(work_dir, name) if name else None


def best_checkpoint(work_dir: str | Path) -> CheckpointFiles | None:
    best = read_manifest(work_dir)["best"]
    return files_of(work_dir, best["name"]) if best else None


def save_checkpoint(
    work_dir: str | Path,
    iteration: int,
    model_state: dict[str, torch.Tensor],
    train_state: dict[str, Any],
    metadata: dict[str, Any],
    keep: int,
    best: dict[str, Any] | None = None,
) -> CheckpointFiles:
    """Write checkpoint `iteration` and update the manifest; keep the last `keep` (0: all) plus the best.

    `best`, when given, is {"metric": "mIoU", "value": 0.71} and makes this checkpoint the best one.
    """
    work_dir = Path(work_dir)
    files = files_of(work_dir, checkpoint_name(iteration))
    manifest = read_manifest(work_dir)
    try:
        save_weights(model_state, files.weights, metadata)
        atomic_write(files.state, lambda tmp: torch.save(train_state, tmp))
        sums = {"weights": file_sha256(files.weights), "state": file_sha256(files.state)}
        if best is not None:
            publish_best(work_dir, files)
    except BaseException:
        if files.name not in manifest["checkpoints"]:  # never leave half a checkpoint behind
            files.weights.unlink(missing_ok=True)
            files.state.unlink(missing_ok=True)
        raise
    names = [n for n in manifest["checkpoints"] if n != files.name] + [files.name]
    names.sort(key=lambda n: files_of(work_dir, n).iteration)
    if best is not None:
        manifest["best"] = {"name": files.name, **best}
    best_name = manifest["best"]["name"] if manifest["best"] else None
    if keep > 0:
        recent = names[-keep:]
        names = [n for n in names if n in recent or n == best_name]
    manifest["checkpoints"] = names
    manifest["latest"] = files.name
    manifest["sha256"] = {n: v for n, v in manifest["sha256"].items() if n in names} | {files.name: sums}
    atomic_write(work_dir / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2) + "\n"))
    remove_unlisted(work_dir, names)
    return files


def publish_best(work_dir: str | Path, files: CheckpointFiles) -> Path:
    """WORK_DIR/best.safetensors := the weights of `files`, replaced atomically (never half-written)."""
    target = Path(work_dir) / BEST_WEIGHTS

    def link_or_copy(tmp: str) -> None:
        try:
            os.link(files.weights, tmp)  # no second copy on disk; survives pruning of the iter_ file
        except OSError:  # file systems without hard links
            shutil.copyfile(files.weights, tmp)

    atomic_write(target, link_or_copy)
    return target


def remove_unlisted(work_dir: str | Path, keep_names: list[str]) -> None:
    """Delete checkpoint files the manifest no longer names: pruned ones and orphans of a killed save."""
    work_dir = Path(work_dir)
    for path in work_dir.glob("iter_*"):
        name = path.name.split(".")[0]
        if NAME_PATTERN.match(name) and name not in keep_names and path.suffix in (".safetensors", ".pt"):
            path.unlink(missing_ok=True)


def remove_stale_temporaries(work_dir: str | Path) -> int:
    """Delete the temporaries a killed save left behind, safetensors' own `.tmpXXXXXX` files included
    (only one training process writes a work dir)."""
    return atomic.remove_stale_temporaries(work_dir, rust_temporaries=True)


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The state file of a checkpoint, read with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such training state file (it sits beside the .safetensors weights)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, refused global, ...
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__}: {exc})") from exc


def verify_checkpoint(work_dir: str | Path, files: CheckpointFiles) -> None:
    """CheckpointError when a file of the checkpoint is missing or differs from what the manifest recorded."""
    recorded = read_manifest(work_dir)["sha256"].get(files.name, {})
    for part, path in (("weights", files.weights), ("state", files.state)):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        if part in recorded and file_sha256(path) != recorded[part]:
            raise CheckpointError(f"{path}: its SHA-256 differs from the one recorded when it was saved (damaged)")


def load_latest_good(work_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], CheckpointFiles] | None:
    """(weights, state, files) of the newest intact checkpoint of a work dir, or None when it has none.

    A damaged newer checkpoint (changed since it was saved, truncated, unreadable) is skipped with a
    warning naming it and the one used instead; CheckpointError when no checkpoint is intact.
    """
    work_dir = Path(work_dir)
    manifest = read_manifest(work_dir)
    names = list(manifest["checkpoints"])
    if manifest["latest"] and manifest["latest"] not in names:
        names.append(manifest["latest"])
    names.sort(key=lambda n: files_of(work_dir, n).iteration)
    damaged: list[str] = []
    for name in reversed(names):
        files = files_of(work_dir, name)
        try:
            verify_checkpoint(work_dir, files)
            weights, _ = load_weights_file(files.weights)
            state = load_train_state(files.state)
        except CheckpointError as exc:
            log.warning("checkpoint %s is damaged (%s); trying the previous one", name, exc)
            damaged.append(name)
            continue
        if damaged:
            log.warning("resuming from %s, the newest intact checkpoint (skipped the damaged %s)",
                        name, ", ".join(damaged))
        return weights, state, files
    if damaged:
        raise CheckpointError(f"{work_dir}: every checkpoint is damaged ({', '.join(damaged)}); "
                              "start a new run in another --work-dir")
    return None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], CheckpointFiles]:
    """(weights, training state, files) of a checkpoint: a work dir (its latest) or a `.safetensors` path."""
    path = Path(path)
    if path.is_dir():
        found = load_latest_good(path)
        if found is None:
            raise CheckpointError(f"{path}: no checkpoint in this work dir (no {MANIFEST})")
        return found
    else:
        name = path.name.removesuffix(".safetensors").removesuffix(".state.pt")
        files = files_of(path.parent, name)
    weights, _ = load_weights_file(files.weights)
    return weights, load_train_state(files.state), files
