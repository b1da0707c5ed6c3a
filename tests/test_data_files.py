"""Images are read as the source toolboxes read them (issue 14 point 4): 16-bit PNGs scaled to
8 bits, not clipped; a JPEG's EXIF orientation applied, in training, evaluation and prediction.

References: OpenCV's documented conversion (IMREAD_COLOR keeps the high byte of 16-bit samples) and
the EXIF standard's orientation 6 (displayed = stored rotated 90 degrees clockwise); mmcv's own
decoding of such files is pinned in test_data_pipeline_fidelity.py.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sceneparse.data.files import image_size, read_image, read_label
from sceneparse.errors import DataError
from tests.test_eval_cli import tiny_preset, tiny_weights


def _rotated_jpeg(path: Path) -> np.ndarray:
    """A 24x40 JPEG stored with a red band on its left and EXIF orientation 6; returns the stored pixels."""
    stored = np.full((24, 40, 3), 40, np.uint8)
    stored[:, :8] = (250, 10, 10)
    exif = Image.Image().getexif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return stored


def test_sixteen_bit_png_is_scaled_to_eight_bits_not_clipped(tmp_path):
    values = np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "grey16.png"), values)
    cv2.imwrite(str(tmp_path / "rgb16.png"), np.repeat(values[..., None], 3, axis=2))
    for name in ("grey16.png", "rgb16.png"):
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (1, 5, 3)
        np.testing.assert_array_equal(image[0, :, 0], values[0] >> 8)  # 0, 0, 1, 128, 255


def test_jpeg_exif_orientation_is_applied(tmp_path):
    _rotated_jpeg(tmp_path / "rotated.jpg")
    image = read_image(tmp_path / "rotated.jpg")
    assert image.shape == (40, 24, 3)  # displayed upright: 90 degrees clockwise
    assert image[:8, :, 0].mean() > 200 and image[8:, :, 0].mean() < 100  # the left band is now on top
    assert image_size(tmp_path / "rotated.jpg") == (40, 24)  # the header agrees with the pixels


def test_prediction_is_on_the_displayed_orientation(tmp_path):
    from sceneparse.segmenter import Segmenter

    _rotated_jpeg(tmp_path / "rotated.jpg")
    segmenter = Segmenter.from_pretrained(tiny_preset(), tiny_weights(tmp_path / "tiny.safetensors"), device="cpu")
    assert segmenter.predict(tmp_path / "rotated.jpg").shape == (40, 24)
    assert segmenter.predict(Image.open(tmp_path / "rotated.jpg")).shape == (40, 24)


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="missing.png"):
        read_label(tmp_path / "missing.png")


def test_grey_and_palette_labels_keep_their_indices(tmp_path):
    label = np.random.default_rng(0).integers(0, 21, (9, 13)).astype(np.uint8)
    Image.fromarray(label).save(tmp_path / "grey.png")
    palette = Image.fromarray(label, "L").convert("P")
    palette.putpalette(list(range(256)) * 3)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_label(tmp_path / "grey.png"), label)
    np.testing.assert_array_equal(read_label(tmp_path / "palette.png"), label)
    wide = (label.astype(np.uint16) * 1000)
    cv2.imwrite(str(tmp_path / "wide.png"), wide)
    out = read_label(tmp_path / "wide.png")
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, wide)


def test_fast_png_decoding_gives_opencvs_pixels(tmp_path):
    """8-bit RGB / grey PNGs go through libspng (faster); the pixels must be OpenCV's."""
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
    np.testing.assert_array_equal(read_label(tmp_path / "grey.png"), grey)


def test_one_bit_label_keeps_its_indices(tmp_path):
    mask = np.random.default_rng(5).integers(0, 2, (8, 16)).astype(bool)
    Image.fromarray(mask).save(tmp_path / "mask.png")  # a 1-bit grey PNG
    np.testing.assert_array_equal(read_label(tmp_path / "mask.png"), mask.astype(np.uint8))
