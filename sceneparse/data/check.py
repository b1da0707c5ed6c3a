"""`sceneparse data check`: read every image/label pair and report what would spoil training.

Reports counts, missing partners, unreadable or truncated files, size mismatches, label values
outside the classes and the ignore index (with the files and values), a class-frequency table,
and hints when the values look like a wrong encoding (Cityscapes labelIds instead of trainIds,
ADE20K read without reduce_zero_label, COCO-Stuff or Pascal Context labels not yet converted).

`quick_check` is the cheap part, run when training starts: the file listing, plus a sample of
labels decoded for their values and sizes. It raises `DataError` with the same text the full
check prints, when the labels cannot be right.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sceneparse.data.classes import CITYSCAPES_CLASSES
from sceneparse.data.files import image_size, read_image, read_label
from sceneparse.data.parallel import parallel_map
from sceneparse.data.registry import DATASETS, DatasetInfo, dataset_info
from sceneparse.errors import DataError

QUICK_SAMPLE = 32  # labels decoded by quick_check
SHOW_PER_KIND = 10  # files listed per kind of problem in the printed report


@dataclass(frozen=True)
class Problem:
    kind: str  # "missing label", "missing image", "unreadable", "size mismatch", "value out of range", ...
    path: str  # the file (or folder) it concerns
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class CheckReport:
    dataset: str
    root: str
    split: str
    quick: bool
    classes: tuple[str, ...] = ()
    num_images: int = 0
    num_labels: int = 0
    num_pairs: int = 0
    num_checked: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    out_of_range: dict[str, list[int]] = field(default_factory=dict)  # label file -> its bad stored values
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    class_images: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ignore_pixels: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_message(self) -> str:
        """The errors and hints: what `quick_check` raises and the heart of `summary`."""
        lines = [f"{self.dataset} split {self.split} at {self.root}: the labels cannot be right"]
        lines += _grouped(self.errors)
        lines += [f"hint: {hint}" for hint in self.hints]
        return "\n".join(lines)

    def summary(self) -> str:
        """The printable report."""
        checked = "sampled" if self.quick else "checked"
        lines = [
            f"{self.dataset}, split {self.split}, root {self.root}",
            f"  images {self.num_images}, labels {self.num_labels}, pairs {self.num_pairs} ({checked} {self.num_checked})",
        ]
        if self.errors:
            lines.append(f"ERRORS ({len(self.errors)})")
            lines += _grouped(self.errors)
        for hint in self.hints:
            lines.append(f"hint: {hint}")
        if self.warnings:
            lines.append(f"warnings ({len(self.warnings)})")
            lines += _grouped(self.warnings)
        if self.class_pixels.sum() > 0:
            lines += self._frequency_table()
        lines.append("OK" if self.ok else f"FAILED: {len(self.errors)} error(s)")
        return "\n".join(lines)

    def _frequency_table(self) -> list[str]:
        total = int(self.class_pixels.sum()) + self.ignore_pixels
        width = max(len(name) for name in self.classes)
        lines = [f"class frequencies over {self.num_checked} labels (share of pixels, images containing it):"]
        for index, name in enumerate(self.classes):
            share = 100.0 * self.class_pixels[index] / total
            lines.append(f"  {index:4d} {name:<{width}} {share:7.3f}% {int(self.class_images[index]):7d}")
        lines.append(f"       {'(ignore)':<{width}} {100.0 * self.ignore_pixels / total:7.3f}%")
        return lines


def _grouped(problems: list[Problem]) -> list[str]:
    """Problems grouped by kind, a few files each."""
    by_kind: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        by_kind[problem.kind].append(problem)
    lines = []
    for kind, items in by_kind.items():
        lines.append(f"  {kind} ({len(items)}):")
        for problem in items[:SHOW_PER_KIND]:
            lines.append(f"    {problem.path}" + (f": {problem.detail}" if problem.detail else ""))
        if len(items) > SHOW_PER_KIND:
            lines.append(f"    ... and {len(items) - SHOW_PER_KIND} more")
    return lines


# ---------------------------------------------------------------- reading one pair (in a worker)


@dataclass
class _PairResult:
    image: str
    label: str
    image_hw: tuple[int, int] | None = None
    label_hw: tuple[int, int] | None = None
    problems: list[Problem] = field(default_factory=list)
    values: np.ndarray | None = None  # distinct stored label values ...
    counts: np.ndarray | None = None  # ... and their pixel counts


def _inspect_pair(job: tuple[str, str, bool]) -> _PairResult:
    """Decode one pair (the image fully, or only its header) and histogram the label's values."""
    image_path, label_path, decode_image = job
    result = _PairResult(image_path, label_path)
    try:
        result.image_hw = read_image(image_path).shape[:2] if decode_image else image_size(image_path)
    except DataError as exc:
        result.problems.append(Problem("unreadable image", image_path, _detail(exc, image_path)))
    try:
        raw = read_label(label_path)
    except DataError as exc:
        kind = "colour label" if "colour image" in str(exc) else "unreadable label"
        result.problems.append(Problem(kind, label_path, _detail(exc, label_path)))
        return result
    result.label_hw = raw.shape[:2]
    histogram = np.bincount(raw.ravel().astype(np.int64))
    result.values = np.flatnonzero(histogram)
    result.counts = histogram[result.values]
    return result


def _detail(exc: Exception, path: str) -> str:
    return str(exc).removeprefix(f"{path}: ")


# ---------------------------------------------------------------- the check


def check_dataset(
    name: str | DatasetInfo, root: str | Path, split: str = "train", quick: bool = False,
    workers: int | None = 1, progress: bool | None = None,
) -> CheckReport:
    """Check `split` of dataset `name` (or of a DatasetInfo, e.g. with a run's reduce_zero_label) at `root`.

    Full: every pair, images decoded. Quick: the listing, and QUICK_SAMPLE labels with image headers.
    """
    info = dataset_info(name) if isinstance(name, str) else name
    report = CheckReport(info.name, str(root), split, quick, classes=info.classes)
    report.class_pixels = np.zeros(info.num_classes, dtype=np.int64)
    report.class_images = np.zeros(info.num_classes, dtype=np.int64)
    _check_encoding_setting(info, report)
    try:
        scan = info.scan(root, split)
    except DataError as exc:
        report.errors.append(Problem("layout", str(root), str(exc)))
        return report
    report.num_images, report.num_labels, report.num_pairs = scan.num_images, scan.num_labels, len(scan.pairs)
    report.errors += [Problem("missing label", str(p.label), f"for {p.image.name}") for p in scan.missing_labels]
    report.errors += [Problem("missing image", str(path)) for path in scan.missing_images]
    if scan.missing_labels and info.prepare_hint:
        report.hints.append(info.prepare_hint)
    if not scan.pairs:
        report.errors.append(Problem("no pairs", str(root), f"no image/label pairs for split {split}"))
        return report

    pairs = scan.pairs
    if quick and len(pairs) > QUICK_SAMPLE:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, QUICK_SAMPLE).round().astype(int)]
    jobs = [(str(p.image), str(p.label), not quick) for p in pairs]
    results = parallel_map(_inspect_pair, jobs, workers=workers, desc=f"check {info.name} {split}", progress=progress)
    report.num_checked = len(results)
    _collect(info, results, report)
    if not quick:
        _warn_missing_classes(info, report)
    return report


def quick_check(info: DatasetInfo | str, root: str | Path, split: str) -> CheckReport:
    """The cheap check run when training starts; raises DataError (the check's message) on errors."""
    report = check_dataset(info, root, split, quick=True, workers=1, progress=False)
    if not report.ok:
        raise DataError(
            report.error_message()
            + f"\nrun `sceneparse data check {report.dataset} {root} --split {split}` for the full report"
        )
    return report


def _check_encoding_setting(info: DatasetInfo, report: CheckReport) -> None:
    """A registry dataset read with a reduce_zero_label other than its files' encoding."""
    published = DATASETS.get(info.name)
    if published is None or published.reduce_zero_label == info.reduce_zero_label:
        return
    if published.reduce_zero_label:
        detail = (
            f"{info.name} labels store 0 = other/unlabelled and class k as k + 1, so they must be read with "
            "reduce_zero_label = true; set data.reduce_zero_label = true"
        )
    else:
        detail = (
            f"{info.name} labels store class k as k (0 is a class), so reduce_zero_label must be false; "
            "set data.reduce_zero_label = false"
            + ("; for the 59-class variant use dataset pascal_context_59" if info.name == "pascal_context" else "")
        )
    report.errors.append(Problem("wrong reduce_zero_label", report.root, detail))


def _allowed(values: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """Which stored values are a class or the ignore index under `info`'s encoding."""
    if info.reduce_zero_label:
        ok = (values >= 0) & (values <= info.num_classes)  # 0 is ignored, 1..C are the classes
    else:
        ok = (values >= 0) & (values < info.num_classes)
    return ok | (values == info.ignore_index)


def _collect(info: DatasetInfo, results: list[_PairResult], report: CheckReport) -> None:
    """Per-file problems, the class histogram, and the encoding hints."""
    all_values: dict[int, int] = defaultdict(int)
    all_ignore_files = []
    for result in results:
        report.errors += result.problems
        if result.image_hw and result.label_hw and tuple(result.image_hw) != tuple(result.label_hw):
            (ih, iw), (lh, lw) = result.image_hw, result.label_hw
            report.errors.append(
                Problem("size mismatch", result.label, f"label {lw}x{lh}, image {iw}x{ih} ({Path(result.image).name})")
            )
        if result.values is None:
            continue
        values, counts = result.values, result.counts
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            all_values[value] += count
        allowed = _allowed(values, info)
        if not allowed.all():
            bad = values[~allowed].tolist()
            report.out_of_range[result.label] = bad
            shown = ", ".join(map(str, bad[:12])) + (", ..." if len(bad) > 12 else "")
            report.errors.append(Problem("value out of range", result.label, f"values {shown}"))
        ignored = (values == info.ignore_index) | ((values == 0) if info.reduce_zero_label else False)
        classes = values[allowed & ~ignored] - (1 if info.reduce_zero_label else 0)
        np.add.at(report.class_pixels, classes, counts[allowed & ~ignored])
        report.class_images[classes] += 1
        report.ignore_pixels += int(counts[ignored].sum())
        if ignored.all():
            all_ignore_files.append(result.label)
    report.warnings += [Problem("label entirely ignore", path) for path in all_ignore_files]
    report.hints += _encoding_hints(info, all_values, report)


def _encoding_hints(info: DatasetInfo, values: dict[int, int], report: CheckReport) -> list[str]:
    """Recognise the usual wrong encodings from the stored values seen."""
    hints = []
    if any(p.kind == "colour label" for p in report.errors):
        hints.append(
            "some labels are colour images: a label must store class indices. Point the dataset at the "
            "index PNGs (e.g. *_labelTrainIds.png, not *_color.png), or map colours to indices first"
        )
    if not report.out_of_range:
        # Files stored 1-based hold 0 (other) and may reach num_classes; reduced files hold the
        # ignore value instead and never reach num_classes. Read with reduce_zero_label again, such
        # files pass the range check while class 0 is silently ignored and every class is shifted.
        top_class = max((v for v in values if v != info.ignore_index), default=-1)
        reduced_look = 0 not in values or top_class < info.num_classes
        if info.reduce_zero_label and info.ignore_index in values and reduced_look:
            hints.append(
                f"labels hold the ignore value {info.ignore_index} and "
                + ("no 0" if 0 not in values else f"nothing above {top_class}")
                + ": they look already reduced (classes from 0, ignore = 255); if so, read them with "
                "reduce_zero_label = false"
            )
        return hints
    bad = sorted({v for vs in report.out_of_range.values() for v in vs})
    top = max(values)
    c = info.num_classes
    if info.classes == CITYSCAPES_CLASSES and not info.reduce_zero_label and top <= 33:
        hints.append(
            f"values up to {top} look like Cityscapes labelIds (0..33), not trainIds (0..18, 255 ignore): "
            "use the *_labelTrainIds.png files; `sceneparse data prepare cityscapes ROOT` writes them from "
            "*_gtFine_labelIds.png with the official 34 -> 19 mapping"
        )
    elif info.name == "coco_stuff164k" and top <= 181:
        hints.append(
            f"values up to {top} look like COCO-Stuff stuffthingmaps ids (0..181, 255 unlabelled), not the 171 "
            "train ids: run `sceneparse data prepare coco_stuff164k ROOT`"
        )
    elif info.name == "coco_stuff10k" and top <= 182:
        hints.append(
            f"values up to {top} look like raw COCO-Stuff ids (1..182), not the converted 1..171: "
            "run `sceneparse data prepare coco_stuff10k ROOT`"
        )
    elif info.name.startswith("pascal_context") and top > 60:
        hints.append(
            f"values up to {top} look like the full 459-class Pascal Context labels: run "
            "`sceneparse data prepare pascal_context VOC2010_ROOT` for the 60/59-class maps"
        )
    elif not info.reduce_zero_label and bad == [c] and 0 in values:
        hints.append(
            f"values run 0..{c} for {c} classes: this looks like a 0 = 'other/background' encoding with "
            f"classes stored as 1..{c} (ADE20K style); read it with reduce_zero_label = true"
        )
    return hints


def _warn_missing_classes(info: DatasetInfo, report: CheckReport) -> None:
    absent = [name for name, count in zip(info.classes, report.class_images.tolist(), strict=True) if count == 0]
    if absent and report.num_checked:
        shown = ", ".join(absent[:20]) + (", ..." if len(absent) > 20 else "")
        report.warnings.append(Problem("classes never present", report.root, f"{len(absent)}: {shown}"))
