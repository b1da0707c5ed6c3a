"""The supported datasets: classes, palette, label encoding and on-disk layout.

`DATASETS[name]` describes a dataset as its authors release it (after `sceneparse data prepare`
where the published recipes train on converted labels); `dataset_info(name)` also handles
`custom`, a user's folder described by a small TOML file (see `sceneparse.data.custom`).

Label encoding: a label PNG holds one class index per pixel; `ignore_index` marks pixels that are
not scored. With `reduce_zero_label` the files store 0 = "other" and class k as k + 1 (ADE20K,
COCO-Stuff 10k, Pascal Context read as 59 classes); reading subtracts one and ignores 0.

Matching predictions to ground truth (`sceneparse test` writes, `sceneparse score` reads): each
sample has a key, its image path relative to the split's image folder without the image suffix
(`DatasetInfo.keyed_pairs`). A prediction for that sample is the PNG `pred_name(key)` inside the
prediction folder, e.g. Cityscapes val "frankfurt/frankfurt_000000_000294.png", ADE20K
"ADE_val_00000001.png", VOC "2007_000033.png".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sceneparse.data import classes as C
from sceneparse.data.layout import CustomLayout, FolderLayout, Layout, ListLayout, Pair, PairScan
from sceneparse.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    layout: Layout
    # split name -> folder name on disk ("train" -> "training" for ADE20K); the first is the default
    split_dirs: tuple[tuple[str, str], ...]
    ignore_index: int = 255  # the stored value of unscored pixels
    reduce_zero_label: bool = False
    eval_only: bool = False  # no training split (Dark Zurich, Nighttime Driving)
    prepare_hint: str = ""  # how to get training labels from the raw release, said when they are missing

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.split_dirs)

    def split_dir(self, split: str) -> str:
        """The folder/list name of `split`; on-disk names are accepted too."""
        for name, folder in self.split_dirs:
            if split in (name, folder):
                return folder
        raise DataError(f"{self.name} has no split {split!r}; its splits are: {', '.join(self.splits)}")

    def scan(self, root: str | Path, split: str) -> PairScan:
        """Everything found for `split`, including what is missing (for `sceneparse data check`)."""
        root = Path(root).expanduser()
        if not str(root) or not root.is_dir():
            raise DataError(f"{root}: {self.title} root folder not found; pass the dataset root (--data-root)")
        return self.layout.scan(root, self.split_dir(split))

    def keyed_pairs(self, root: str | Path, split: str) -> list[Pair]:
        """The (key, image, label) of every sample of `split`; DataError if any file is missing."""
        scan = self.scan(root, split)
        problems = []
        if scan.missing_labels:
            problems.append(f"{len(scan.missing_labels)} images without a label, e.g. {scan.missing_labels[0].label}")
        if scan.missing_images:
            problems.append(f"{len(scan.missing_images)} labels without an image, e.g. {scan.missing_images[0]}")
        if problems or not scan.pairs:
            hint = f"; {self.prepare_hint}" if self.prepare_hint and scan.missing_labels else ""
            found = "; ".join(problems) if problems else "no image/label pairs found"
            raise DataError(
                f"{root} ({self.name}, split {split}): {found}{hint}. "
                f"Run `sceneparse data check {self.name} {root} --split {split}` for the full list"
            )
        return scan.pairs

    def pairs(self, root: str | Path, split: str) -> list[tuple[Path, Path]]:
        """(image_path, label_path) of every sample of `split`, sorted by key."""
        return [(p.image, p.label) for p in self.keyed_pairs(root, split)]


def pred_name(key: str) -> str:
    """The file name (relative to the prediction folder) of the predicted label map for a sample key."""
    return f"{key}.png"


# ---------------------------------------------------------------- the registry

_CITYSCAPES_PREPARE = (
    "run `sceneparse data prepare cityscapes ROOT` to write *_gtFine_labelTrainIds.png from the "
    "released *_gtFine_labelIds.png"
)


_CONTEXT_PREPARE = "run `sceneparse data prepare pascal_context VOC2010_ROOT` to convert the release's trainval/*.mat"
_CONTEXT_LAYOUT = ListLayout(
    "JPEGImages",
    ".jpg",
    tuple(
        (split, ((f"ImageSets/SegmentationContext/{split}.txt", "SegmentationClassContext"),))
        for split in ("train", "val")
    ),
    missing_hint=_CONTEXT_PREPARE,
)


def _voc_lists(label_dir: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    return tuple(
        (split, ((f"ImageSets/Segmentation/{split}.txt", label_dir),)) for split in ("train", "val", "trainval")
    )


DATASETS: dict[str, DatasetInfo] = {
    "voc": DatasetInfo(
        name="voc",
        title="PASCAL VOC 2012 (VOCdevkit/VOC2012)",
        classes=C.VOC_CLASSES,
        palette=C.VOC_PALETTE,
        layout=ListLayout("JPEGImages", ".jpg", _voc_lists("SegmentationClass")),
        split_dirs=(("train", "train"), ("val", "val"), ("trainval", "trainval")),
    ),
    "voc_aug": DatasetInfo(
        name="voc_aug",
        title="PASCAL VOC 2012 + SBD augmented (VOCdevkit/VOC2012)",
        classes=C.VOC_CLASSES,
        palette=C.VOC_PALETTE,
        # train = VOC train (its own labels) + aug.txt (SBD minus VOC train and val, SBD labels);
        # names on the val list are dropped from train even if a list repeats them.
        layout=ListLayout(
            "JPEGImages",
            ".jpg",
            (
                (
                    "train",
                    (
                        ("ImageSets/Segmentation/train.txt", "SegmentationClass"),
                        ("ImageSets/Segmentation/aug.txt", "SegmentationClassAug"),
                    ),
                ),
                ("val", (("ImageSets/Segmentation/val.txt", "SegmentationClass"),)),
            ),
            exclude_split="val",
            missing_hint="run `sceneparse data prepare voc_aug SBD_ROOT VOC2012_ROOT` to convert SBD's cls/*.mat",
        ),
        split_dirs=(("train", "train"), ("val", "val")),
        prepare_hint="run `sceneparse data prepare voc_aug SBD_ROOT VOC2012_ROOT` to convert SBD's cls/*.mat",
    ),
    "ade20k": DatasetInfo(
        name="ade20k",
        title="ADE20K (ADEChallengeData2016)",
        classes=C.ADE20K_CLASSES,
        palette=C.ADE20K_PALETTE,
        layout=FolderLayout("images/{split}", (".jpg",), "annotations/{split}", ".png"),
        split_dirs=(("train", "training"), ("val", "validation")),
        reduce_zero_label=True,
    ),
    "cityscapes": DatasetInfo(
        name="cityscapes",
        title="Cityscapes",
        classes=C.CITYSCAPES_CLASSES,
        palette=C.CITYSCAPES_PALETTE,
        layout=FolderLayout(
            "leftImg8bit/{split}", ("_leftImg8bit.png",), "gtFine/{split}", "_gtFine_labelTrainIds.png", recursive=True
        ),
        split_dirs=(("train", "train"), ("val", "val"), ("test", "test")),
        prepare_hint=_CITYSCAPES_PREPARE,
    ),
    "pascal_context": DatasetInfo(
        name="pascal_context",
        title="Pascal Context, 60 classes (VOCdevkit/VOC2010)",
        classes=C.PASCAL_CONTEXT_CLASSES,
        palette=C.PASCAL_CONTEXT_PALETTE,
        layout=_CONTEXT_LAYOUT,
        split_dirs=(("train", "train"), ("val", "val")),
        prepare_hint=_CONTEXT_PREPARE,
    ),
    # The same PNGs read as 59 classes, background (0) ignored: mmsegmentation's
    # PascalContextDataset59 reads SegmentationClassContext with reduce_zero_label.
    "pascal_context_59": DatasetInfo(
        name="pascal_context_59",
        title="Pascal Context, 59 classes (VOCdevkit/VOC2010)",
        classes=C.PASCAL_CONTEXT_59_CLASSES,
        palette=C.PASCAL_CONTEXT_59_PALETTE,
        layout=_CONTEXT_LAYOUT,
        split_dirs=(("train", "train"), ("val", "val")),
        reduce_zero_label=True,
        prepare_hint=_CONTEXT_PREPARE,
    ),
    "coco_stuff10k": DatasetInfo(
        name="coco_stuff10k",
        title="COCO-Stuff 10k",
        classes=C.COCO_STUFF_CLASSES,
        palette=C.COCO_STUFF_PALETTE,
        layout=FolderLayout("images/{split}", (".jpg",), "annotations/{split}", "_labelTrainIds.png"),
        split_dirs=(("train", "train2014"), ("test", "test2014"), ("val", "test2014")),
        reduce_zero_label=True,  # the converted PNGs keep 0 = unlabelled, classes 1..171 (as mmseg)
        prepare_hint="run `sceneparse data prepare coco_stuff10k ROOT` to convert annotations/*.mat",
    ),
    "coco_stuff164k": DatasetInfo(
        name="coco_stuff164k",
        title="COCO-Stuff 164k",
        classes=C.COCO_STUFF_CLASSES,
        palette=C.COCO_STUFF_PALETTE,
        layout=FolderLayout("images/{split}", (".jpg",), "annotations/{split}", "_labelTrainIds.png"),
        split_dirs=(("train", "train2017"), ("val", "val2017")),
        prepare_hint=(
            "run `sceneparse data prepare coco_stuff164k ROOT` to convert the stuffthingmaps "
            "annotations/*/*.png to *_labelTrainIds.png"
        ),
    ),
    "dark_zurich": DatasetInfo(
        name="dark_zurich",
        title="Dark Zurich (night)",
        classes=C.CITYSCAPES_CLASSES,
        palette=C.CITYSCAPES_PALETTE,
        layout=FolderLayout(
            "rgb_anon/{split}/night", ("_rgb_anon.png",), "gt/{split}/night", "_gt_labelTrainIds.png", recursive=True
        ),
        split_dirs=(("val", "val"),),
        eval_only=True,
    ),
    "night_driving": DatasetInfo(
        name="night_driving",
        title="Nighttime Driving",
        classes=C.CITYSCAPES_CLASSES,
        palette=C.CITYSCAPES_PALETTE,
        layout=FolderLayout(
            "leftImg8bit/{split}/night",
            ("_leftImg8bit.png",),
            "gtCoarse_daytime_trainvaltest/{split}/night",
            "_gtCoarse_labelTrainIds.png",
        ),
        split_dirs=(("test", "test"), ("val", "test")),
        eval_only=True,
    ),
}

CUSTOM_SPLITS = (("train", "train"), ("val", "val"), ("test", "test"))
CUSTOM_LAYOUT = CustomLayout()


def dataset_names() -> list[str]:
    """Every name `dataset_info` accepts."""
    return [*DATASETS, "custom"]


def dataset_info(name: str, custom_classes_file: str | Path = "") -> DatasetInfo:
    """The description of dataset `name`; for "custom", read from its classes TOML file."""
    if name == "custom":
        from sceneparse.data.custom import load_custom_info

        if not custom_classes_file:
            raise DataError(
                "dataset 'custom' needs its classes file: set data.custom_classes_file (or pass --classes), "
                "a TOML with `classes = [...]`"
            )
        return load_custom_info(custom_classes_file)
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    return DATASETS[name]
