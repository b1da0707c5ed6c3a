"""The evaluation loop shared by `sceneparse test` and validation during training.

It runs the model over a test loader (image at the preset's test scale, label at its original
size), predicts with the given `InferenceSettings`, and adds every prediction to one confusion
matrix on the device. Distributed, the loader must shard the images without repeats
(`build_dataloader(..., distributed=True)` does) and the matrices are summed at the end, so every
image is counted exactly once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sceneparse.evaluation.confusion import ConfusionMatrix
from sceneparse.models.inference import InferenceSettings

# Called with each prediction (HxW class ids, numpy, at the label's size), its label (HxW training
# ids, ignore index where unscored) and its image path.
PredictionCallback = Callable[[np.ndarray, np.ndarray, str], None]


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (evaluation needs no gradient synchronisation)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[dict],
    num_classes: int,
    ignore_index: int = 255,
    settings: InferenceSettings | None = None,
    device: torch.device | str = "cpu",
    on_prediction: PredictionCallback | None = None,
    progress: bool = True,
    reduce: bool = True,
) -> ConfusionMatrix:
    """The confusion matrix of `model` over `loader`, summed over processes when `reduce`.

    Batches are dicts with "image" (N x 3 x h x w, normalised), "label" (N x H x W, class ids or
    `ignore_index`) and "path"; probabilities are computed at the label's size. The model is put in
    eval mode for the loop and back in its former mode afterwards.
    """
    settings = settings or InferenceSettings()
    device = torch.device(device)
    net = _unwrap(model)
    was_training = net.training
    net.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index, device)
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    try:
        for batch in tqdm(loader, total=total, desc="evaluate", unit="batch", disable=not progress, leave=False):
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            pred = settings.predict_labels(net, image, out_size=label.shape[-2:])  # bounded memory on huge labels
            matrix.update(pred, label)
            if on_prediction is not None:
                for one, truth, path in zip(pred.cpu().numpy(), label.cpu().numpy(), batch["path"], strict=True):
                    on_prediction(one, truth, path)
    finally:
        net.train(was_training)
    if reduce:
        matrix.all_reduce()
    return matrix
