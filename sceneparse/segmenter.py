"""`Segmenter`: a model with its preset, ready to label images from Python.

    from sceneparse import Segmenter
    seg = Segmenter.from_pretrained("pspnet_r50-d8_512x1024_80k_cityscapes")   # published weights
    ids = seg.predict("street.png")            # H x W class ids (numpy int64)
    probs = seg.predict_proba(pil_image)       # C x H x W probabilities (numpy float32)
    many = seg.predict([path, array, pil])     # a list in, a list out

An image is a path, a PIL image or an H x W x 3 uint8 RGB array. It goes through the preset's
test pipeline (resized to the base scale, aspect kept, and normalised) and the probabilities come
back at the image's own size, exactly as `sceneparse test` scores them. Inference modes (whole,
slide, multi-scale + flip) are those of the CLI (`mode=`, `tta=`).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from sceneparse.config import Preset, load_preset
from sceneparse.config.loader import from_dict
from sceneparse.data.files import read_image
from sceneparse.data.transforms import normalize, rescale_size, resize_image
from sceneparse.distributed import pick_device
from sceneparse.errors import CheckpointError, ConfigError, DataError, SceneparseError
from sceneparse.models.inference import InferenceSettings, probability_map_bytes

ImageInput = str | Path | Image.Image | np.ndarray
PROBA_PEAK_MAPS = 3  # full-size maps alive at once in predict_proba: resized logits, softmax, running sum
log = logging.getLogger(__name__)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def as_rgb_array(image: ImageInput) -> np.ndarray:
    """Any accepted image as an H x W x 3 uint8 RGB array (DataError naming the file if unreadable)."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):  # as displayed: EXIF orientation applied, as read_image does
        return np.asarray((ImageOps.exif_transpose(image) or image).convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"an image array must be uint8 RGB (0-255), got dtype {image.dtype}")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] in (3, 4):
            return np.ascontiguousarray(image[:, :, :3])
        raise ValueError(f"an image array must be H x W x 3 (RGB), got shape {image.shape}")
    raise TypeError(f"expected a path, a PIL image or a numpy array, got {type(image).__name__}")


def _read_metadata(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    from sceneparse.weights import METADATA_KEY

    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {}).get(METADATA_KEY, "{}"))
    except Exception as exc:  # not safetensors, or corrupt
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def preset_from_weights(path: str | Path) -> Preset:
    """The preset stored in a sceneparse weights file's metadata ("config" table or "preset" name)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"{path}: only sceneparse .safetensors files name their preset; pass the preset too")
    meta = _read_metadata(path)
    config = meta.get("config")
    if isinstance(config, dict):
        data = dict(config)
        data.setdefault("name", meta.get("preset", path.stem))
        return from_dict(Preset, data, source=str(path))
    if isinstance(meta.get("preset"), str) and meta["preset"]:
        return load_preset(meta["preset"])
    raise ConfigError(f"{path}: the file's metadata names no preset; pass the preset name and --weights {path}")


def is_weights_file(text: str | Path) -> bool:
    return Path(text).suffix in WEIGHT_SUFFIXES


class Segmenter:
    """A segmentation model plus what it needs to label images: its preset, classes and palette."""

    def __init__(
        self,
        model: nn.Module,
        preset: Preset,
        device: str | torch.device = "cpu",
        mode: str | None = None,
        tta: bool = False,
        window_batch: int = 1,
    ) -> None:
        """`model` is called as `model(x)["out"]` and has `num_classes` and `align_corners` (a
        `Segmentor`, or `sceneparse.export.onnx.OnnxSegmentor`)."""
        self.preset = preset
        self.device = torch.device(device)
        self.model = model.to(self.device).eval() if isinstance(model, nn.Module) else model
        self.settings = InferenceSettings.from_config(preset.test, mode, tta, window_batch)
        self.classes, self.palette = _class_names_and_palette(preset, int(model.num_classes))

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_pretrained(
        cls,
        preset: str | Path | Preset,
        weights: str | Path | None = None,
        device: str | torch.device | None = None,
        mode: str | None = None,
        tta: bool = False,
        progress: bool = True,
        dtype: str = "auto",
    ) -> Segmenter:
        """The model of `preset` with `weights` (a path, a URL, or None for the published checkpoint).

        `preset` may also be a sceneparse weights file whose metadata names its preset. The model
        runs the fast inference path (BN folded into the convolutions, `dtype` autocast), which
        gives the eager model's answers to rounding (reduced precision: to >99% of pixels).
        `dtype` "auto" picks the measured fastest precision for the device (`sceneparse.dtype_choice`).
        """
        from sceneparse.api import build_model
        from sceneparse.dtype_choice import resolve_dtype
        from sceneparse.hub import resolve_weights
        from sceneparse.models.fuse import prepare_for_inference

        if isinstance(preset, Preset):
            cfg = preset
        elif is_weights_file(preset):
            cfg = preset_from_weights(preset)
            weights = weights if weights is not None else preset
        else:
            cfg = load_preset(preset)
        path = resolve_weights(cfg, weights, progress)
        target = pick_device(str(device) if device is not None else None)
        model = prepare_for_inference(build_model(cfg, path).to(target), resolve_dtype(dtype, target), fuse_bn=True)
        return cls(model, cfg, target, mode, tta)

    @classmethod
    def from_onnx(cls, path: str | Path, preset: str | Path | Preset | None = None, mode: str | None = None,
                  tta: bool = False) -> Segmenter:
        """An exported ONNX model (run by ONNX Runtime on the CPU) with its preset's classes and pipeline.

        `preset` None: the one the export recorded in its metadata. A preset whose class count
        differs from the export's is an error (its classes, palette and pipeline would be wrong).
        """
        try:
            from sceneparse.export.onnx import OnnxSegmentor, preset_from_onnx_metadata
        except ImportError as exc:
            missing = "sceneparse.export.onnx is not part of this build" if (exc.name or "").startswith(
                "sceneparse") else f"{exc.name or exc} is not installed (pip install onnxruntime)"
            raise ConfigError(f"cannot run {path}: {missing}; run the PyTorch model with --weights instead") from None
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: no such ONNX file")
        runner = OnnxSegmentor(path)
        if preset is None:
            cfg = preset_from_onnx_metadata(runner.metadata, path)
        else:
            cfg = preset if isinstance(preset, Preset) else load_preset(preset)
        if cfg.model.num_classes != runner.num_classes:
            raise ConfigError(f"{path} predicts {runner.num_classes} classes but preset {cfg.name} has "
                              f"{cfg.model.num_classes}; run it with the preset it was exported from "
                              f"({runner.metadata.get('preset') or 'see sceneparse inspect'}) or without a preset")
        return cls(runner, cfg, "cpu", mode, tta)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ---------------------------------------------------------------- prediction

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        """The preset's test pipeline: resize to the base scale (aspect kept) and normalise."""
        data = self.preset.data
        resized = resize_image(image, rescale_size(image.shape[:2], (int(data.scale[0]), int(data.scale[1]))))
        return normalize(resized, list(data.mean), list(data.std))

    @torch.no_grad()
    def _run(self, images: list[np.ndarray], reduce: bool) -> list[np.ndarray]:
        """Probabilities (or class ids when `reduce`) of each image; same-size images share a batch."""
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.shape[:2], []).append(index)
        for size, indices in groups.items():
            batch = torch.stack([self._prepare(images[i]) for i in indices]).to(self.device)
            if reduce:  # class ids in bounded memory, whatever the image's size
                out = self.settings.predict_labels(self.model, batch, out_size=size)
            else:
                self._check_fits(len(indices), size)
                out = self.settings.predict_proba(self.model, batch, out_size=size).float()
            for i, value in zip(indices, out.cpu().numpy(), strict=True):
                results[i] = value.astype(np.int64) if reduce else value
        return results  # type: ignore[return-value]

    def _check_fits(self, num_images: int, size: tuple[int, int]) -> None:
        """ProbabilitiesTooLarge (a MemoryError) saying what `predict_proba` needs when it cannot fit; a warning when it is tight."""
        need = PROBA_PEAK_MAPS * probability_map_bytes(num_images, self.num_classes, *size)
        free = available_memory(self.device)
        what = (f"predict_proba on {num_images} image(s) of {size[1]}x{size[0]} with {self.num_classes} classes "
                f"needs about {_size(need)} ({self.num_classes} x {size[0]} x {size[1]} float32 "
                f"probabilities, {PROBA_PEAK_MAPS} maps at the peak)")
        if free is not None and need > free:
            raise ProbabilitiesTooLarge(f"{what}, but {_size(free)} are free on {self.device}; use predict() for "
                              "class ids (bounded memory), or pass a smaller image")
        if free is not None and need > free / 2:
            log.warning("%s, of %s free", what, _size(free))

    def predict_proba(self, image: ImageInput | Sequence[ImageInput]) -> np.ndarray | list[np.ndarray]:
        """C x H x W class probabilities of an image, or a list of them for a list of images.

        They take 4 x C x H x W bytes (an 8000 x 8000 image with 150 classes: 38 GB); where that does
        not fit in the free memory, ProbabilitiesTooLarge (a MemoryError) says so before anything is allocated. `predict` gives
        class ids in bounded memory."""
        if isinstance(image, (list, tuple)):
            return self._run([as_rgb_array(i) for i in image], reduce=False)
        return self._run([as_rgb_array(image)], reduce=False)[0]

    def predict(self, image: ImageInput | Sequence[ImageInput]) -> np.ndarray | list[np.ndarray]:
        """H x W class ids of an image, or a list of them for a list of images."""
        if isinstance(image, (list, tuple)):
            return self._run([as_rgb_array(i) for i in image], reduce=True)
        return self._run([as_rgb_array(image)], reduce=True)[0]


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**30:.1f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.0f} MiB"


class ProbabilitiesTooLarge(SceneparseError, MemoryError):
    """predict_proba's output would not fit in the free memory; nothing was allocated."""


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on `device` (Linux MemAvailable for the CPU); None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _class_names_and_palette(preset: Preset, num_classes: int) -> tuple[tuple[str, ...], tuple]:
    """The dataset's class names and colours; generic ones when the dataset does not describe the model."""
    from sceneparse.data.classes import voc_colormap

    try:
        from sceneparse.data.dataset import config_dataset_info

        info = config_dataset_info(preset.data)
        if info.num_classes == num_classes:
            return tuple(info.classes), tuple(info.palette)
    except (DataError, ConfigError):
        pass
    return tuple(f"class {i}" for i in range(num_classes)), voc_colormap(num_classes)
