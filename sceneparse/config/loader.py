"""TOML <-> typed dataclasses, with errors that name the key and the file.

Preset files (`sceneparse/presets/*.toml`) hold two kinds of tables:

    [recipes.NAME]            shared settings, e.g. a dataset's training recipe
    [presets.NAME]            one published row; `extends = ["recipe", ...]` lists recipes applied in order

A user's own TOML file is one preset at top level (`[model]`, `[data]`, ...), optionally with
`extends = "PRESET_NAME"` to start from a registered preset. Values merge as nested dicts (a later
table wins, lists are replaced), then are checked against `sceneparse.config.schema`.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from sceneparse.config.schema import Preset
from sceneparse.config.validate import validate_values
from sceneparse.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


# ---------------------------------------------------------------- dict -> dataclass


def from_dict(cls: type, data: dict[str, Any], where: str = "", source: str = "") -> Any:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{_loc(source, where)}: expected a table, got {data!r}")
    hints = _type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{_loc(source, _join(where, key))}: unknown key; known keys here: {known}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(hints[key], value, _join(where, key), source)
    obj = cls(**kwargs)
    if cls is Preset:  # wherever a whole config is read (presets, files, checkpoints' metadata)
        validate_values(obj, source)
    return obj


def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, source)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where, source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{_loc(source, where)}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_loc(source, where)}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_loc(source, where)}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_loc(source, where)}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_loc(source, where)}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{_loc(source, where)}: unsupported type {tp}")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _loc(source: str, where: str) -> str:
    return f"{source}: key '{where}'" if source else f"key '{where}'"


# ---------------------------------------------------------------- dataclass -> dict / TOML


def to_dict(obj: Any) -> dict[str, Any]:
    """The dataclass as nested dicts (None values left out, as TOML has no null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(dataclasses.asdict(obj))


def dumps_toml(data: dict[str, Any]) -> str:
    """A minimal TOML writer for config dicts: scalars and lists first, then sub-tables."""
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"\n[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, sub in tables.items():
            emit(sub, f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key))

    emit(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


# ---------------------------------------------------------------- merging and overrides


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `update` over `base`, merging nested tables; lists and scalars are replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["train.lr=0.02", "data.crop_size=[256,256]"]` -> nested dict. Values are TOML; bare words are strings."""
    result: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=0.02")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


# ---------------------------------------------------------------- the preset registry


@functools.cache
def _preset_tables() -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    """All recipes and presets of the package, with the file each came from."""
    recipes: dict[str, dict] = {}
    presets: dict[str, dict] = {}
    origin: dict[str, str] = {}
    for path in sorted(PRESET_DIR.glob("*.toml")):
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        unknown = set(doc) - {"recipes", "presets"}
        if unknown:
            raise ConfigError(f"{path}: unknown top-level tables {sorted(unknown)}; use [recipes.X] or [presets.X]")
        for kind, store in (("recipes", recipes), ("presets", presets)):
            for name, table in doc.get(kind, {}).items():
                if name in store:
                    raise ConfigError(f"{path}: {kind[:-1]} '{name}' is defined twice (also in {origin[kind + name]})")
                store[name] = table
                origin[kind + name] = path.name
    return recipes, presets, origin


def preset_names() -> list[str]:
    """Every registered preset name, sorted."""
    return sorted(_preset_tables()[1])


@functools.cache
def preset_aliases() -> dict[str, str]:
    """The source library's own config names (e.g. mmsegmentation 1.x names) -> preset names."""
    _, presets, _ = _preset_tables()
    aliases = {}
    for name, table in presets.items():
        alias = table.get("published", {}).get("source_config", "")
        if alias and alias != name and alias not in presets:
            aliases.setdefault(alias, name)
    return aliases


def _resolve_registered(name: str) -> dict[str, Any]:
    from sceneparse.config.names import resolve_name  # published names (mmseg 0.x / 1.x, checkpoint files)

    recipes, presets, origin = _preset_tables()
    name = resolve_name(name) or name
    if name not in presets:
        close = [p for p in presets if name.lower() in p.lower()][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else "; `sceneparse presets` lists them"
        raise ConfigError(f"unknown preset '{name}'{hint}")
    table = dict(presets[name])
    merged: dict[str, Any] = {}
    for recipe in _as_list(table.pop("extends", [])):
        if recipe not in recipes:
            raise ConfigError(f"{origin['presets' + name]}: preset '{name}' extends unknown recipe '{recipe}'")
        merged = deep_merge(merged, recipes[recipe])
    merged = deep_merge(merged, table)
    merged["name"] = name
    return merged


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def load_preset(name_or_path: str | Path, overrides: Iterable[str] = ()) -> Preset:
    """A registered preset by name, or a user TOML file; `overrides` are `KEY=VALUE` strings."""
    path = Path(name_or_path)
    source = str(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8, "
                              "as TOML requires") from None
        base = doc.pop("extends", None)
        if base is not None and not (isinstance(base, str) and base):
            raise ConfigError(f"{path}: key 'extends' must be one preset name (a string, e.g. extends = "
                              f"\"pspnet_r50-d8_512x1024_40k_cityscapes\"), got {base!r}")
        data = _resolve_registered(base) if base else {}
        data = deep_merge(data, doc)
        data["name"] = doc.get("name", path.stem)
    else:
        data = _resolve_registered(str(name_or_path))
        source = f"preset '{name_or_path}'"
    overrides = list(overrides)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        source += " with --set"
    preset = from_dict(Preset, data, source=source)
    validate(preset, source)
    return preset


def validate(preset: Preset, source: str = "") -> None:
    """Checks that span several fields; single-field types are checked by `from_dict`."""
    t = preset.train
    if (t.max_iters > 0) == (t.max_epochs > 0):
        raise ConfigError(f"{source}: set exactly one of train.max_iters and train.max_epochs")
    if preset.model.backbone.output_stride not in (8, 16, 32):
        raise ConfigError(f"{source}: model.backbone.output_stride must be 8, 16 or 32")
    if preset.test.mode not in ("whole", "slide"):
        raise ConfigError(f"{source}: test.mode must be 'whole' or 'slide'")
    if len(preset.data.crop_size) != 2:
        raise ConfigError(f"{source}: data.crop_size must be [height, width]")
    validate_values(preset, source)
    if preset.data.pipeline not in ("mmseg", "ssseg", "semseg", "chainercv"):
        raise ConfigError(f"{source}: data.pipeline must be 'mmseg', 'ssseg', 'semseg' or 'chainercv', "
                          f"not {preset.data.pipeline!r}")
