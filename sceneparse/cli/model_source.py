"""The PRESET argument every command shares: a preset name, a TOML config, or a sceneparse checkpoint.

`load_model_source(text, overrides)` reads what the user gave and says (on stderr) which it read:

    pspnet_r50-d8_512x1024_40k_cityscapes          a preset, by any published name (mmseg 0.x / 1.x, ...)
    my_run.toml                                    a TOML config (`extends = "PRESET"`)
    runs/t1/iter_0000020.safetensors               the config embedded in a sceneparse checkpoint; its
                                                   weights are the default weights
    runs/t1                                        a work dir: its config.toml
    pspnet_r50-d8_512x1024_40k_cityscapes_20200605_003338-2966598c.pth
                                                   a published checkpoint, by its file name: its preset,
                                                   with the file as weights

Anything else (an ONNX export, another .pth, a .caffemodel, binary garbage) is a one-line error
that says what the file is and what to do with it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sceneparse.config import Preset, load_preset
from sceneparse.config.loader import deep_merge, from_dict, parse_overrides, to_dict, validate
from sceneparse.errors import CheckpointError, ConfigError

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
PRESET_HELP = "preset name, a .toml config, or a sceneparse .safetensors checkpoint (its embedded config)"


@dataclass(frozen=True)
class ModelSource:
    preset: Preset
    weights: str | None  # the checkpoint given in place of a preset, else None
    described: str  # what was read, for the user


def load_model_source(text: str, overrides: list[str] | tuple[str, ...] = (), announce: bool = True) -> ModelSource:
    """The preset (and default weights) `text` stands for; see the module docstring."""
    source = _read(str(text), list(overrides))
    if announce and source.described:
        print(f"sceneparse: using {source.described}", file=sys.stderr)
    return source


def _read(text: str, overrides: list[str]) -> ModelSource:
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _from_checkpoint(path, overrides)
    if path.is_dir():
        config = path / "config.toml"
        if not config.is_file():
            raise ConfigError(f"{path}: a folder without config.toml; pass a preset name, a .toml config or a "
                              "checkpoint file")
        preset = load_preset(config, overrides)
        return ModelSource(preset, None, f"the config of work dir {path} ({config})")
    if suffix in CHECKPOINT_SUFFIXES:
        return _from_published_file(path, overrides)
    if suffix == ".onnx":
        raise ConfigError(f"{path} is an ONNX export, not a preset: run it with `sceneparse infer {path} IMAGES` "
                          "(its metadata names the preset)")
    if suffix in (".caffemodel", ".npz"):
        fmt = "caffe" if suffix == ".caffemodel" else "chainercv"
        raise ConfigError(f"{path} is a {fmt} weights file, not a preset: convert it first with "
                          f"`sceneparse convert --from {fmt} {path} OUT.safetensors --preset PRESET`")
    if path.is_file() and suffix != ".toml" and not _is_text(path):
        raise ConfigError(f"{path}: binary data, not a preset; pass a preset name, a .toml config or a sceneparse "
                          f".safetensors checkpoint (`sceneparse inspect {path}` says what the file holds)")
    preset = load_preset(text, overrides)
    # a TOML file or preset name is what the user typed: only a published alias is worth a note
    aliased = not path.is_file() and preset.name != text
    return ModelSource(preset, None, f"preset {preset.name} (published as {text})" if aliased else "")


def _from_checkpoint(path: Path, overrides: list[str]) -> ModelSource:
    from sceneparse.segmenter import preset_from_weights

    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    preset = preset_from_weights(path)
    if overrides:
        source = f"{path} with --set"
        preset = from_dict(Preset, deep_merge(to_dict(preset), parse_overrides(overrides)), source=source)
        validate(preset, source)
    return ModelSource(preset, str(path), f"the config embedded in {path} (preset {preset.name})")


def _from_published_file(path: Path, overrides: list[str]) -> ModelSource:
    from sceneparse.config.names import preset_for_checkpoint

    name = preset_for_checkpoint(path)
    if not name:
        raise ConfigError(f"{path} is a PyTorch checkpoint, not a preset: name the preset and pass --weights {path} "
                          f"(mmsegmentation / sssegmentation files load directly), or `sceneparse convert` it; "
                          f"`sceneparse inspect {path}` says what it holds")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    preset = load_preset(name, overrides)
    return ModelSource(preset, str(path), f"preset {name} (named by the checkpoint file {path.name})")


def _is_text(path: Path) -> bool:
    """Whether the file's start decodes as UTF-8 (a TOML config) rather than binary data."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the end of the block
    return True
