"""Invariants of the joint image/label transforms, and their OpenCV / mmseg definitions.

Labels never get a value by interpolation, the ignore index survives every step and fills the
padding, the crop respects cat_max_ratio when a window allows it, outputs have exactly the crop
size, the same (seed, epoch, index) gives the same sample, and the photometric steps come in a
random order (contrast before or after the HSV changes, as mmsegmentation does).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from sceneparse.config.schema import DataConfig
from sceneparse.data import pipelines as P
from sceneparse.data import transforms as T
from sceneparse.data.dataset import build_dataset
from sceneparse.data.device_batch import model_input
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


def _normalised(transform, image, label, rng):
    """A training sample as the model sees it: the worker's output, normalised as on the device."""
    out = transform(image, label, rng)
    batch = {key: value.unsqueeze(0) for key, value in out.items()}
    return model_input(batch, "cpu", torch.float32, transform.mean, transform.std)[0], out["label"]


def _train_cfg(crop=(48, 64), scale=(96, 48), ratio=(0.5, 2.0), **fields) -> DataConfig:
    return DataConfig(dataset="voc", root="unused", crop_size=list(crop), scale=list(scale), ratio_range=list(ratio),
                      **fields)


@pytest.mark.parametrize("image_hw", [(20, 30), (48, 64), (97, 211), (300, 40)])
def test_train_output_has_the_crop_size_and_only_input_label_values(image_hw):
    transform = P.TrainTransform(_train_cfg())
    label = _random_label(np.random.default_rng(2), image_hw, [0, 1, 5, 20, IGNORE])
    image = _image_for(label)
    allowed = set(np.unique(label).tolist()) | {IGNORE}
    for seed in range(6):
        out = transform(image, label, np.random.default_rng(seed))
        out_image, out_label = out["image"], out["label"]
        assert out_image.shape == (48, 64, 3) and out_image.dtype == torch.uint8  # normalised on the device
        assert out_label.shape == (48, 64) and out_label.dtype == torch.uint8  # widened on the device
        assert set(out_label.unique().tolist()) <= allowed


def test_small_image_is_padded_with_zero_and_ignore():
    cfg = _train_cfg(crop=(64, 64), scale=(40, 30), ratio=(1.0, 1.0), flip_prob=0.0, photometric=False)
    label = np.ones((30, 40), dtype=np.uint8)
    label[:, :10] = IGNORE  # an ignore band that must survive
    image = np.full((30, 40, 3), 200, dtype=np.uint8)
    out_image, out_label = _normalised(P.TrainTransform(cfg), image, label, np.random.default_rng(0))
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
    transform = P.TrainTransform(_train_cfg(crop=(256, 256), scale=(80, 60), ratio=(0.5, 2.0), photometric=False))
    for seed in range(5):
        image, out = _normalised(transform, _image_for(label), label, np.random.default_rng(seed))
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


def _crop(label, crop, ratio, rng, tries=10, extra=True):
    window = T.choose_window(lambda w: w.of(label), label.shape, crop, ratio, IGNORE, rng, tries, extra)
    return window.of(label)


def test_crop_respects_cat_max_ratio_when_a_window_allows_it():
    label = _two_class_label()
    shares = {}
    for ratio, tries in ((1.0, 10), (0.75, 10), (0.75, 500)):
        shares[ratio, tries] = [_share(_crop(label, (40, 50), ratio, np.random.default_rng(seed), tries))
                                for seed in range(40)]
    unconstrained = np.mean(np.array(shares[1.0, 10]) < 0.75)
    constrained = np.mean(np.array(shares[0.75, 10]) < 0.75)
    assert unconstrained < 0.6 and constrained >= 0.9  # 10 tries find an allowed window almost always
    assert max(shares[0.75, 500]) < 0.75  # and enough tries always do


@pytest.mark.parametrize("extra, draws", [(True, 11), (False, 10)])
def test_crop_fallback_when_no_try_passes(extra, draws):
    """mmseg keeps an 11th, untested draw; sssegmentation the 10th (last tested) one."""
    label = np.zeros((40, 100), dtype=np.uint8)  # one class: no window can pass
    window = T.choose_window(lambda w: w.of(label), label.shape, (32, 32), 0.75, IGNORE,
                             np.random.default_rng(3), 10, extra)
    replay = np.random.default_rng(3)
    expected = [(int(replay.integers(0, 9)), int(replay.integers(0, 69))) for _ in range(draws)][-1]
    assert (window.top, window.left) == expected and (window.height, window.width) == (32, 32)


@pytest.mark.parametrize("pipeline", ["mmseg", "ssseg"])
@pytest.mark.parametrize("image_hw, scale", [((60, 120), (240, 120)), ((97, 211), (100, 50)), ((40, 40), (64, 64))])
def test_resize_and_crop_equal_opencv_whole_resize_then_crop(pipeline, image_hw, scale):
    """The sources resize the whole image (cv2 INTER_LINEAR) and label (cv2 INTER_NEAREST), then crop;
    the crop chosen on index maps must give those very pixels."""
    rng = np.random.default_rng(9)
    label = _random_label(rng, image_hw, [0, 2, 3, IGNORE])
    image = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    transform = P.TrainTransform(_train_cfg(scale=scale, photometric=False, pipeline=pipeline))
    for seed in range(8):
        draw = transform.draw(label, np.random.default_rng(seed))
        image_out, label_out = transform.apply(image, label, draw)
        h, w = T.rescale_size(image_hw, (int(scale[0] * draw.ratio), int(scale[1] * draw.ratio)))
        big_image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        big_label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        if draw.flip:
            big_image, big_label = big_image[:, ::-1], big_label[:, ::-1]
            win = draw.window
            win = T.Window(win.top, w - win.left - win.width, win.height, win.width)
        else:
            win = draw.window
        np.testing.assert_array_equal(label_out, win.of(big_label))
        np.testing.assert_array_equal(image_out, win.of(big_image))
        uncut = transform.apply(image, label, dataclasses.replace(draw, label_crop=None))  # cut in apply
        np.testing.assert_array_equal(uncut[1], label_out)


def test_opencv_nearest_takes_the_floor_of_i_times_in_over_out():
    """cv2's INTER_NEAREST (the sources' label resize) picks floor(i * in / out), not pixel centres."""
    for in_size, out_size in ((10, 4), (7, 13), (100, 33), (33, 100)):
        expected = np.minimum(np.floor(np.arange(out_size) * in_size / out_size), in_size - 1).astype(int)
        np.testing.assert_array_equal(T.nearest_indices(in_size, out_size), expected)


def test_flip_mirrors_image_and_label_together():
    label = np.arange(20, dtype=np.uint8).reshape(4, 5)
    image = _image_for(label)
    transform = P.TrainTransform(_train_cfg(crop=(4, 5), scale=(5, 4), ratio=(1.0, 1.0), photometric=False))
    flips = 0
    for seed in range(20):
        draw = transform.draw(label, np.random.default_rng(seed))
        out_image, out_label = transform.apply(image, label, draw)
        np.testing.assert_array_equal(out_image[..., 0], out_label)  # still aligned
        flips += int(out_label[0, 0] == 4)
        assert draw.flip == (out_label[0, 0] == 4)
    assert 3 <= flips <= 17


def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg's PhotoMetricDistortion.convert, as its source writes it."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("contrast_first", [True, False])
def test_photometric_lookup_tables_equal_the_float_arithmetic(contrast_first):
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    p = T.Photometric(brightness=-17.3, contrast_first=contrast_first, contrast=1.37, saturation=0.61, hue=-7)
    expected = _convert(image, beta=p.brightness)
    if contrast_first:
        expected = _convert(expected, alpha=p.contrast)
    hsv = cv2.cvtColor(expected, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = _convert(hsv[..., 1], alpha=p.saturation)
    expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    hsv = cv2.cvtColor(expected, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + p.hue) % 180
    expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first:
        expected = _convert(expected, alpha=p.contrast)
    np.testing.assert_array_equal(T.apply_photometric(image, p), expected)


def test_photometric_draws_both_orders_and_skips_steps():
    draws = [T.draw_photometric(np.random.default_rng(seed)) for seed in range(80)]
    assert {d.contrast_first for d in draws} == {True, False}
    for field in ("brightness", "contrast", "saturation", "hue"):
        present = sum(getattr(d, field) is not None for d in draws)
        assert 20 <= present <= 60, field  # each step with probability 1/2
    hues = [d.hue for d in draws if d.hue is not None]
    assert min(hues) >= -18 and max(hues) < 18


def test_photometric_distortion_is_seeded_and_changes_colours():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)

    def distort(seed):
        return T.apply_photometric(image, T.draw_photometric(np.random.default_rng(seed)))

    np.testing.assert_array_equal(distort(5), distort(5))
    changed = [not np.array_equal(distort(s), image) for s in range(10)]
    assert sum(changed) >= 8


def test_ssseg_pads_the_crop_centred():
    cfg = _train_cfg(crop=(64, 64), scale=(40, 30), ratio=(1.0, 1.0), flip_prob=0.0, photometric=False,
                     pipeline="ssseg")
    label = np.ones((30, 40), dtype=np.uint8)
    out_image, out_label = _normalised(P.TrainTransform(cfg), np.full((30, 40, 3), 200, np.uint8), label,
                                       np.random.default_rng(0))
    top, left = (64 - 30) // 2, (64 - 40) // 2
    assert (out_label[top : top + 30, left : left + 40] == 1).all() and int((out_label == 1).sum()) == 30 * 40
    assert (out_image[:, :top] == 0).all() and (out_image[:, :, :left] == 0).all()


def test_semseg_pipeline_gives_the_crop_and_pads_with_the_mean():
    cfg = _train_cfg(crop=(64, 64), ratio=(0.5, 0.5), pipeline="semseg", photometric=False)
    label = np.ones((40, 40), dtype=np.uint8)
    transform = P.build_train_transform(cfg)
    image = np.full((40, 40, 3), 200, np.uint8)
    out = transform(image, label, np.random.default_rng(1))
    out_image, out_label = out["image"], out["label"]
    assert out_image.shape == (3, 64, 64) and out_label.shape == (64, 64)
    assert int((out_label == 1).sum()) <= 20 * 20 and (out_label[0, 0] == IGNORE)
    torch.testing.assert_close(out_image[:, 0, 0], torch.zeros(3))  # the mean, normalised


def test_test_transform_resizes_the_image_keeping_aspect_and_leaves_the_label():
    cfg = DataConfig(dataset="voc", root="unused", scale=[2048, 512])
    label = _random_label(np.random.default_rng(3), (100, 150), [0, 2, IGNORE])
    out = P.TestTransform(cfg)(_image_for(label), label)
    image, out_label = out["image"], out["label"]
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


def test_semseg_pipeline_follows_its_transform_py():
    """hszhao/semseg util/transform.py, quoted: RandScale (cv2.resize fx=fy), RandRotate (warpAffine about
    the centre, image bilinear padded with the mean, label nearest padded with ignore), RandomGaussianBlur
    (5x5, sigma 0), RandomHorizontalFlip (cv2.flip), Crop (pad centred with mean / ignore, then crop)."""
    mean = [123.675, 116.28, 103.53]
    cfg = _train_cfg(crop=(40, 40), pipeline="semseg", photometric=False, mean=mean)
    transform = P.build_train_transform(cfg)
    rng = np.random.default_rng(6)
    label = _random_label(rng, (30, 44), [0, 1, 2, IGNORE])
    image = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    draw = P.SemsegDraw(scale=1.2, angle=7.5, blur=True, flip=True, top=0, left=5)
    out_image, out_label = transform.apply(image, label, draw)

    img = cv2.resize(image.astype(np.float32), None, fx=1.2, fy=1.2, interpolation=cv2.INTER_LINEAR)
    lab = cv2.resize(label, None, fx=1.2, fy=1.2, interpolation=cv2.INTER_NEAREST)
    h, w = lab.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 7.5, 1)
    img = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=mean)
    lab = cv2.warpAffine(lab, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=IGNORE)
    img = cv2.flip(cv2.GaussianBlur(img, (5, 5), 0), 1)
    lab = cv2.flip(lab, 1)
    pad_h, pad_w = max(40 - h, 0), max(40 - w, 0)
    img = cv2.copyMakeBorder(img, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2,
                             cv2.BORDER_CONSTANT, value=mean)
    lab = cv2.copyMakeBorder(lab, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2,
                             cv2.BORDER_CONSTANT, value=IGNORE)
    assert out_image.shape == (40, 40, 3) and img.shape[1] > 45  # room to crop from
    np.testing.assert_array_equal(out_image, img[0:40, 5:45])
    np.testing.assert_array_equal(out_label, lab[0:40, 5:45])
    assert out_image.dtype == np.float32 and (out_label[:, :] == IGNORE).any()  # rotated-in corners


@pytest.mark.parametrize("preset, pipeline", [("pspnet_r50-d8_512x1024_40k_cityscapes", "mmseg"),
                                              ("pspnet_resnet50os8_voc", "ssseg"),
                                              ("upernet_resnet50os8_voc", "ssseg")])
def test_presets_say_whose_pipeline_they_follow(preset, pipeline):
    from sceneparse.config import load_preset
    from sceneparse.config.loader import _preset_tables

    assert load_preset(preset).data.pipeline == pipeline
    semseg = [name for name in _preset_tables()[1] if load_preset(name).published.source == "semseg"]
    assert semseg and all(load_preset(name).data.pipeline == "semseg" for name in semseg[:3])


def _chainercv_reference(image, label, scale, top, left, angle, flip, crop, mean):
    """ChainerCV examples/pspnet/train_multi.py `Transform`, quoted step by step in its CHW float32 /
    int32-with--1 convention, with the OpenCV calls chainercv.transforms.resize / rotate make when cv2
    is importable (`_resize_cv2`, `_rotate_cv2`)."""
    img = image.transpose(2, 0, 1).astype(np.float32)
    lab = np.where(label == IGNORE, -1, label).astype(np.int32)

    def resize(chw, hw, interpolation):
        out = cv2.resize(chw.transpose(1, 2, 0), (hw[1], hw[0]), interpolation=interpolation)
        return (out[:, :, None] if out.ndim == 2 else out).transpose(2, 0, 1)

    def rotate(chw, fill, interpolation):
        _, H, W = chw.shape
        matrix = cv2.getRotationMatrix2D((W / 2, H / 2), angle, 1)
        out = cv2.warpAffine(chw.transpose(1, 2, 0), matrix, (W, H), flags=interpolation, borderValue=fill)
        return (out[:, :, None] if out.ndim == 2 else out).transpose(2, 0, 1)

    _, H, W = img.shape
    scaled = (int(scale * H), int(scale * W))
    img = resize(img, scaled, cv2.INTER_CUBIC)
    lab = resize(lab[None], scaled, cv2.INTER_NEAREST)[0]
    side = (min(scaled), min(scaled)) if scaled[0] < crop[0] or scaled[1] < crop[1] else crop
    img = img[:, top : top + side[0], left : left + side[1]]
    lab = lab[top : top + side[0], left : left + side[1]]
    img = rotate(img, 0, cv2.INTER_LINEAR)
    lab = rotate(lab[None], -1, cv2.INTER_NEAREST)[0]
    if img.shape[1] < crop[0] or img.shape[2] < crop[1]:
        img = resize(img, crop, cv2.INTER_CUBIC)
    if lab.shape[0] < crop[0] or lab.shape[1] < crop[1]:
        lab = resize(lab[None].astype(np.float32), crop, cv2.INTER_NEAREST).astype(np.int32)[0]
    if flip:
        img, lab = img[:, :, ::-1], lab[:, ::-1]
    img = img - np.asarray(mean, np.float32)[:, None, None]
    return img, np.where(lab == -1, IGNORE, lab)


@pytest.mark.parametrize("scale, top, left, angle, flip", [(1.3, 3, 11, 7.5, True),  # crop of the crop size
                                                           (0.6, 0, 4, -9.0, False)])  # square, resized up
def test_chainercv_pipeline_follows_train_multi_transform(scale, top, left, angle, flip):
    mean = [123.68, 116.779, 103.939]
    cfg = _train_cfg(crop=(40, 40), pipeline="chainercv", photometric=False, mean=mean, std=[1.0, 1.0, 1.0])
    transform = P.build_train_transform(cfg)
    assert isinstance(transform, P.ChainerCVTrainTransform)
    rng = np.random.default_rng(8)
    label = _random_label(rng, (50, 60), [0, 1, 2, IGNORE])
    image = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    h, w = int(scale * 50), int(scale * 60)
    side = (40, 40) if h >= 40 and w >= 40 else (min(h, w), min(h, w))
    draw = P.ChainerCVDraw(scale=scale, top=top, left=left, side=side, angle=angle, flip=flip)
    out_image, out_label = transform.apply(image, label, draw)
    planes = torch.from_numpy(np.ascontiguousarray(out_image.transpose(2, 0, 1))) - torch.tensor(mean).view(3, 1, 1)

    ref_image, ref_label = _chainercv_reference(image, label, scale, top, left, angle, flip, (40, 40), mean)
    np.testing.assert_allclose(planes.numpy(), ref_image, rtol=0, atol=1e-4)  # float32 mean subtraction
    np.testing.assert_array_equal(out_label, ref_label)
    assert (out_label == IGNORE).any()  # rotated-in corners are ignored (ChainerCV's fill -1)


def test_chainercv_draws_follow_random_crop_and_give_the_crop_size():
    """random_crop offsets are random.choice(range(n - crop)) (never the last), 0 when equal; a scaled
    image smaller than the crop gives a square of its shorter side, resized up to the crop size."""
    cfg = _train_cfg(crop=(40, 40), ratio=(0.5, 2.0), pipeline="chainercv", photometric=False)
    transform = P.ChainerCVTrainTransform(cfg)
    label = _random_label(np.random.default_rng(4), (50, 60), [0, 3, 7, IGNORE])
    allowed = set(np.unique(label).tolist()) | {IGNORE}
    for seed in range(30):
        draw = transform.draw(label.shape, np.random.default_rng(seed))
        h, w = int(draw.scale * 50), int(draw.scale * 60)
        assert 0.5 <= draw.scale < 2.0 and -10.0 <= draw.angle < 10.0
        if h < 40 or w < 40:
            assert draw.side == (min(h, w), min(h, w))
        else:
            assert draw.side == (40, 40)
        assert 0 <= draw.top <= max(h - draw.side[0] - 1, 0) and 0 <= draw.left <= max(w - draw.side[1] - 1, 0)
        out = transform(_image_for(label), label, np.random.default_rng(seed))
        assert out["image"].shape == (3, 40, 40) and out["image"].dtype == torch.float32
        assert out["label"].shape == (40, 40) and set(out["label"].unique().tolist()) <= allowed


def test_chainercv_presets_train_with_its_pipeline_and_schedule():
    """train_multi.py: mpiexec -n 8 with --batchsize 2, MomentumSGD(0.01, 0.9), WeightDecay(1e-4),
    GradientScaling(10) on the heads, PolynomialShift(power 0.9) without a floor."""
    from sceneparse.config import load_preset

    for name in ("chainercv_pspnet_resnet50_cityscapes", "chainercv_pspnet_resnet101_ade20k"):
        p = load_preset(name)
        assert p.data.pipeline == "chainercv" and p.data.std == [1.0, 1.0, 1.0]
        t = p.train
        assert (t.batch_size, t.lr, t.momentum, t.weight_decay, t.head_lr_mult, t.lr_power, t.min_lr) == (
            16, 0.01, 0.9, 1e-4, 10.0, 0.9, 0.0)
