"""A user's own dataset, described by a small TOML file instead of code.

    # classes.toml (next to images/ and labels/, or anywhere: data.custom_classes_file)
    classes = ["background", "road", "car"]      # index i in the label PNGs is classes[i]
    palette = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional, for figures
    ignore_index = 255                           # optional: the stored value of unscored pixels
    reduce_zero_label = false                    # optional: true if 0 means "other" and class i is stored as i + 1

Layout: images/<split>/NAME.jpg|png + labels/<split>/NAME.png, or flat images/ and labels/ with
splits/<split>.txt listing the NAMEs of each split.
"""
from __future__ import annotations

import json
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from sceneparse.data.classes import voc_colormap
from sceneparse.data.files import write_text
from sceneparse.data.registry import CUSTOM_LAYOUT, CUSTOM_SPLITS, DatasetInfo
from sceneparse.errors import DataError

_KEYS = {"classes", "palette", "ignore_index", "reduce_zero_label", "name"}


def load_custom_info(classes_file: str | Path) -> DatasetInfo:
    """Read the classes TOML into a DatasetInfo; every mistake names the file and the key."""
    path = Path(classes_file).expanduser()
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: classes file not found (a TOML with `classes = [...]`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from None

    unknown = set(table) - _KEYS
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KEYS))}")
    classes = table.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise DataError(f"{path}: `classes` must be a non-empty list of names, e.g. classes = [\"background\", \"car\"]")
    if len(set(classes)) != len(classes):
        raise DataError(f"{path}: `classes` names a class twice")

    ignore_index = table.get("ignore_index", 255)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or not 0 <= ignore_index < 65536:
        raise DataError(f"{path}: `ignore_index` must be an integer 0..65535, got {ignore_index!r}")
    if 0 <= ignore_index < len(classes):
        raise DataError(f"{path}: `ignore_index` = {ignore_index} is also a class index (classes 0..{len(classes) - 1})")
    reduce_zero_label = table.get("reduce_zero_label", False)
    if not isinstance(reduce_zero_label, bool):
        raise DataError(f"{path}: `reduce_zero_label` must be true or false")

    palette = table.get("palette")
    if palette is None:
        colours = voc_colormap(len(classes))
    else:
        ok = isinstance(palette, list) and len(palette) == len(classes) and all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette
        )
        if not ok:
            raise DataError(f"{path}: `palette` must list one [r, g, b] (0..255) per class ({len(classes)})")
        colours = tuple(tuple(c) for c in palette)

    return DatasetInfo(
        name="custom",
        title=str(table.get("name", f"custom dataset ({path.name})")),
        classes=tuple(classes),
        palette=colours,
        layout=CUSTOM_LAYOUT,
        split_dirs=CUSTOM_SPLITS,
        ignore_index=ignore_index,
        reduce_zero_label=reduce_zero_label,
    )


def write_classes_toml(path: str | Path, classes: list[str], palette: list[tuple[int, int, int]] | None = None,
                       ignore_index: int = 255, reduce_zero_label: bool = False) -> None:
    """Write a classes TOML (used by `data synth custom`; handy as a template)."""
    lines = [f"classes = [{', '.join(json.dumps(c) for c in classes)}]"]
    if palette is not None:
        lines.append(f"palette = [{', '.join(f'[{r}, {g}, {b}]' for r, g, b in palette)}]")
    lines.append(f"ignore_index = {ignore_index}")
    lines.append(f"reduce_zero_label = {'true' if reduce_zero_label else 'false'}")
    write_text(path, "\n".join(lines) + "\n")
