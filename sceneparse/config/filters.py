"""One matcher for the `--model`, `--dataset` and `--source` filters of `presets` and `zoo`.

A filter value matches by prefix, case and `-`/`_` aside ("psp" finds PSPNet, "ade" ADE20K,
"voc" the VOC 2012 aug rows, "mmseg" mmsegmentation), or through the aliases below for the
names the sources themselves use ("voc12aug", "pascal-context", "hszhao", ...). An empty value
matches everything.
"""
from __future__ import annotations

from sceneparse.config.schema import Preset

DATASET_ALIASES = {
    "voc12aug": "voc_aug", "voc2012": "voc_aug", "pascal_voc": "voc_aug", "context": "pascal_context",
    "coco": "coco_stuff", "dark": "dark_zurich", "nighttime_driving": "night_driving", "ade": "ade20k",
}
SOURCE_ALIASES = {"hszhao": "semseg", "openmmlab": "mmsegmentation", "ssseg": "sssegmentation"}


def _norm(text: str) -> str:
    return text.strip().lower().replace("-", "_")


def value_matches(query: str, candidates: tuple[str, ...], aliases: dict[str, str] | None = None) -> bool:
    """Whether `query` is a prefix of one of `candidates` (directly or through an alias)."""
    if not query:
        return True
    wanted = {_norm(query)}
    if aliases and _norm(query) in aliases:
        wanted.add(_norm(aliases[_norm(query)]))
    return any(_norm(c).startswith(w) for c in candidates if c for w in wanted)


def preset_matches(preset: Preset, model: str = "", dataset: str = "", source: str = "") -> bool:
    """The filters of `sceneparse presets` and `sceneparse zoo`, all of which must hold."""
    return (value_matches(model, (preset.model.name,))
            and value_matches(dataset, (preset.data.dataset,), DATASET_ALIASES)
            and value_matches(source, (preset.published.source, preset.published.weights_format), SOURCE_ALIASES))
