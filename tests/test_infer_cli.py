"""`sceneparse infer` on a user's folder: every readable image labelled, a corrupt one named and skipped."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sceneparse.cli import main
from sceneparse.data.files import read_image, read_label
from sceneparse.segmenter import Segmenter
from sceneparse.visualize import overlay
from tests.test_eval_cli import set_args, tiny_preset, tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("infer") / "tiny.safetensors")


def photo_folder(root: Path) -> Path:
    """photos/a.jpg, photos/b.png, photos/night/c.png and a truncated photos/broken.png."""
    rng = np.random.default_rng(7)

    def smooth(height: int, width: int) -> Image.Image:  # photo-like: JPEG keeps it close
        coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
        return coarse.resize((width, height), Image.Resampling.BILINEAR)

    (root / "night").mkdir(parents=True)
    smooth(48, 64).save(root / "a.jpg", quality=95)
    smooth(40, 40).save(root / "b.png")
    smooth(30, 50).save(root / "night" / "c.png")
    (root / "broken.png").write_bytes((root / "b.png").read_bytes()[:200])
    (root / "notes.txt").write_text("not an image, not looked at")
    return root


def test_folder_with_a_corrupt_image(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photos = photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    status = main(["infer", "pspnet_r18-d8_512x1024_80k_cityscapes", str(photos), "--weights", str(weights),
                   "--out", str(out), "--alpha", "0.4", "--device", "cpu", *set_args()])
    captured = capsys.readouterr()
    assert status == 1  # something was skipped
    assert "broken.png" in captured.err and "labelled 3 of 4 images" in captured.out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(f"{name}{suffix}" for name in ("a", "b", "night/c")
                             for suffix in (".png", "_overlay.jpg", "_legend.png"))
    segmenter = Segmenter.from_pretrained(tiny_preset(), weights, device="cpu")
    for name, source in (("a", photos / "a.jpg"), ("night/c", photos / "night" / "c.png")):
        ids = read_label(out / f"{name}.png")
        np.testing.assert_array_equal(ids, segmenter.predict(source))  # pixel values are the class ids
        with Image.open(out / f"{name}.png") as png:
            assert png.mode == "P"
        written_overlay = read_image(out / f"{name}_overlay.jpg").astype(int)  # JPEG: close, not equal
        error = np.abs(written_overlay - overlay(read_image(source), ids, segmenter.palette, 0.4)).mean()
        assert error < 0.5 * np.abs(written_overlay - read_image(source)).mean()  # the colours are blended in
        legend_height = read_image(out / f"{name}_legend.png").shape[0]
        assert legend_height == 6 + 24 * len(np.unique(ids))  # one row per class present


def test_weights_file_alone_names_the_model(weights: Path, tmp_path: Path) -> None:
    photos = photo_folder(tmp_path / "photos")
    status = main(["infer", str(weights), str(photos / "b.png"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert status == 0
    assert read_label(tmp_path / "out" / "b.png").shape == (40, 40)


def test_bad_alpha_and_empty_input_are_errors(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["infer", str(weights), str(tmp_path), "--out", str(tmp_path / "o"), "--alpha", "2"]) == 1
    assert "--alpha" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["infer", str(weights), str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "no images found" in capsys.readouterr().err


def test_onnx_model_gives_the_pytorch_labels(weights: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    onnx_export = pytest.importorskip("sceneparse.export.onnx")
    segmenter = Segmenter.from_pretrained(tiny_preset(), weights, device="cpu")
    model_file = onnx_export.export_onnx(segmenter.model, tmp_path / "tiny.onnx", size=(64, 96), dynamic=True)
    photos = photo_folder(tmp_path / "photos")
    status = main(["infer", str(weights), str(photos / "a.jpg"), "--onnx", str(model_file),
                   "--out", str(tmp_path / "out")])
    assert status == 0
    agree = (read_label(tmp_path / "out" / "a.png") == segmenter.predict(photos / "a.jpg")).mean()
    assert agree > 0.99
