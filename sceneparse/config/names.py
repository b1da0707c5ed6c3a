"""Published names -> preset names: the sources' config names and checkpoint file names.

A user arrives with whatever name the source printed: a preset name (the tables' config names),
an mmsegmentation 1.x config name (`pspnet_r50-d8_4xb2-40k_cityscapes-512x1024`), its 0.x
name (`pspnet_r50-d8_512x1024_40k_cityscapes`), or a checkpoint file
(`pspnet_r50-d8_512x1024_40k_cityscapes_20200605_003338-2966598c.pth`). Every one of them
resolves to one preset here.

mmsegmentation renamed its configs in 1.0 by one rule (docs/en/migration, "config names"):

    0.x  {arch}_{crop}[_4x4]_{schedule}_{dataset}            pspnet_r50-d8_512x1024_40k_cityscapes
    1.x  {arch}_{gpus}xb{batch}-{schedule}_{dataset}-{crop}   pspnet_r50-d8_4xb2-40k_cityscapes-512x1024

with `pascal_context(_59)` spelt `pascal-context(-59)` in 1.x, and the models trained on
Cityscapes but scored on Dark Zurich / Nighttime Driving named
`{cityscapes 0.x name without the dataset}_dark` / `_night_driving` in 0.x and
`{cityscapes 1.x name}_dark-zurich-1920x1080` / `_night-driving-1920x1080` in 1.x.
`tests/test_cli_names.py` checks these rules against mmsegmentation's own metafiles.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

V1_NAME = re.compile(
    r"^(?P<arch>[a-z]+_[a-z0-9-]+)_(?P<gpus>\d+)xb(?P<batch>\d+)-(?P<schedule>\d+k)_"
    r"(?P<dataset>[a-z0-9-]+?)-(?P<crop>\d+x\d+)(?:_(?P<target>dark-zurich|night-driving)-1920x1080)?$")
V0_NAME = re.compile(
    r"^(?P<arch>[a-z]+_[a-z0-9-]+)_(?P<crop>\d+x\d+)(?P<four>_4x4)?_(?P<schedule>\d+k)_"
    r"(?P<dataset>[a-z0-9_-]+)$")
# mmsegmentation's checkpoint files: <0.x config name>_<date>_<time>-<sha256[:8]>.pth
CHECKPOINT_SUFFIX = re.compile(r"[_-]\d{8}_\d{6}(?:-[0-9a-f]{8})?$")

# 1.x dataset spelling -> 0.x spelling, where they differ
_V1_TO_V0_DATASET = {"pascal-context": "pascal_context", "pascal-context-59": "pascal_context_59"}
_V0_TO_V1_DATASET = {v: k for k, v in _V1_TO_V0_DATASET.items()}
_TARGETS = {"dark-zurich": "dark", "night-driving": "night_driving"}  # 1.x suffix -> 0.x dataset word
# the total batch of a 0.x config, which its name leaves out: 4 GPUs x 2 on Cityscapes, 4 x 4 elsewhere
_V0_BATCH = {"cityscapes": "4xb2"}


def mmseg_v0_name(v1: str) -> str:
    """The mmsegmentation 0.x config name of a 1.x name ("" when `v1` is not one)."""
    m = V1_NAME.match(v1)
    if not m:
        return ""
    arch, crop, schedule, dataset = m["arch"], m["crop"], m["schedule"], m["dataset"]
    if m["target"]:
        return f"{arch}_{crop}_{schedule}_{_TARGETS[m['target']]}"
    four = "_4x4" if dataset.startswith("coco-stuff") else ""
    return f"{arch}_{crop}{four}_{schedule}_{_V1_TO_V0_DATASET.get(dataset, dataset)}"


def mmseg_v1_name(v0: str) -> str:
    """The mmsegmentation 1.x config name of a 0.x name ("" when `v0` is not one)."""
    m = V0_NAME.match(v0)
    if not m:
        return ""
    arch, crop, schedule, dataset = m["arch"], m["crop"], m["schedule"], m["dataset"]
    target = {v: k for k, v in _TARGETS.items()}.get(dataset)
    if target:
        return f"{arch}_{_V0_BATCH['cityscapes']}-{schedule}_cityscapes-{crop}_{target}-1920x1080"
    batch = _V0_BATCH.get(dataset, "4xb4")
    return f"{arch}_{batch}-{schedule}_{_V0_TO_V1_DATASET.get(dataset, dataset)}-{crop}"


def checkpoint_stem(file_name: str) -> str:
    """A checkpoint file's name without folder, suffix, date and hash: the config it was trained by."""
    stem = Path(file_name).name
    for suffix in (".pth", ".pt", ".safetensors", ".caffemodel", ".npz"):
        stem = stem.removesuffix(suffix)
    return CHECKPOINT_SUFFIX.sub("", stem)


@functools.cache
def published_names() -> dict[str, str]:
    """Every name a user may give -> its preset name (preset names map to themselves).

    Exact preset names come first; then each preset's `published.source_config`; then the
    mmsegmentation 0.x / 1.x twins of those (a name already taken is never re-pointed).
    """
    from sceneparse.config.loader import _preset_tables

    _, presets, _ = _preset_tables()
    names = {name: name for name in presets}

    def add(alias: str, preset: str) -> None:
        if alias:
            names.setdefault(alias, preset)

    for name, table in presets.items():
        add(table.get("published", {}).get("source_config", ""), name)
    for name, table in presets.items():
        published = table.get("published", {})
        if not _is_mmseg(table):
            continue
        for known in (name, published.get("source_config", "")):
            add(mmseg_v0_name(known), name)
            add(mmseg_v1_name(known), name)
    return names


def _is_mmseg(table: dict) -> bool:
    """An mmsegmentation row: built on an `mmseg_*` recipe, or with an OpenMMLab checkpoint."""
    extends = table.get("extends", [])
    recipes = [extends] if isinstance(extends, str) else list(extends)
    return any(r.startswith("mmseg") for r in recipes) or "openmmlab" in table.get("published", {}).get(
        "weights_url", "")


def resolve_name(name: str) -> str:
    """The preset a published name means ("" when none)."""
    return published_names().get(name.strip(), "")


@functools.cache
def _checkpoint_files() -> dict[str, str]:
    """Published checkpoint file name -> preset: the preset the weights were trained for.

    Dark Zurich / Nighttime Driving rows share their Cityscapes twin's file; the file names the
    Cityscapes preset, which is the exact-name match of its stem.
    """
    from sceneparse.config.loader import _preset_tables

    _, presets, _ = _preset_tables()
    files: dict[str, str] = {}
    for name, table in sorted(presets.items()):
        url = table.get("published", {}).get("weights_url", "")
        if not url:
            continue
        file_name = url.rsplit("/", 1)[-1]
        stem_preset = resolve_name(checkpoint_stem(file_name))
        if stem_preset:
            files[file_name] = stem_preset
        else:
            files.setdefault(file_name, name)
    return files


def preset_for_checkpoint(path: str | Path) -> str:
    """The preset a published checkpoint file was made for, from its name ("" when unknown)."""
    file_name = Path(path).name
    return _checkpoint_files().get(file_name) or resolve_name(checkpoint_stem(file_name))
