"""`sceneparse data synth NAME OUT_ROOT`: a small dataset in exactly NAME's on-disk layout.

The files are what the real release looks like on disk, in its raw encoding where `prepare`
converts (Cityscapes labelIds, SBD .mat, the full Pascal Context ids in .mat, COCO-Stuff 10k .mat
and 164k stuffthingmaps), so tests and the quickstart exercise the real readers and converters.
Nothing else in the project fakes a dataset.

Each image is a textured background with textured shapes laid out on a grid (no overlaps); the
texture (colour, stripe orientation and frequency) is a fixed function of the stored class id,
so classes are learnable. Across the whole set every source id of the release appears at least
once (all 34 Cityscapes labelIds, all 182 COCO-Stuff ids, ...), which is what converter tests need.

`n` is the number of images per split; `size` the image height (widths follow the dataset's
usual aspect). Output is reproducible for a given seed.
"""
from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sceneparse.data import idmaps
from sceneparse.data.classes import CITYSCAPES_PALETTE, voc_colormap
from sceneparse.data.custom import write_classes_toml
from sceneparse.data.files import write_jpeg, write_lines, write_mat, write_png
from sceneparse.data.parallel import parallel_map
from sceneparse.errors import DataError

IGNORE = 255


@dataclass(frozen=True)
class LabelOut:
    """One label file written for an image. kind: "png" (indices), "voc_png" (palette PNG),
    "cityscapes_color" (the release's *_color.png), "sbd_mat", "coco10k_mat", "context_mat"."""

    path: str
    kind: str
    outline: bool = True  # with the image's ignore outline (SBD .mat files have none)


@dataclass(frozen=True)
class ImageJob:
    seed: tuple[int, int]
    height: int
    width: int
    background: int  # stored id of the background
    shapes: tuple[int, ...]  # stored ids of the shapes
    image_path: str
    labels: tuple[LabelOut, ...]
    outline: int = 0  # width of an ignore (255) band around shapes: VOC's void borders, coarse labels
    dark: bool = False  # night-time sets


# ---------------------------------------------------------------- drawing


# The R4 low-discrepancy sequence (Roberts' generalised golden ratio): consecutive ids land far
# apart in (hue, value, stripe angle, stripe frequency), so the first classes of every dataset
# (VOC's 21, Cityscapes' 19) differ in colour *and* texture; random draws gave near-twins.
_R4_ROOT = 1.1673039782614187  # the real root of x**5 = x + 1
_R4_STEPS = tuple(_R4_ROOT ** -(i + 1) for i in range(4))


def _style(class_id: int) -> tuple[np.ndarray, float, float]:
    """The texture of a class: a colour, a stripe angle and a stripe frequency (rad/pixel)."""
    hue, value, angle, freq = ((0.5 + class_id * step) % 1.0 for step in _R4_STEPS)
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.35 + 0.55 * value)) * 255.0
    return colour, angle * np.pi, 0.3 + 1.0 * freq


def paint(job: ImageJob) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 image, HxW int32 label of stored ids, without outline)."""
    rng = np.random.default_rng(job.seed)
    h, w = job.height, job.width
    label = np.full((h, w), job.background, dtype=np.int32)
    count = len(job.shapes)
    cols = max(1, round(math.sqrt(count * w / h)))
    rows = math.ceil(count / cols)
    cell_h, cell_w = h / rows, w / cols
    cells = rng.permutation(rows * cols)[:count]
    for class_id, cell in zip(job.shapes, cells, strict=True):
        row, col = divmod(int(cell), cols)
        sh, sw = cell_h * rng.uniform(0.55, 0.95), cell_w * rng.uniform(0.55, 0.95)
        cy = row * cell_h + rng.uniform(sh / 2, cell_h - sh / 2)
        cx = col * cell_w + rng.uniform(sw / 2, cell_w - sw / 2)
        y0, y1 = max(0, int(cy - sh / 2)), min(h, math.ceil(cy + sh / 2))
        x0, x1 = max(0, int(cx - sw / 2)), min(w, math.ceil(cx + sw / 2))
        v = (np.arange(y0, y1)[:, None] + 0.5 - cy) / (sh / 2)  # -1..1 over the shape's box
        u = (np.arange(x0, x1)[None, :] + 0.5 - cx) / (sw / 2)
        kind = rng.integers(3)
        if kind == 0:
            mask = (np.abs(u) <= 1) & (np.abs(v) <= 1)  # rectangle
        elif kind == 1:
            mask = u**2 + v**2 <= 1  # ellipse
        else:
            mask = (np.abs(u) <= (v + 1) / 2) & (v <= 1)  # triangle, apex up
        mask[min(int(cy) - y0, y1 - y0 - 1), min(int(cx) - x0, x1 - x0 - 1)] = True  # never empty
        label[y0:y1, x0:x1][mask] = class_id

    ids, inverse = np.unique(label, return_inverse=True)
    styles = [_style(i) for i in ids]
    colours = np.array([s[0] for s in styles], dtype=np.float32)[inverse.reshape(h, w)]
    angles = np.array([s[1] for s in styles], dtype=np.float32)[inverse.reshape(h, w)]
    freqs = np.array([s[2] for s in styles], dtype=np.float32)[inverse.reshape(h, w)]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    stripes = np.sin(freqs * (xx * np.cos(angles) + yy * np.sin(angles)))
    image = colours + 40.0 * stripes[..., None] + rng.normal(0, 8, size=(h, w, 3)).astype(np.float32)
    image *= rng.uniform(0.85, 1.15) * (0.4 if job.dark else 1.0)
    return np.clip(image, 0, 255).astype(np.uint8), label


def add_outline(label: np.ndarray, width: int) -> np.ndarray:
    """Mark a band of `width` pixels along every region boundary as ignore (VOC-style void borders)."""
    edge = np.zeros(label.shape, dtype=bool)
    edge[:-1, :] |= label[:-1, :] != label[1:, :]
    edge[1:, :] |= label[:-1, :] != label[1:, :]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    edge[:, 1:] |= label[:, :-1] != label[:, 1:]
    for _ in range(width - 1):
        grown = edge.copy()
        grown[:-1, :] |= edge[1:, :]
        grown[1:, :] |= edge[:-1, :]
        grown[:, :-1] |= edge[:, 1:]
        grown[:, 1:] |= edge[:, :-1]
        edge = grown
    out = label.copy()
    out[edge] = IGNORE
    return out


def _cityscapes_colour(label_ids: np.ndarray) -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(CITYSCAPES_PALETTE)] = CITYSCAPES_PALETTE
    return palette[idmaps.cityscapes_lut()[np.clip(label_ids, 0, 255)]]


def write_job(job: ImageJob) -> None:
    """Paint one image and write it with its label files."""
    image, label = paint(job)
    outlined = add_outline(label, job.outline) if job.outline else label
    if job.image_path.endswith(".jpg"):
        write_jpeg(job.image_path, image)
    else:
        write_png(job.image_path, image)
    for out in job.labels:
        values = outlined if out.outline else label
        if out.kind == "png":
            write_png(out.path, values.astype(np.uint8) if values.max() <= 255 else values.astype(np.uint16))
        elif out.kind == "voc_png":
            write_png(out.path, values.astype(np.uint8), palette=[v for c in voc_colormap(256) for v in c])
        elif out.kind == "cityscapes_color":
            write_png(out.path, _cityscapes_colour(values))
        elif out.kind == "sbd_mat":
            present = np.unique(values[(values > 0) & (values != IGNORE)]).astype(np.uint8)
            write_mat(out.path, {"GTcls": {"Segmentation": values.astype(np.uint8), "CategoriesPresent": present}})
        elif out.kind == "coco10k_mat":
            write_mat(out.path, {"S": values.astype(np.uint16)})
        elif out.kind == "context_mat":
            write_mat(out.path, {"LabelMap": values.astype(np.uint16)})
        else:
            raise ValueError(f"unknown label kind {out.kind!r}")


# ---------------------------------------------------------------- planning a set


class _Planner:
    """Hands out ImageJobs so that the whole set covers `cover` (every source id at least once)."""

    def __init__(self, cover: list[int], backgrounds: list[int], num_images: int, size: int,
                 aspect: tuple[float, float], seed: int, min_shapes: int = 3, outline: int = 0, dark: bool = False):
        self.rng = np.random.default_rng([seed, 1])
        self.per_image = max(min_shapes, math.ceil(len(cover) / max(1, num_images)))
        total = self.per_image * max(1, num_images)
        self.assignment = np.resize(self.rng.permutation(np.array(cover)), total).reshape(-1, self.per_image)
        self.backgrounds = backgrounds
        self.size, self.aspect, self.seed = size, aspect, seed
        self.outline, self.dark = outline, dark
        self.count = 0

    def job(self, image_path: Path, labels: list[LabelOut]) -> ImageJob:
        index = self.count
        self.count += 1
        width = round(self.size * self.rng.uniform(*self.aspect))
        return ImageJob(
            seed=(self.seed, index),
            height=self.size,
            width=width,
            background=int(self.backgrounds[index % len(self.backgrounds)]),
            shapes=tuple(int(i) for i in self.assignment[index % len(self.assignment)]),
            image_path=str(image_path),
            labels=tuple(labels),
            outline=self.outline,
            dark=self.dark,
        )


def _voc_names(start: int, count: int) -> list[str]:
    return [f"{2007 + i % 6}_{i:06d}" for i in range(start, start + count)]


def _voc(out: Path, n: int, size: int, seed: int, with_sbd: bool = False) -> list[ImageJob]:
    """VOC2012: JPEGImages, SegmentationClass (palette PNGs with 255 borders), ImageSets/Segmentation.

    With SBD (voc_aug): the release at OUT/benchmark_RELEASE/dataset (cls/*.mat, train.txt, val.txt),
    covering VOC train, extra images, and (as the real SBD does) some VOC val images.
    """
    n_train = max(1, n // 2) if with_sbd else n
    train, val = _voc_names(0, n_train), _voc_names(n_train, n)
    extra = _voc_names(n_train + n, max(1, n - n_train)) if with_sbd else []
    sbd_val_overlap = val[: max(1, len(val) // 2)] if with_sbd else []
    lists = out / "ImageSets" / "Segmentation"
    write_lines(lists / "train.txt", train)
    write_lines(lists / "val.txt", val)
    write_lines(lists / "trainval.txt", train + val)
    sbd = out / "benchmark_RELEASE" / "dataset"
    if with_sbd:
        write_lines(sbd / "train.txt", train + extra[::2])
        write_lines(sbd / "val.txt", extra[1::2] + sbd_val_overlap)
    in_sbd = set(train + extra + sbd_val_overlap) if with_sbd else set()

    planner = _Planner(list(range(1, 21)), [0], len(train) + len(val) + len(extra), size, (1.0, 1.5), seed, outline=1)
    jobs = []
    for name in train + val + extra:
        labels = []
        if name not in extra:
            labels.append(LabelOut(str(out / "SegmentationClass" / f"{name}.png"), "voc_png"))
        if name in in_sbd:
            labels.append(LabelOut(str(sbd / "cls" / f"{name}.mat"), "sbd_mat", outline=False))
        jobs.append(planner.job(out / "JPEGImages" / f"{name}.jpg", labels))
    return jobs


def _voc_aug(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    return _voc(out, n, size, seed, with_sbd=True)


def _ade20k(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    planner = _Planner(list(range(151)), [0, 1, 3, 4], 2 * n, size, (1.0, 1.5), seed)
    jobs = []
    for folder, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for i in range(1, n + 1):
            name = f"{prefix}_{i:08d}"
            jobs.append(planner.job(out / "images" / folder / f"{name}.jpg",
                                    [LabelOut(str(out / "annotations" / folder / f"{name}.png"), "png")]))
    return jobs


def _cityscapes(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    """Raw release: leftImg8bit + gtFine *_labelIds.png and *_color.png (run prepare for trainIds)."""
    planner = _Planner(list(range(idmaps.CITYSCAPES_NUM_LABEL_IDS)), [7, 11, 21, 23], 2 * n, size, (2.0, 2.0), seed)
    jobs = []
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for i in range(n):
            city = cities[i % len(cities)]
            base = f"{city}_{i:06d}_000019"
            gt = out / "gtFine" / split / city
            jobs.append(planner.job(out / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", [
                LabelOut(str(gt / f"{base}_gtFine_labelIds.png"), "png"),
                LabelOut(str(gt / f"{base}_gtFine_color.png"), "cityscapes_color"),
            ]))
    return jobs


def _pascal_context(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    """VOC2010 JPEGImages + ImageSets/Main lists + the release's trainval/*.mat (full 459-class ids)."""
    cover = list(range(idmaps.CONTEXT_NUM_SOURCE_IDS))
    backgrounds = [440, 360, 187, 158, 0, 3]  # wall, sky, grass, floor, unlabelled, a non-benchmark class
    planner = _Planner(cover, backgrounds, 2 * n, size, (1.0, 1.5), seed)
    names = {"train": [f"2008_{i:06d}" for i in range(n)], "val": [f"2008_{i:06d}" for i in range(n, 2 * n)]}
    jobs = []
    for split, split_names in names.items():
        write_lines(out / "ImageSets" / "Main" / f"{split}.txt", split_names)
        for name in split_names:
            jobs.append(planner.job(out / "JPEGImages" / f"{name}.jpg",
                                    [LabelOut(str(out / "trainval" / f"{name}.mat"), "context_mat")]))
    return jobs


def _coco_stuff10k(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    """The 10k release: images/*.jpg, annotations/*.mat (S: 0 unlabelled, ids 1..182), imageLists/."""
    planner = _Planner(list(range(idmaps.COCO_STUFF_NUM_IDS + 1)), [0, 106, 149, 157], 2 * n, size, (1.0, 1.5), seed)
    train = [f"COCO_train2014_{i:012d}" for i in range(1, n + 1)]
    test = [f"COCO_train2014_{i:012d}" for i in range(n + 1, 2 * n + 1)]
    write_lines(out / "imageLists" / "train.txt", train)
    write_lines(out / "imageLists" / "test.txt", test)
    write_lines(out / "imageLists" / "all.txt", train + test)
    return [
        planner.job(out / "images" / f"{name}.jpg", [LabelOut(str(out / "annotations" / f"{name}.mat"), "coco10k_mat")])
        for name in train + test
    ]


def _coco_stuff164k(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    """images/{train2017,val2017}/*.jpg + annotations/.../*.png stuffthingmaps (id - 1, 255 unlabelled)."""
    cover = [*range(idmaps.COCO_STUFF_NUM_IDS), IGNORE]
    planner = _Planner(cover, [105, 148, 156, IGNORE], 2 * n, size, (1.0, 1.5), seed)
    jobs = []
    for split, offset in (("train2017", 0), ("val2017", n)):
        for i in range(offset + 1, offset + n + 1):
            name = f"{i:012d}"
            jobs.append(planner.job(out / "images" / split / f"{name}.jpg",
                                    [LabelOut(str(out / "annotations" / split / f"{name}.png"), "png")]))
    return jobs


def _dark_zurich(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    planner = _Planner([*range(19), IGNORE], [0, 2, 8, 10], n, size, (16 / 9, 16 / 9), seed, dark=True)
    jobs = []
    for i in range(n):
        base = f"GOPR0356_frame_{i:06d}"
        jobs.append(planner.job(out / "rgb_anon" / "val" / "night" / "GOPR0356" / f"{base}_rgb_anon.png", [
            LabelOut(str(out / "gt" / "val" / "night" / "GOPR0356" / f"{base}_gt_labelTrainIds.png"), "png")
        ]))
    return jobs


def _night_driving(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    planner = _Planner([*range(19), IGNORE], [0, 2, 8, 10], n, size, (2.0, 2.0), seed, outline=3, dark=True)
    jobs = []
    for i in range(n):
        base = f"{i}_frame_{i:04d}"
        label = out / "gtCoarse_daytime_trainvaltest" / "test" / "night" / f"{base}_gtCoarse_labelTrainIds.png"
        jobs.append(planner.job(out / "leftImg8bit" / "test" / "night" / f"{base}_leftImg8bit.png",
                                [LabelOut(str(label), "png")]))
    return jobs


CUSTOM_CLASSES = ["background", "meadow", "brick", "water", "metal"]


def _custom(out: Path, n: int, size: int, seed: int) -> list[ImageJob]:
    """images/{train,val}/*.png + labels/{train,val}/*.png + classes.toml (with a palette)."""
    write_classes_toml(out / "classes.toml", CUSTOM_CLASSES, palette=list(voc_colormap(len(CUSTOM_CLASSES))))
    planner = _Planner(list(range(1, len(CUSTOM_CLASSES))), [0], 2 * n, size, (1.0, 1.5), seed, outline=1)
    jobs = []
    for split in ("train", "val"):
        for i in range(n):
            name = f"img_{i:04d}"
            jobs.append(planner.job(out / "images" / split / f"{name}.png",
                                    [LabelOut(str(out / "labels" / split / f"{name}.png"), "png")]))
    return jobs


_WRITERS: dict[str, Callable[[Path, int, int, int], list[ImageJob]]] = {
    "voc": _voc,
    "voc_aug": _voc_aug,
    "ade20k": _ade20k,
    "cityscapes": _cityscapes,
    "pascal_context": _pascal_context,
    "pascal_context_59": _pascal_context,
    "coco_stuff10k": _coco_stuff10k,
    "coco_stuff164k": _coco_stuff164k,
    "dark_zurich": _dark_zurich,
    "night_driving": _night_driving,
    "custom": _custom,
}

# What to run after `synth` before the dataset can be read (the raw encoding needs converting).
NEXT_STEP = {
    "voc_aug": "sceneparse data prepare voc_aug {out}/benchmark_RELEASE {out}",
    "cityscapes": "sceneparse data prepare cityscapes {out}",
    "pascal_context": "sceneparse data prepare pascal_context {out}",
    "pascal_context_59": "sceneparse data prepare pascal_context_59 {out}",
    "coco_stuff10k": "sceneparse data prepare coco_stuff10k {out}",
    "coco_stuff164k": "sceneparse data prepare coco_stuff164k {out}",
}


def synthesize(
    name: str, out_root: str | Path, n: int = 40, size: int = 128, seed: int = 0, workers: int | None = 1,
    progress: bool | None = None,
) -> Path:
    """Write a synthetic `name` dataset under `out_root` (n images per split, `size` pixels high)."""
    if name not in _WRITERS:
        raise DataError(f"unknown dataset {name!r}; synth knows: {', '.join(_WRITERS)}")
    if n < 1 or size < 16:
        raise DataError(f"synth needs n >= 1 and size >= 16 (got n={n}, size={size})")
    out = Path(out_root).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs = _WRITERS[name](out, n, size, seed)
    parallel_map(write_job, jobs, workers=workers, desc=f"synth {name}", progress=progress)
    return out
