"""What the values of a prediction PNG mean, told from the files or given by the user (`--encoding`).

* `train_ids`: the dataset's training ids 0..C-1 (what `sceneparse test --save-pred` writes and
  mmsegmentation's `show_dir`), 255 where a model abstains (void).
* `label_ids`: Cityscapes labelIds 0..33, the benchmark server's format (`--cityscapes-format`,
  mmsegmentation's `format_only`); labels that are not evaluated are void.
* `one_based`: 1..C with 0 = "other", the format of datasets read with reduce_zero_label, e.g. the
  ADE20K SceneParsing benchmark (mmsegmentation's `format_only` for ADE20K); 0 is void.

Void predictions are scored as the official evaluators do: a false negative of the ground-truth
class, no class's false positive. Detection reads the predictions' values: a value that only one
encoding can hold decides (Cityscapes labelIds 19..33; ADE20K's 150); a set that both could hold is
an error asking for `--encoding`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sceneparse.data.files import read_label
from sceneparse.data.idmaps import cityscapes_lut
from sceneparse.data.registry import DatasetInfo
from sceneparse.errors import DataError
from sceneparse.evaluation.cityscapes import CITYSCAPES_LIKE, train_to_label_ids

AUTO, TRAIN_IDS, LABEL_IDS, ONE_BASED = "auto", "train_ids", "label_ids", "one_based"
ENCODINGS = (AUTO, TRAIN_IDS, LABEL_IDS, ONE_BASED)
VOID = 255

# Cityscapes: values only training ids hold (labelIds of classes that are never predicted: void
# labels 1..6, parking, rail track, guard rail, bridge, tunnel, polegroup), and 255.
_TRAIN_ONLY = (1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, VOID)


def encodings_for(info: DatasetInfo) -> tuple[str, ...]:
    """The encodings a prediction of `info` may be in."""
    if info.name in CITYSCAPES_LIKE:
        return TRAIN_IDS, LABEL_IDS
    if info.reduce_zero_label:
        return TRAIN_IDS, ONE_BASED
    return (TRAIN_IDS,)


def check_encoding(info: DatasetInfo, encoding: str) -> None:
    if encoding != AUTO and encoding not in encodings_for(info):
        raise DataError(f"--encoding {encoding} does not apply to {info.name}; choose from "
                        f"{', '.join((AUTO, *encodings_for(info)))}")


def _largest(info: DatasetInfo, encoding: str) -> int:
    return {TRAIN_IDS: info.num_classes - 1, LABEL_IDS: 33, ONE_BASED: info.num_classes}[encoding]


def detect_encoding(info: DatasetInfo, paths: Sequence[Path], progress: bool = True) -> str:
    """The encoding of the prediction files `paths` (read until a value decides)."""
    allowed = encodings_for(info)
    if len(allowed) == 1:
        return allowed[0]
    decisive = 19 if LABEL_IDS in allowed else info.num_classes  # a value only the second encoding holds
    seen = np.zeros(256, dtype=bool)
    for path in tqdm(paths, desc="encoding", unit="image", disable=not progress, leave=False):
        values = np.unique(read_label(path))
        if values.size and (int(values.min()) < 0 or int(values.max()) > 255):
            raise DataError(f"{path}: predicted values up to {int(values.max())} are no class ids of {info.name}")
        seen[values] = True
        if seen[decisive: _largest(info, allowed[1]) + 1].any():
            return allowed[1]
    present = np.flatnonzero(seen).tolist()
    train_evidence = _TRAIN_ONLY if LABEL_IDS in allowed else (0, VOID)
    if any(seen[v] for v in train_evidence):
        return TRAIN_IDS
    raise DataError(
        f"cannot tell the encoding of the {len(paths)} predictions (values {present[:12]} fit both "
        f"{allowed[0]} and {allowed[1]}); pass --encoding {allowed[0]} or --encoding {allowed[1]}"
    )


def to_train_ids(raw: np.ndarray, encoding: str, info: DatasetInfo, path: Path) -> np.ndarray:
    """Prediction values -> training ids, void as 255; values the encoding cannot hold are an error."""
    raw = np.asarray(raw).astype(np.int64)
    largest = _largest(info, encoding)
    bad = (raw < 0) | ((raw > largest) & (raw != VOID))
    if bad.any():
        values = np.unique(raw[bad])[:10].tolist()
        raise DataError(f"{path}: predicted values {values} are not {encoding} of {info.name} (0..{largest}, "
                        f"{VOID} = void); pass the right --encoding")
    if encoding == LABEL_IDS:
        return cityscapes_lut()[raw.astype(np.uint8)].astype(np.int64)
    if encoding == ONE_BASED:
        return np.where((raw == 0) | (raw == VOID), VOID, raw - 1)
    return raw


def to_label_ids(raw: np.ndarray, encoding: str) -> np.ndarray:
    """A Cityscapes prediction as labelIds, for the official metrics (labelIds are kept as they are)."""
    if encoding == LABEL_IDS:
        return np.asarray(raw)
    return train_to_label_ids()[np.clip(np.asarray(raw), 0, 255).astype(np.uint8)]
