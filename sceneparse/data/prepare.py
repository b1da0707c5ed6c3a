"""`sceneparse data prepare NAME RAW_ROOT [OUT_ROOT]`: raw releases -> the layout training reads.

* cityscapes: gtFine/*/*/*_gtFine_labelIds.png -> *_gtFine_labelTrainIds.png (official 34 -> 19 ids).
* voc_aug: SBD's cls/*.mat (GTcls.Segmentation) -> VOC2012/SegmentationClassAug/*.png, plus the lists
  ImageSets/Segmentation/aug.txt (SBD minus VOC train and val) and trainaug.txt (VOC train + SBD
  minus VOC val). RAW_ROOT is the SBD release (benchmark_RELEASE or its dataset/), OUT_ROOT the
  VOC2012 folder.
* pascal_context / pascal_context_59: the release's trainval/*.mat (LabelMap, full 459-class ids),
  extracted into the VOC2010 folder -> SegmentationClassContext/*.png with the 60-class ids
  (0 = background; the 59-class dataset reads the same files with reduce_zero_label), and
  ImageSets/SegmentationContext/{train,val}.txt from VOC2010's ImageSets/Main lists.
* coco_stuff10k: annotations/*.mat (S) + imageLists/{train,test}.txt -> images/{train2014,test2014}/
  and annotations/{train2014,test2014}/*_labelTrainIds.png (0 unlabelled, 1..171, as mmseg).
* coco_stuff164k: annotations/{train2017,val2017}/*.png (stuffthingmaps 0..181, 255 unlabelled)
  -> *_labelTrainIds.png with the 171 train ids.
* dark_zurich, night_driving (already train ids), voc, ade20k, custom: nothing to convert; the
  labels are checked instead.

OUT_ROOT defaults to RAW_ROOT (outputs land beside the raw files, as the published layouts expect);
given another folder, the images are hard-linked (or copied) there too. Runs are idempotent: a
finished output file is skipped, and every file is written atomically, so an interrupted run can
simply be started again.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sceneparse.atomic import remove_stale_temporaries
from sceneparse.data import idmaps
from sceneparse.data.check import CheckReport, check_dataset
from sceneparse.data.classes import voc_colormap
from sceneparse.data.files import link_or_copy, read_label, read_lines, read_mat_field, write_lines, write_png
from sceneparse.data.parallel import parallel_map
from sceneparse.data.registry import dataset_info
from sceneparse.errors import DataError

# ---------------------------------------------------------------- one file (runs in a worker)

# name -> (lookup table, value for ids outside it)
_TABLES: dict[str, tuple[Callable[[], np.ndarray], int]] = {
    "cityscapes": (idmaps.cityscapes_lut, 255),
    "coco_stuff164k": (idmaps.coco_stuff164k_lut, 255),
    "coco_stuff10k": (idmaps.coco_stuff10k_lut, 0),
    "pascal_context": (idmaps.pascal_context_lut, 0),
}


@functools.cache
def _table(name: str) -> np.ndarray:
    return _TABLES[name][0]()


@functools.lru_cache(maxsize=1)
def _voc_palette() -> list[int]:
    return [v for colour in voc_colormap(256) for v in colour]


@dataclass(frozen=True)
class Job:
    """Make `dst` from `src`: "png" (map a label PNG), "mat" (map a .mat field) or "link" (an image)."""

    action: str
    src: str
    dst: str
    table: str = ""  # a key of _TABLES; "" keeps the values
    mat_field: str = ""  # dotted path into the .mat, e.g. "GTcls.Segmentation"
    voc_palette: bool = False  # save as a palette PNG with VOC colours (same indices, viewable)


def run_job(job: Job) -> bool:
    """Do one job; False when its output already exists (skipped)."""
    dst = Path(job.dst)
    if dst.exists():
        return False
    if job.action == "link":
        link_or_copy(Path(job.src), dst)
        return True
    raw = read_label(job.src) if job.action == "png" else read_mat_field(job.src, job.mat_field)
    if job.table:
        label = idmaps.apply_lut(raw, _table(job.table), _TABLES[job.table][1])
    else:
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise DataError(f"{job.src}: label values {raw.min()}..{raw.max()} do not fit 8 bits")
        label = raw.astype(np.uint8)
    write_png(dst, label, palette=_voc_palette() if job.voc_palette else None)
    return True


# ---------------------------------------------------------------- the result


@dataclass
class PrepareSummary:
    dataset: str
    out_root: str
    written: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    reports: list[CheckReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports)

    def text(self) -> str:
        lines = [f"{self.dataset}: {self.written} file(s) written, {self.skipped} already done, in {self.out_root}"]
        lines += self.notes
        lines += [report.summary() for report in self.reports]
        return "\n".join(lines)


# ---------------------------------------------------------------- per dataset: the jobs


def _need_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: not found; {what}")


def _cityscapes(raw: Path, out: Path, summary: PrepareSummary) -> list[Job]:
    _need_dir(raw / "gtFine", "RAW_ROOT must hold gtFine/ and leftImg8bit/ (gtFine_trainvaltest.zip extracted)")
    jobs = []
    for src in sorted((raw / "gtFine").glob("*/*/*_gtFine_labelIds.png")):
        rel = src.relative_to(raw)
        dst = out / rel.with_name(src.name.replace("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"))
        jobs.append(Job("png", str(src), str(dst), table="cityscapes"))
    if not jobs:
        raise DataError(f"{raw / 'gtFine'}: no */*/*_gtFine_labelIds.png files to convert")
    if out != raw:
        jobs += _links(raw, out, sorted((raw / "leftImg8bit").glob("*/*/*_leftImg8bit.png")))
    return jobs


def _voc_aug(raw: Path, out: Path, summary: PrepareSummary) -> list[Job]:
    sbd = raw / "dataset" if (raw / "dataset" / "cls").is_dir() else raw
    _need_dir(sbd / "cls", "RAW_ROOT is the SBD release (benchmark_RELEASE, or its dataset/ folder with cls/)")
    if out == raw:
        raise DataError("voc_aug: give OUT_ROOT, the VOC2012 folder (VOCdevkit/VOC2012) that receives SegmentationClassAug")
    lists = out / "ImageSets" / "Segmentation"
    voc_train = read_lines(lists / "train.txt")
    voc_val = read_lines(lists / "val.txt")
    mats = {path.stem: path for path in (sbd / "cls").glob("*.mat")}
    sbd_names = [n for name in ("train.txt", "val.txt") if (sbd / name).is_file() for n in read_lines(sbd / name)]
    sbd_names = sorted({n for n in sbd_names if n in mats} if sbd_names else set(mats))
    aug = sorted(set(sbd_names) - set(voc_train) - set(voc_val))
    trainaug = sorted((set(voc_train) | set(sbd_names)) - set(voc_val))
    write_lines(lists / "aug.txt", aug)
    write_lines(lists / "trainaug.txt", trainaug)
    summary.notes.append(
        f"aug.txt: {len(aug)} SBD images not in VOC train/val; trainaug.txt: {len(trainaug)} (VOC train + aug)"
    )
    return [
        Job("mat", str(mats[name]), str(out / "SegmentationClassAug" / f"{name}.png"),
            mat_field="GTcls.Segmentation", voc_palette=True)
        for name in sbd_names
    ]


def _pascal_context(raw: Path, out: Path, summary: PrepareSummary) -> list[Job]:
    _need_dir(raw / "trainval", "extract the PASCAL-Context release (trainval.tar.gz) into the VOC2010 folder, "
              "so that RAW_ROOT/trainval/*.mat exist")
    mats = {path.stem: path for path in (raw / "trainval").glob("*.mat")}
    jobs = [
        Job("mat", str(path), str(out / "SegmentationClassContext" / f"{name}.png"),
            table="pascal_context", mat_field="LabelMap")
        for name, path in sorted(mats.items())
    ]
    for split in ("train", "val"):
        names = [n for n in read_lines(raw / "ImageSets" / "Main" / f"{split}.txt") if n in mats]
        write_lines(out / "ImageSets" / "SegmentationContext" / f"{split}.txt", names)
        summary.notes.append(f"{split}: {len(names)} images")
        if out != raw:
            jobs += _links(raw, out, [raw / "JPEGImages" / f"{n}.jpg" for n in names])
    return jobs


def _coco_stuff10k(raw: Path, out: Path, summary: PrepareSummary) -> list[Job]:
    _need_dir(raw / "annotations", "RAW_ROOT is the COCO-Stuff 10k release (images/, annotations/*.mat, imageLists/)")
    jobs = []
    for list_name, split in (("train", "train2014"), ("test", "test2014")):
        names = [Path(n).stem for n in read_lines(raw / "imageLists" / f"{list_name}.txt")]
        summary.notes.append(f"{split}: {len(names)} images")
        for name in names:
            jobs.append(Job("mat", str(raw / "annotations" / f"{name}.mat"),
                            str(out / "annotations" / split / f"{name}_labelTrainIds.png"),
                            table="coco_stuff10k", mat_field="S"))
            jobs.append(Job("link", str(raw / "images" / f"{name}.jpg"), str(out / "images" / split / f"{name}.jpg")))
    return jobs


def _coco_stuff164k(raw: Path, out: Path, summary: PrepareSummary) -> list[Job]:
    _need_dir(raw / "annotations", "RAW_ROOT holds images/{train2017,val2017} and annotations/{train2017,val2017} "
              "(stuffthingmaps_trainval2017.zip extracted into annotations/)")
    jobs = []
    for split in ("train2017", "val2017"):
        folder = raw / "annotations" / split
        sources = sorted(p for p in folder.glob("*.png") if not p.name.endswith("_labelTrainIds.png"))
        jobs += [
            Job("png", str(src), str(out / "annotations" / split / f"{src.stem}_labelTrainIds.png"), table="coco_stuff164k")
            for src in sources
        ]
        if out != raw:
            jobs += _links(raw, out, sorted((raw / "images" / split).glob("*.jpg")))
    if not jobs:
        raise DataError(f"{raw / 'annotations'}: no train2017/ or val2017/ stuffthingmaps PNGs found")
    return jobs


def _links(raw: Path, out: Path, sources: list[Path]) -> list[Job]:
    return [Job("link", str(src), str(out / src.relative_to(raw))) for src in sources]


_CONVERTERS: dict[str, Callable[[Path, Path, PrepareSummary], list[Job]]] = {
    "cityscapes": _cityscapes,
    "voc_aug": _voc_aug,
    "pascal_context": _pascal_context,
    "pascal_context_59": _pascal_context,
    "coco_stuff10k": _coco_stuff10k,
    "coco_stuff164k": _coco_stuff164k,
}


def prepare(
    name: str, raw_root: str | Path, out_root: str | Path | None = None, workers: int | None = None,
    progress: bool | None = None, classes_file: str = "",
) -> PrepareSummary:
    """Convert the raw release of `name` at `raw_root` into the training layout under `out_root`."""
    raw = Path(raw_root).expanduser().resolve()
    out = Path(out_root).expanduser().resolve() if out_root else raw
    if not raw.is_dir():
        raise DataError(f"{raw}: raw dataset folder not found")
    remove_stale_temporaries(out, recursive=True)  # of an earlier prepare that was killed mid-write
    summary = PrepareSummary(name, str(out))
    converter = _CONVERTERS.get(name)
    if converter is None:
        info = dataset_info(name, classes_file or (raw / "classes.toml" if name == "custom" else ""))
        summary.notes.append(f"{name} is read as released: nothing to convert; checking the labels instead")
        checked: set[str] = set()
        for split in info.splits:
            folder = info.split_dir(split)
            if folder in checked:
                continue  # an alias of a split already checked (e.g. night_driving's val = test)
            checked.add(folder)
            if name == "custom" and not ((raw / "images" / folder).is_dir() or (raw / "splits" / f"{folder}.txt").is_file()):
                continue
            summary.reports.append(check_dataset(info, raw, split, workers=workers, progress=progress))
        return summary
    jobs = converter(raw, out, summary)
    done = parallel_map(run_job, jobs, workers=workers, desc=f"prepare {name}", progress=progress)
    summary.written = sum(done)
    summary.skipped = len(done) - summary.written
    return summary
