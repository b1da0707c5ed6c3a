"""Where a dataset keeps its images and labels, and how each image finds its label.

Two shapes cover the supported datasets:

* `FolderLayout`: images are found by scanning a folder (recursively where the release nests
  them, e.g. Cityscapes' city folders); an image's label sits at the same relative path in the
  label folder with the image suffix swapped for the label suffix.
  Cityscapes: leftImg8bit/train/aachen/X_leftImg8bit.png -> gtFine/train/aachen/X_gtFine_labelTrainIds.png.
* `ListLayout`: a list file names the images of a split (VOC's ImageSets); each list comes with
  the folder that holds its labels (VOC-aug reads VOC's own labels for the VOC list and the SBD
  conversions for the aug list).

Both return a `PairScan`: the complete pairs and, for the sanity check, what is missing. Each
pair also has a *key*: the image's path relative to the split's image folder, without its suffix
(Cityscapes "aachen/aachen_000000_000019", VOC "2007_000032"). Predictions are saved under that key
(see `sceneparse.data.registry.pred_name`), which is how `sceneparse score` matches them to labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sceneparse.data.files import read_lines
from sceneparse.errors import DataError


@dataclass
class Pair:
    key: str
    image: Path
    label: Path


@dataclass
class PairScan:
    """What a split holds on disk. Only `pairs` are usable; the rest is for error reports."""

    pairs: list[Pair] = field(default_factory=list)
    missing_labels: list[Pair] = field(default_factory=list)  # image present, label absent
    missing_images: list[Path] = field(default_factory=list)  # label (or list entry) without its image
    num_images: int = 0  # image files (or list entries) seen
    num_labels: int = 0  # label files seen


def _strip_suffix(name: str, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


@dataclass(frozen=True)
class FolderLayout:
    image_dir: str  # relative to the root; "{split}" is replaced by the split's folder name
    image_suffixes: tuple[str, ...]
    label_dir: str
    label_suffix: str
    recursive: bool = False
    missing_hint: str = ""  # said when labels are missing (e.g. "run sceneparse data prepare ...")

    def scan(self, root: Path, split_dir: str) -> PairScan:
        image_root = root / self.image_dir.format(split=split_dir)
        label_root = root / self.label_dir.format(split=split_dir)
        if not image_root.is_dir():
            raise DataError(f"{image_root}: image folder not found; is {root} the dataset root?")
        images = self._files(image_root, self.image_suffixes)
        labels = self._files(label_root, (self.label_suffix,)) if label_root.is_dir() else {}
        scan = PairScan(num_images=len(images), num_labels=len(labels))
        for key in sorted(images):
            pair = Pair(key, images[key], label_root / (key + self.label_suffix))
            (scan.pairs if key in labels else scan.missing_labels).append(pair)
        scan.missing_images = [labels[key] for key in sorted(set(labels) - set(images))]
        return scan

    def _files(self, folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
        """key -> path for the files under `folder` whose name ends in one of `suffixes`."""
        found = {}
        candidates = folder.rglob("*") if self.recursive else folder.iterdir()
        for path in candidates:
            stem = _strip_suffix(path.name, suffixes)
            if stem is None or path.name.startswith("."):
                continue
            found[path.relative_to(folder).with_name(stem).as_posix()] = path
        return found


@dataclass(frozen=True)
class ListLayout:
    image_dir: str
    image_suffix: str
    # split folder name -> ((list file, label folder), ...), read in order and concatenated
    lists: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    label_suffix: str = ".png"
    exclude_split: str = ""  # names in this split's lists never appear in another split (VOC val)
    missing_hint: str = ""

    def scan(self, root: Path, split_dir: str) -> PairScan:
        parts = dict(self.lists).get(split_dir)
        if parts is None:
            raise DataError(f"no list files for split {split_dir!r}")
        excluded: set[str] = set()
        if self.exclude_split and split_dir != self.exclude_split:
            for list_file, _ in dict(self.lists)[self.exclude_split]:
                if (root / list_file).is_file():
                    excluded.update(read_lines(root / list_file))
        scan = PairScan()
        seen: set[str] = set()
        for list_file, label_dir in parts:
            if not (root / list_file).is_file():
                hint = f"; {self.missing_hint}" if self.missing_hint else ""
                raise DataError(f"{root / list_file}: split list not found{hint}")
            for name in read_lines(root / list_file):
                if name in seen or name in excluded:
                    continue
                seen.add(name)
                scan.num_images += 1
                image = root / self.image_dir / (name + self.image_suffix)
                label = root / label_dir / (name + self.label_suffix)
                has_image, has_label = image.is_file(), label.is_file()
                scan.num_labels += has_label
                if not has_image:
                    scan.missing_images.append(image)
                elif not has_label:
                    scan.missing_labels.append(Pair(name, image, label))
                else:
                    scan.pairs.append(Pair(name, image, label))
        return scan


@dataclass(frozen=True)
class CustomLayout:
    """A user's folder: images/ and labels/ with one subfolder per split, or flat folders plus
    `splits/<split>.txt` lists of names (mmsegmentation's custom dataset, both ways)."""

    image_suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
    label_suffix: str = ".png"
    missing_hint: str = ""

    def scan(self, root: Path, split_dir: str) -> PairScan:
        if (root / "images" / split_dir).is_dir():
            folders = FolderLayout("images/{split}", self.image_suffixes, "labels/{split}", self.label_suffix)
            return folders.scan(root, split_dir)
        list_file = root / "splits" / f"{split_dir}.txt"
        if (root / "images").is_dir() and list_file.is_file():
            return self._scan_list(root, list_file)
        raise DataError(
            f"{root}: no images/{split_dir}/ folder and no splits/{split_dir}.txt list; a custom dataset "
            f"keeps images/{split_dir}/*.jpg|png with labels/{split_dir}/*.png, or flat images/ and "
            f"labels/ with splits/{split_dir}.txt naming the images"
        )

    def _scan_list(self, root: Path, list_file: Path) -> PairScan:
        by_stem: dict[str, Path] = {}
        for path in (root / "images").iterdir():
            if path.suffix.lower() in self.image_suffixes and not path.name.startswith("."):
                by_stem[path.stem] = path
        scan = PairScan()
        for name in read_lines(list_file):
            scan.num_images += 1
            image = by_stem.get(name)
            label = root / "labels" / (name + self.label_suffix)
            scan.num_labels += label.is_file()
            if image is None:
                scan.missing_images.append(root / "images" / name)
            elif not label.is_file():
                scan.missing_labels.append(Pair(name, image, label))
            else:
                scan.pairs.append(Pair(name, image, label))
        return scan


Layout = FolderLayout | ListLayout | CustomLayout
