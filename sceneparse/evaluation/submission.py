"""Format-only runs (`sceneparse test --format-only`): predictions in the layout each benchmark server takes.

* Cityscapes (and the night sets on its classes): labelIds PNGs under the images' names
  ("berlin_000000_000019_leftImg8bit.png", the names mmsegmentation's `format_only` writes and the
  server matches by "<city>_<seq>_<frame>"), flat in OUT/cityscapes_results/, and
  OUT/cityscapes_results.zip with the PNGs at its top level, ready to upload.
* ADE20K: the SceneParsing format, class indices 1..150 (0 = other is never predicted), one PNG per
  image named as the image, in OUT/ade20k_results/ and OUT/ade20k_results.zip.
* VOC: VOC's segmentation-results layout, palette PNGs of the class ids
  (OUT/results/VOC2012/Segmentation/comp6_test_cls/<name>.png, comp6: trained on outside data such
  as SBD) and OUT/results.tar.gz holding results/.
* Any other dataset: palette PNGs of the training ids named by the sample key in OUT/pred/
  (what `--save-pred` writes).

`sceneparse score` reads every one of these layouts back.
"""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np

from sceneparse.data.files import write_png
from sceneparse.data.registry import DatasetInfo, pred_name
from sceneparse.evaluation import cityscapes
from sceneparse.paths import inside
from sceneparse.visualize import save_label_png

CITYSCAPES_DIR = "cityscapes_results"
ADE20K_DIR = "ade20k_results"
VOC_DIR = "results/VOC2012/Segmentation/comp6_test_cls"
PRED_DIR = "pred"


def _write_archive(archive: Path, folder: Path, top: Path) -> None:
    """Pack every file under `folder` (names relative to `top`), atomically."""
    from sceneparse.weights import atomic_write

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))

    def write(tmp: str) -> None:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
                for path in files:
                    zipped.write(path, path.relative_to(top).as_posix())
        else:
            with tarfile.open(tmp, "w:gz") as tarred:
                for path in files:
                    tarred.add(path, path.relative_to(top).as_posix())

    atomic_write(archive, write)


class SubmissionWriter:
    """Called with each prediction (training ids) and its image path; `finish` packs the archive."""

    def __init__(self, info: DatasetInfo, out_dir: str | Path, keys: dict[str, str]) -> None:
        self.info, self.out_dir, self.keys = info, Path(out_dir), keys
        if info.name in cityscapes.CITYSCAPES_LIKE:
            self.folder, self.archive = self.out_dir / CITYSCAPES_DIR, self.out_dir / f"{CITYSCAPES_DIR}.zip"
        elif info.name == "ade20k":
            self.folder, self.archive = self.out_dir / ADE20K_DIR, self.out_dir / f"{ADE20K_DIR}.zip"
        elif info.name in ("voc", "voc_aug"):
            self.folder, self.archive = self.out_dir / VOC_DIR, self.out_dir / "results.tar.gz"
        else:
            self.folder, self.archive = self.out_dir / PRED_DIR, None

    def __call__(self, pred: np.ndarray, image_path: str) -> None:
        key = self.keys[image_path]
        if self.info.name in cityscapes.CITYSCAPES_LIKE:
            write_png(self.folder / cityscapes.result_name(image_path), cityscapes.to_label_ids(pred))
        elif self.info.name == "ade20k":
            write_png(self.folder / f"{Path(key).name}.png", (np.asarray(pred) + 1).astype(np.uint8))
        else:
            save_label_png(inside(self.folder, pred_name(key), f"sample key of {image_path}"), pred,
                           self.info.palette)

    def finish(self) -> Path | None:
        """Pack the archive (rank 0, after every process wrote its files); its path, or None."""
        if self.archive is None:
            return None
        top = self.out_dir if self.info.name in ("voc", "voc_aug") else self.folder
        _write_archive(self.archive, self.folder, top)
        return self.archive
