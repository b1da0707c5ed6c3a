"""Keys that become file names stay inside their folder (issue 14, point 1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sceneparse.api import build_model
from sceneparse.cli import main
from sceneparse.data.files import read_label, write_jpeg, write_png
from sceneparse.errors import DataError
from sceneparse.hub import DownloadError, url_filename
from sceneparse.paths import inside, read_list_entries
from sceneparse.weights import save_weights
from tests.test_train_resume import BASE_PRESET, TINY, make_voc, tiny_preset


@pytest.mark.parametrize("entry", ["../../../../x", "/etc/passwd", "a/../../b", "..\\..\\x", "C:/x"])
def test_a_list_entry_that_would_escape_is_refused_naming_file_and_line(tmp_path: Path, entry: str) -> None:
    lists = tmp_path / "val.txt"
    lists.write_text(f"2007_000032\n\n{entry}\n")
    with pytest.raises(DataError, match=r"val\.txt, line 3: entry .* is refused"):
        read_list_entries(lists)


def test_plain_relative_entries_pass(tmp_path: Path) -> None:
    lists = tmp_path / "val.txt"
    lists.write_text("2007_000032\n  aachen/aachen_000000_000019  \n")
    assert read_list_entries(lists) == ["2007_000032", "aachen/aachen_000000_000019"]
    assert inside(tmp_path, "a/b.png") == tmp_path / "a" / "b.png"
    with pytest.raises(DataError, match="outside"):
        inside(tmp_path, "../b.png", "sample key")


@pytest.mark.parametrize("url", ["http://host/weights/..", "http://host/a/%2e%2e", "http://host/", "http://h/x/../y.pth"])
def test_a_url_that_names_no_plain_file_is_refused(url: str) -> None:
    with pytest.raises(DownloadError, match="URL"):
        url_filename(url)


def test_test_save_pred_never_writes_outside_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's reproduction: a split list line climbing out of the dataset made `test --save-pred`
    overwrite a ground-truth label outside --out. The line is refused, naming the list and line."""
    root = make_voc(tmp_path / "voc", n=4)
    # an image and label pair outside the dataset, where the escaping entry points
    outside = tmp_path / "outside"
    image = np.full((64, 64, 3), 90, np.uint8)
    write_png(outside / "x.png", np.zeros((64, 64), np.uint8))
    write_jpeg(outside / "x.jpg", image)
    label_before = (outside / "x.png").read_bytes()
    val = root / "ImageSets" / "Segmentation" / "val.txt"
    val.write_text(val.read_text() + "../../outside/x\n")
    line = len(val.read_text().splitlines())
    assert (root / "JPEGImages" / "../../outside/x.jpg").is_file()  # the escape would find a real pair
    weights = tmp_path / "w.safetensors"
    save_weights(build_model(tiny_preset()), weights, {"preset": BASE_PRESET})
    out = tmp_path / "out"
    status = main(["test", BASE_PRESET, "--weights", str(weights), "--data-root", str(root), "--out", str(out),
                   "--save-pred", "--no-figures", "--device", "cpu", *[a for item in TINY for a in ("--set", item)]])
    err = capsys.readouterr().err
    assert status == 1
    assert f"val.txt, line {line}: entry '../../outside/x' is refused" in err and "Traceback" not in err
    assert (outside / "x.png").read_bytes() == label_before
    assert read_label(outside / "x.png").max() == 0
