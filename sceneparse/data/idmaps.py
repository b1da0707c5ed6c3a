"""Source-id -> training-id tables for the raw releases that `sceneparse data prepare` converts.

Each table is built as a lookup array (`lut[source_id] = train_id`), so converting a label image is
one vectorised indexing step (`apply_lut`). Ids that a release may contain but that are not among
the training classes map to the dataset's "unlabelled" value (255, or 0 where the converted
labels keep 0 = unlabelled and are read with reduce_zero_label).
"""
from __future__ import annotations

import numpy as np

# Cityscapes (cityscapesScripts' labels.py): (name, labelId, trainId); trainId 255 = not trained on.
# "license plate" (labelId -1) never appears in the *_labelIds.png files and is left out.
CITYSCAPES_LABELS: tuple[tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255),
    ("out of roi", 3, 255), ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255),
    ("road", 7, 0), ("sidewalk", 8, 1), ("parking", 9, 255), ("rail track", 10, 255),
    ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4), ("guard rail", 14, 255),
    ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9),
    ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14),
    ("bus", 28, 15), ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16),
    ("motorcycle", 32, 17), ("bicycle", 33, 18),
)
CITYSCAPES_NUM_LABEL_IDS = 34

# COCO-Stuff: ids 1..182 (1-91 things, 92-182 stuff). These eleven thing ids are unused by COCO,
# which leaves 171 classes; a class's train id is its rank among the used ids.
COCO_STUFF_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
COCO_STUFF_NUM_IDS = 182

# Pascal Context: the ids, in the full 459-class list (labels.txt, 1-based, alphabetical), of the
# 59 classes of the standard benchmark. Sorted, so their rank + 1 is the 60-class training id.
CONTEXT_59_SOURCE_IDS = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113,
    115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326,
    347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458,
)
CONTEXT_NUM_SOURCE_IDS = 460  # 0 (unlabelled) and the 459 classes


def cityscapes_lut() -> np.ndarray:
    """labelIds (0..33) -> trainIds (0..18, 255 = void); anything else -> 255."""
    lut = np.full(256, 255, dtype=np.uint8)
    for _name, label_id, train_id in CITYSCAPES_LABELS:
        lut[label_id] = train_id
    return lut


def coco_stuff_used_ids() -> list[int]:
    """The 171 used COCO-Stuff ids (1-based), in train-id order."""
    return [i for i in range(1, COCO_STUFF_NUM_IDS + 1) if i not in COCO_STUFF_UNUSED_IDS]


def coco_stuff164k_lut() -> np.ndarray:
    """stuffthingmaps values (id - 1, i.e. 0..181; 255 unlabelled) -> train ids 0..170, 255 ignore."""
    lut = np.full(256, 255, dtype=np.uint8)
    for train_id, coco_id in enumerate(coco_stuff_used_ids()):
        lut[coco_id - 1] = train_id
    return lut


def coco_stuff10k_lut() -> np.ndarray:
    """10k .mat values (0 unlabelled, ids 1..182) -> 0 unlabelled, train id + 1 (1..171).

    As mmsegmentation's converter, the 10k PNGs keep 0 = unlabelled and are read with
    reduce_zero_label; unused or unknown ids become 0 too.
    """
    lut = np.zeros(65536, dtype=np.uint8)
    for train_id, coco_id in enumerate(coco_stuff_used_ids()):
        lut[coco_id] = train_id + 1
    return lut


def pascal_context_lut() -> np.ndarray:
    """Full 459-class ids -> 60-class ids: the 59 benchmark classes 1..59, everything else 0."""
    lut = np.zeros(65536, dtype=np.uint8)
    for rank, source_id in enumerate(CONTEXT_59_SOURCE_IDS):
        lut[source_id] = rank + 1
    return lut


def apply_lut(raw: np.ndarray, lut: np.ndarray, default: int) -> np.ndarray:
    """Map every value of `raw` through `lut`; values outside the table become `default`."""
    raw = np.asarray(raw)
    if raw.dtype.kind == "u" and np.iinfo(raw.dtype).max < len(lut):
        return lut[raw]
    values = raw.astype(np.int64)
    inside = (values >= 0) & (values < len(lut))
    out = np.full(raw.shape, default, dtype=lut.dtype)
    out[inside] = lut[values[inside]]
    return out
