"""Invariants of the joint image/label transforms.

Labels never get a value by interpolation, the ignore index survives every step and fills the
padding, the crop respects cat_max_ratio when a window allows it, outputs have exactly the crop
size, the same (seed, epoch, index) gives the same sample, and the photometric steps come in a
random order (contrast before or after the HSV changes, as mmsegmentation does).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sceneparse.config.schema import DataConfig
from sceneparse.data import transforms as T
from sceneparse.data.dataset import build_dataset
from sceneparse.data.synth import synthesize

IGNORE = 255


def _random_label(rng: np.random.Generator, hw: tuple[int, int], values: list[int]) -> np.ndarray:
    """Blocky regions of the given values (so a resize has real edges to get wrong)."""
    coarse = rng.choice(values, size=(max(2, hw[0] // 5), max(2, hw[1] // 5))).astype(np.uint8)
    return T.resize_label(coarse, hw)


def _image_for(label: np.ndarray) -> np.ndarray:
    """An image whose colour is a function of the label (labels are the content)."""
    wide = label.astype(np.int64)
    return np.stack([wide, 255 - wide, (wide * 7) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("out_hw", [(7, 13), (31, 30), (64, 128), (199, 101)])
def test_label_resize_only_copies_values(out_hw):
    rng = np.random.default_rng(1)
    label = _random_label(rng, (40, 60), [0, 3, 7, 18, IGNORE])
    out = T.resize_label(label, out_hw)
    assert out.shape == out_hw and out.dtype == label.dtype
    assert set(np.unique(out).tolist()) <= set(np.unique(label).tolist())


def test_label_upscale_by_an_integer_factor_repeats_each_pixel():
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(T.resize_label(label, (6, 12)), np.repeat(np.repeat(label, 2, 0), 3, 1))


def _train_cfg(crop=(48, 64), scale=(96, 48), ratio=(0.5, 2.0), **fields) -> DataConfig:
    return DataConfig(dataset="voc", root="unused", crop_size=list(crop), scale=list(scale), ratio_range=list(ratio),
                      **fields)


@pytest.mark.parametrize("image_hw", [(20, 30), (48, 64), (97, 211), (300, 40)])
def test_train_output_has_the_crop_size_and_only_input_label_values(image_hw):
    transform = T.TrainTransform(_train_cfg())
    label = _random_label(np.random.default_rng(2), image_hw, [0, 1, 5, 20, IGNORE])
    image = _image_for(label)
    allowed = set(np.unique(label).tolist()) | {IGNORE}
    for seed in range(6):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape == (3, 48, 64) and out_image.dtype == torch.float32
        assert out_label.shape == (48, 64) and out_label.dtype == torch.int64
        assert set(out_label.unique().tolist()) <= allowed


def test_small_image_is_padded_with_zero_and_ignore():
    cfg = _train_cfg(crop=(64, 64), scale=(40, 30), ratio=(1.0, 1.0), flip_prob=0.0, photometric=False)
    label = np.ones((30, 40), dtype=np.uint8)
    label[:, :10] = IGNORE  # an ignore band that must survive
    image = np.full((30, 40, 3), 200, dtype=np.uint8)
    out_image, out_label = T.TrainTransform(cfg)(image, label, np.random.default_rng(0))
    valid = out_label[:30, :40]
    np.testing.assert_array_equal(valid.numpy(), label)  # identity geometry: same ignore pixels
    assert (out_label[30:] == IGNORE).all() and (out_label[:, 40:] == IGNORE).all()
    assert (out_image[:, 30:] == 0).all() and (out_image[:, :, 40:] == 0).all()
    expected = (200 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    torch.testing.assert_close(out_image[:, 5, 5], expected)


def test_ignore_share_survives_resize_crop_and_flip():
    label = np.zeros((60, 80), dtype=np.uint8)
    label[:, 20:40] = IGNORE  # a quarter of the image
    label[30:, 50:] = 4
    transform = T.TrainTransform(_train_cfg(crop=(256, 256), scale=(80, 60), ratio=(0.5, 2.0), photometric=False))
    for seed in range(5):
        image, out = transform(_image_for(label), label, np.random.default_rng(seed))
        content = (image != 0).any(0)  # the crop holds the whole resized image; the rest is padding
        h, w = int(content.any(1).sum()), int(content.any(0).sum())
        assert content[:h, :w].all() and not content[h:].any() and not content[:, w:].any()
        assert (out[h:] == IGNORE).all() and (out[:, w:] == IGNORE).all()
        share = float((out[:h, :w] == IGNORE).float().mean())
        assert abs(share - 0.25) < 0.03, share  # the ignore band kept its share of the image


def _share(label: np.ndarray) -> float:
    counts = np.bincount(label[label != IGNORE].ravel())
    counts = counts[counts > 0]
    return counts.max() / counts.sum() if len(counts) > 1 else 1.0


def _two_class_label() -> np.ndarray:
    """Class 0 on the left 70 columns, class 1 on the right 30: only windows starting at x > 32.5 of
    a 50-wide crop keep class 0 under 75%."""
    label = np.zeros((40, 100), dtype=np.uint8)
    label[:, 70:] = 1
    return label


def test_crop_respects_cat_max_ratio_when_a_window_allows_it():
    label = _two_class_label()
    image = _image_for(label)
    shares = {}
    for ratio, tries in ((1.0, 10), (0.75, 10), (0.75, 500)):
        shares[ratio, tries] = [
            _share(T.random_crop(image, label, (40, 50), ratio, IGNORE, np.random.default_rng(seed), tries=tries)[1])
            for seed in range(40)
        ]
    unconstrained = np.mean(np.array(shares[1.0, 10]) < 0.75)
    constrained = np.mean(np.array(shares[0.75, 10]) < 0.75)
    assert unconstrained < 0.6 and constrained >= 0.9  # 10 tries find an allowed window almost always
    assert max(shares[0.75, 500]) < 0.75  # and enough tries always do


@pytest.mark.parametrize("image_hw, scale", [((60, 120), (240, 120)), ((97, 211), (100, 50)), ((40, 40), (64, 64))])
def test_fused_resize_and_crop_equals_resizing_then_cropping(image_hw, scale):
    rng = np.random.default_rng(9)
    label = _random_label(rng, image_hw, [0, 2, 3, IGNORE])
    image = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    for seed in range(8):
        draws, fused_draws = np.random.default_rng(seed), np.random.default_rng(seed)
        big_image, big_label = T.random_resize(image, label, scale, (0.5, 2.0), draws)
        image_ref, label_ref = T.random_crop(big_image, big_label, (48, 64), 0.75, IGNORE, draws)
        image_out, label_out = T.random_resized_crop(image, label, scale, (0.5, 2.0), (48, 64), 0.75, IGNORE,
                                                     fused_draws)
        np.testing.assert_array_equal(label_out, label_ref)
        assert image_out.shape == image_ref.shape
        difference = np.abs(image_out.astype(int) - image_ref.astype(int))
        assert difference.max() <= 2 and difference.mean() < 0.25  # Pillow's fixed-point weights, on noise
        assert draws.random() == fused_draws.random()  # the same draws were consumed


def test_crop_without_an_allowed_window_still_gives_the_crop():
    label = np.zeros((40, 100), dtype=np.uint8)
    label[0, 0] = 1
    crop_image, crop_label = T.random_crop(_image_for(label), label, (32, 32), 0.75, IGNORE, np.random.default_rng(0))
    assert crop_image.shape == (32, 32, 3) and crop_label.shape == (32, 32)


def test_flip_mirrors_image_and_label_together():
    label = np.arange(20, dtype=np.uint8).reshape(4, 5)
    image = _image_for(label)
    flips = 0
    for seed in range(20):
        out_image, out_label = T.random_flip(image, label, 0.5, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_image[..., 0], out_label)  # still aligned
        flips += int(out_label[0, 0] == 4)
    assert 3 <= flips <= 17


def test_photometric_distortion_applies_contrast_in_a_random_order(monkeypatch):
    calls: list[str] = []
    original = T._affine

    def recording(values, alpha=1.0, beta=0.0):
        if values.ndim == 3 and alpha != 1.0:
            calls.append("contrast")
        elif values.ndim == 2:
            calls.append("saturation")
        return original(values, alpha, beta)

    monkeypatch.setattr(T, "_affine", recording)
    orders = set()
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for seed in range(60):
        calls.clear()
        out = T.photometric_distortion(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
        if calls in (["contrast", "saturation"], ["saturation", "contrast"]):
            orders.add(tuple(calls))
    assert orders == {("contrast", "saturation"), ("saturation", "contrast")}


def test_photometric_distortion_is_seeded_and_changes_colours():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    first = T.photometric_distortion(image, np.random.default_rng(5))
    np.testing.assert_array_equal(first, T.photometric_distortion(image, np.random.default_rng(5)))
    changed = [not np.array_equal(T.photometric_distortion(image, np.random.default_rng(s)), image) for s in range(10)]
    assert sum(changed) >= 8


def test_test_transform_resizes_the_image_keeping_aspect_and_leaves_the_label():
    cfg = DataConfig(dataset="voc", root="unused", scale=[2048, 512])
    label = _random_label(np.random.default_rng(3), (100, 150), [0, 2, IGNORE])
    image, out_label = T.TestTransform(cfg)(_image_for(label), label)
    assert image.shape == (3, 512, 768)  # short side to 512, long side 768 <= 2048
    np.testing.assert_array_equal(out_label.numpy(), label)
    assert T.rescale_size((1024, 2048), (2048, 1024)) == (1024, 2048)
    assert T.rescale_size((512, 683), (2048, 512)) == (512, 683)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    synthesize("voc", root, n=3, size=48, seed=0)
    return root


def test_same_seed_epoch_and_index_give_the_same_sample(voc_root):
    cfg = DataConfig(dataset="voc", root=str(voc_root), crop_size=[32, 32], scale=[96, 48])
    dataset = build_dataset(cfg, "train", train=True)
    first, again = dataset[(7, 2, 1)], dataset[(7, 2, 1)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    other_epoch = dataset[(7, 3, 1)]
    other_seed = dataset[(8, 2, 1)]
    assert not torch.equal(first["image"], other_epoch["image"])
    assert not torch.equal(first["image"], other_seed["image"])
    assert torch.equal(dataset[1]["image"], dataset[(0, 0, 1)]["image"])
    # a fresh dataset object (another worker, another process) agrees
    assert torch.equal(build_dataset(cfg, "train", train=True)[(7, 2, 1)]["label"], first["label"])
