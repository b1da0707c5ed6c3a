"""`Segmenter`: the Python API on paths, PIL images, arrays and lists, in every inference mode."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sceneparse
from sceneparse.api import build_model
from sceneparse.config.schema import Preset
from sceneparse.errors import DataError
from sceneparse.segmenter import Segmenter
from tests.test_eval_cli import tiny_preset, tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("seg") / "tiny.safetensors")


@pytest.fixture(scope="module")
def segmenter(weights: Path) -> Segmenter:
    return Segmenter.from_pretrained(tiny_preset(), weights, device="cpu")


def photo(height: int = 50, width: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def with_test(preset: Preset, **changes: object) -> Preset:
    return dataclasses.replace(preset, test=dataclasses.replace(preset.test, **changes))


def test_every_input_kind_gives_the_same_labels(segmenter: Segmenter, tmp_path: Path) -> None:
    image = photo()
    Image.fromarray(image).save(tmp_path / "a.png")
    from_array = segmenter.predict(image)
    assert from_array.shape == (50, 70) and from_array.dtype == np.int64
    assert len(np.unique(from_array)) >= 2  # the tiny model does not answer one class everywhere
    np.testing.assert_array_equal(segmenter.predict(tmp_path / "a.png"), from_array)
    np.testing.assert_array_equal(segmenter.predict(str(tmp_path / "a.png")), from_array)
    np.testing.assert_array_equal(segmenter.predict(Image.fromarray(image)), from_array)
    rgba = np.concatenate([image, np.full((50, 70, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(segmenter.predict(rgba), from_array)


def test_probabilities_at_the_image_size(segmenter: Segmenter) -> None:
    image = photo(37, 91)
    probs = segmenter.predict_proba(image)
    assert probs.shape == (5, 37, 91) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=0), segmenter.predict(image))


def test_a_list_is_a_batch_with_the_same_answers(segmenter: Segmenter) -> None:
    images = [photo(seed=1), photo(40, 40, seed=2), photo(seed=3)]  # two sizes: grouped per size
    batch = segmenter.predict(images)
    assert isinstance(batch, list) and len(batch) == 3
    for image, labels in zip(images, batch, strict=True):
        np.testing.assert_array_equal(labels, segmenter.predict(image))
    probs = segmenter.predict_proba(images)
    assert [p.shape for p in probs] == [(5, 50, 70), (5, 40, 40), (5, 50, 70)]


def test_bad_inputs_are_named(segmenter: Segmenter, tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        segmenter.predict(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="uint8"):
        segmenter.predict(photo().astype(np.float32))
    with pytest.raises(TypeError, match="int"):
        segmenter.predict(3)  # type: ignore[arg-type]


def test_weights_file_names_its_preset(weights: Path) -> None:
    seg = sceneparse.Segmenter.from_pretrained(weights, device="cpu")
    assert seg.preset.model.num_classes == 5 and seg.preset.data.scale == [96, 64]
    np.testing.assert_array_equal(seg.predict(photo()), Segmenter.from_pretrained(tiny_preset(), weights,
                                                                                   device="cpu").predict(photo()))


def test_slide_with_the_whole_image_as_window_equals_whole(weights: Path) -> None:
    # photo(50, 70) is resized to the base scale 96x64 (long x short): 64 x 90 -> one 64x90 window.
    preset = with_test(tiny_preset(), crop_size=[64, 96], stride=[32, 32])
    model = build_model(preset, weights)
    whole = Segmenter(model, preset, mode="whole").predict_proba(photo())
    slide = Segmenter(model, preset, mode="slide").predict_proba(photo())
    np.testing.assert_allclose(slide, whole, atol=1e-6)
    overlapping = Segmenter(model, with_test(preset, crop_size=[40, 40], stride=[20, 20]), mode="slide")
    assert not np.allclose(overlapping.predict_proba(photo()), whole, atol=1e-4)  # the windows do matter


def test_semseg_slide_style_reaches_the_segmenter(weights: Path) -> None:
    # a window larger than the 64 x 90 test image: mmseg shrinks it (= whole), semseg pads with the mean
    preset = with_test(tiny_preset(), crop_size=[80, 120], stride=[54, 80], scales=[1.0], flip=True)
    model = build_model(preset, weights)
    whole = Segmenter(model, preset, mode="whole").predict_proba(photo())
    np.testing.assert_allclose(Segmenter(model, preset, mode="slide").predict_proba(photo()), whole, atol=1e-6)
    semseg = with_test(preset, slide_style="semseg")
    padded = Segmenter(model, semseg, mode="slide").predict_proba(photo())
    assert not np.allclose(padded, whole, atol=1e-4)
    np.testing.assert_allclose(padded.sum(axis=0), 1.0, atol=1e-5)
    # every window is mirrored already: --tta's flip (single scale) changes nothing
    np.testing.assert_allclose(Segmenter(model, semseg, mode="slide", tta=True).predict_proba(photo()), padded,
                               atol=1e-6)


class MirrorSymmetric(torch.nn.Module):
    """A model whose logits are symmetric under horizontal flips."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.num_classes, self.align_corners = inner, inner.num_classes, inner.align_corners

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.inner(x)["out"] + self.inner(x.flip(-1))["out"].flip(-1)}


def test_flip_tta_of_a_symmetric_model_equals_no_tta(weights: Path) -> None:
    preset = with_test(tiny_preset(), scales=[1.0], flip=True)
    model = MirrorSymmetric(build_model(preset, weights).eval())
    plain = Segmenter(model, preset).predict_proba(photo())
    flipped = Segmenter(model, preset, tta=True)
    assert flipped.settings.flip and flipped.settings.scales == (1.0,)
    np.testing.assert_allclose(flipped.predict_proba(photo()), plain, atol=1e-6)


def test_multiscale_with_the_single_scale_one_equals_whole(weights: Path) -> None:
    preset = with_test(tiny_preset(), scales=[1.0], flip=False)
    model = build_model(preset, weights)
    np.testing.assert_allclose(Segmenter(model, preset, tta=True).predict_proba(photo()),
                               Segmenter(model, preset).predict_proba(photo()), atol=1e-6)
    several = Segmenter(model, with_test(preset, scales=[0.75, 1.0, 1.25]), tta=True)
    assert several.settings.scales == (0.75, 1.0, 1.25)
    np.testing.assert_allclose(several.predict_proba(photo()).sum(axis=0), 1.0, atol=1e-5)
