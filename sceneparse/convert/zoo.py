"""The model zoo: every published checkpoint the presets know, one row each.

Rows come from the presets' `published` tables: mmsegmentation's download links (whose file names
end in the first 8 hex digits of the file's SHA-256, checked on download), sssegmentation's model
store, ChainerCV's converted Cityscapes weights, and hszhao's semseg and Caffe PSPNet releases (on
Google Drive, without a direct link: download them by hand and `sceneparse convert` them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sceneparse.config import load_preset, preset_names
from sceneparse.config.filters import preset_matches
from sceneparse.config.schema import Preset

MANUAL_DOWNLOAD_SOURCES = ("semseg", "pspnet-caffe")  # released, but on Google Drive / Baidu only
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8})\.pth$")  # mmsegmentation: <config>_<date>-<sha256[:8]>.pth


@dataclass(frozen=True)
class ZooRow:
    preset: str
    model: str
    dataset: str
    source: str
    weights_format: str
    url: str  # "" when the release has no direct link
    mIoU: float | None
    sha256_prefix: str


def has_checkpoint(preset: Preset) -> bool:
    """Whether the preset's source published weights for it."""
    return bool(preset.published.weights_url) or preset.published.source in MANUAL_DOWNLOAD_SOURCES


def zoo_rows(source: str = "", dataset: str = "", model: str = "") -> list[ZooRow]:
    """One row per published checkpoint, sorted by preset name; filters match when empty.

    The filters match as `sceneparse presets`' do (`sceneparse.config.filters`: prefix or alias;
    `source` matches the source library "mmsegmentation" or the weights format "mmseg").
    """
    rows = []
    for name in preset_names():
        preset = load_preset(name)
        if not has_checkpoint(preset):
            continue
        p = preset.published
        if not preset_matches(preset, model, dataset, source):
            continue
        rows.append(ZooRow(name, preset.model.name, preset.data.dataset, p.source, p.weights_format,
                           p.weights_url, p.mIoU, p.sha256_prefix))
    return rows


def expected_sha256_prefix(url: str) -> str:
    """The SHA-256 prefix an mmsegmentation file name carries ("" for other names)."""
    m = HASH_IN_NAME.search(url)
    return m.group(1) if m else ""
