"""The training and test pipelines give the source toolboxes' own pixels.

References: tests/fixtures/pipeline/, made by tools/fixtures/make_pipeline_fixtures.py in the peers'
environment with mmsegmentation 1.2.2 / mmcv 2.x and sssegmentation 1.7.0 (their transforms run on
the same small files, with scripted random draws recorded in references.json; on CPUs where
OpenCV runs its AVX-512 kernels, whose rounding differs, the arrays of references_avx512.npz made
by the same script on such a CPU replace those that differ). Here the same draws
are replayed through sceneparse's Generator-based draws and applied; the outputs must be equal:
uint8 pixels and labels exactly; normalised images (on the device, `model_input`) exactly for mmseg
(the same float32 ops as its SegDataPreProcessor, padding 0 after normalisation) and to 1e-5 for sssegmentation (it multiplies by 1/std with cv2 in place of
dividing: the last float32 bit differs).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sceneparse.config.schema import DataConfig
from sceneparse.data import pipelines as P
from sceneparse.data import transforms as T
from sceneparse.data.device_batch import model_input
from sceneparse.data.files import encode_label, read_image, read_label

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
META = json.loads((FIXTURES / "references.json").read_text())
ARRAYS = dict(np.load(FIXTURES / "references.npz"))
if cv2.checkHardwareSupport(256):  # CV_CPU_AVX_512SKX: OpenCV's AVX-512 kernels round some pixels otherwise
    ARRAYS.update(np.load(FIXTURES / "references_avx512.npz"))  # the toolboxes' output on an AVX-512 CPU
CASES = {case["key"]: case for case in META["cases"]}


class ScriptedGenerator:
    """Stands in for numpy's Generator: returns the values a source toolbox was scripted to draw,
    checking that each request asks for a value inside the range it was drawn from."""

    def __init__(self, random: list[float], integers: list[int], uniform: list[float]) -> None:
        self.queues = {"random": list(random), "integers": list(integers), "uniform": list(uniform)}

    def _next(self, name: str):
        assert self.queues[name], f"more {name} draws than the source made"
        return self.queues[name].pop(0)

    def random(self) -> float:
        return self._next("random")

    def integers(self, low: int, high: int | None = None) -> int:
        low, high = (0, low) if high is None else (low, high)
        value = self._next("integers")
        assert low <= value < high, (low, value, high)
        return value

    def uniform(self, low: float, high: float) -> float:
        value = self._next("uniform")
        assert low <= value <= high
        return value

    def left(self) -> dict[str, int]:
        return {name: len(queue) for name, queue in self.queues.items() if queue}


def _photometric_draws(p: dict) -> tuple[list[int], list[float]]:
    """The randint / uniform values in the order mmseg's (and sssegmentation's) transform asks."""
    ints, floats = [int(p["brightness"] is not None)], []
    if p["brightness"] is not None:
        floats.append(p["brightness"])
    ints.append(int(p["contrast_first"]))
    if p["contrast_first"]:
        ints.append(int(p["contrast"] is not None))
        floats += [p["contrast"]] if p["contrast"] is not None else []
    ints.append(int(p["saturation"] is not None))
    floats += [p["saturation"]] if p["saturation"] is not None else []
    ints.append(int(p["hue"] is not None))
    ints += [p["hue"]] if p["hue"] is not None else []
    if not p["contrast_first"]:
        ints.append(int(p["contrast"] is not None))
        floats += [p["contrast"]] if p["contrast"] is not None else []
    return ints, floats


def _inputs(source: str) -> tuple[np.ndarray, np.ndarray]:
    spec = META["inputs"][source]
    image = read_image(FIXTURES / spec["image"])
    label = encode_label(read_label(FIXTURES / spec["label"]), spec["reduce_zero_label"], 255, 255)
    return image, label


def _finish(transform: P.TrainTransform, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The worker's padded uint8 output, normalised as the trainer does on the device."""
    out = transform.finish(image, label)
    batch = {key: value.unsqueeze(0) for key, value in out.items()}
    return model_input(batch, "cpu", torch.float32, META["mean"], META["std"])[0], out["label"]


def _train_cases(prefix: str) -> list[str]:
    return [key for key, case in CASES.items() if key.startswith(prefix) and "crop" in case]


def _run(case: dict, pipeline: str):
    image, label = _inputs(case["source"])
    cfg = DataConfig(dataset="voc", root="unused", scale=case["scale"], crop_size=case["crop"],
                     ratio_range=[0.5, 2.0], cat_max_ratio=0.75, mean=META["mean"], std=META["std"],
                     pipeline=pipeline)
    transform = P.TrainTransform(cfg)
    ints, floats = _photometric_draws(case["photometric"])
    offsets = case["offsets"][: case["offsets_used"]]
    rng = ScriptedGenerator([case["u"], 0.2 if case["flip"] else 0.8], offsets + ints, floats)
    draw = transform.draw(label, rng)  # type: ignore[arg-type]
    assert rng.left() == {}, "sceneparse drew a different number of values than the source"
    out_image, out_label = transform.apply(image, label, draw)
    return transform, out_image, out_label


@pytest.mark.parametrize("key", _train_cases("mmseg_"))
def test_mmseg_training_pipeline_gives_mmsegs_pixels(key):
    case = CASES[key]
    transform, out_image, out_label = _run(case, "mmseg")
    ratio = T.draw_rescale_ratio((0.5, 2.0), ScriptedGenerator([case["u"]], [], []))  # type: ignore[arg-type]
    assert [int(side * ratio) for side in case["scale"]] == case["target_scale"]  # RandomResize's scale
    reference = ARRAYS[f"{key}_image"]  # 3xHxW BGR
    np.testing.assert_array_equal(out_image, reference[::-1].transpose(1, 2, 0))
    np.testing.assert_array_equal(out_label, ARRAYS[f"{key}_label"])
    image_t, label_t = _finish(transform, out_image, out_label)
    np.testing.assert_array_equal(label_t.numpy(), ARRAYS[f"{key}_padded_label"])
    if f"{key}_input" in ARRAYS:
        np.testing.assert_array_equal(image_t.numpy(), ARRAYS[f"{key}_input"])  # exact: the same float32 ops


@pytest.mark.parametrize("key", _train_cases("ssseg_"))
def test_ssseg_training_pipeline_gives_sssegmentations_pixels(key):
    case = CASES[key]
    transform, out_image, out_label = _run(case, "ssseg")
    np.testing.assert_array_equal(out_image, ARRAYS[f"{key}_image"][..., ::-1])  # HxWx3 BGR
    np.testing.assert_array_equal(out_label, ARRAYS[f"{key}_label"])
    image_t, label_t = _finish(transform, out_image, out_label)
    np.testing.assert_array_equal(label_t.numpy(), ARRAYS[f"{key}_padded_label"])  # centred padding
    if f"{key}_input" in ARRAYS:
        torch.testing.assert_close(image_t, torch.from_numpy(ARRAYS[f"{key}_input"]), rtol=0, atol=1e-5)


def test_fixtures_cover_the_crop_fallbacks():
    """No try passes on the flat label: mmseg used 11 windows (22 offsets), sssegmentation 10."""
    assert {CASES[k]["offsets_used"] for k in _train_cases("mmseg_") if CASES[k]["source"] == "flat"} == {22}
    assert {CASES[k]["offsets_used"] for k in _train_cases("ssseg_") if CASES[k]["source"] == "flat"} == {20}


@pytest.mark.parametrize("key", [k for k, c in CASES.items() if c.get("test")])
def test_test_time_resize_gives_mmsegs_pixels(key):
    case = CASES[key]
    image, _ = _inputs(case["source"])
    resized = T.resize_image(image, T.rescale_size(image.shape[:2], tuple(case["scale"])))
    np.testing.assert_array_equal(resized, ARRAYS[key][..., ::-1])
    cfg = DataConfig(dataset="voc", root="unused", scale=case["scale"], mean=META["mean"], std=META["std"])
    normalised = P.TestTransform(cfg)(image, np.zeros(image.shape[:2], np.uint8))["image"]
    expected = (torch.from_numpy(resized.transpose(2, 0, 1).copy()).float()
                - torch.tensor(META["mean"]).view(3, 1, 1)) / torch.tensor(META["std"]).view(3, 1, 1)
    torch.testing.assert_close(normalised, expected, rtol=0, atol=0)


@pytest.mark.parametrize("file", ["exif_rotate90.jpg", "deep16.png"])
def test_images_decode_as_mmcv_decodes_them(file):
    """EXIF orientation applied, 16 bits scaled to 8: the array mmcv's LoadImageFromFile gives (RGB here)."""
    np.testing.assert_array_equal(read_image(FIXTURES / file), ARRAYS[f"decoded_{file}"][..., ::-1])


def test_segmenter_resizes_as_mmsegs_test_pipeline(tmp_path):
    """`Segmenter` (and so `infer`) prepares its input with the same OpenCV resize as mmseg's test Resize."""
    import dataclasses

    from sceneparse.segmenter import Segmenter
    from tests.test_eval_cli import tiny_preset, tiny_weights

    key = "mmseg_test_ade_160x48"
    preset = tiny_preset()
    preset = dataclasses.replace(preset, data=dataclasses.replace(preset.data, scale=CASES[key]["scale"],
                                                                 mean=META["mean"], std=META["std"]))
    segmenter = Segmenter.from_pretrained(preset, tiny_weights(tmp_path / "tiny.safetensors"), device="cpu")
    image, _ = _inputs(CASES[key]["source"])
    expected = (torch.from_numpy(ARRAYS[key][..., ::-1].transpose(2, 0, 1).copy()).float()
                - torch.tensor(META["mean"]).view(3, 1, 1)) / torch.tensor(META["std"]).view(3, 1, 1)
    torch.testing.assert_close(segmenter._prepare(image), expected, rtol=0, atol=0)
