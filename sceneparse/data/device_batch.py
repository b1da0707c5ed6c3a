"""Training batches to model inputs on the device: uint8 pixels in, normalised float out.

The training pipeline (`sceneparse.data.pipelines.TrainTransform`) hands over uint8 HxWx3 crops,
padded to the crop size, with the box of real pixels ("valid": top, left, height, width): a
quarter of the bytes of float32 through the loader, the pinned-memory copy and the host-to-device
transfer, and no normalisation on the loader's CPU cores. Here, on the device, as mmsegmentation's
SegDataPreProcessor does it: channels first, float, (x - mean) / std in float32, and the padding
set to 0 after normalisation. Batches that are already float (the test pipeline, semseg's float
pipeline) pass through unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def model_input(
    batch: dict, device: torch.device | str, dtype: torch.dtype, mean: Sequence[float], std: Sequence[float],
    channels_last: bool = False,
) -> torch.Tensor:
    """The batch's images as the model's N x 3 x H x W input in `dtype` on `device`."""
    image = batch["image"]
    if image.dtype != torch.uint8:
        image = image.to(device, dtype, non_blocking=True)
        return image.contiguous(memory_format=torch.channels_last) if channels_last else image
    pixels = image.to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # NHWC bytes -> NCHW view
    pixels.sub_(torch.tensor(list(mean), dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1))
    pixels.div_(torch.tensor(list(std), dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1))
    valid = batch.get("valid")
    if valid is not None:
        height, width = pixels.shape[2:]
        rows = torch.arange(height, device=pixels.device).view(1, height, 1)
        cols = torch.arange(width, device=pixels.device).view(1, 1, width)
        box = valid.to(pixels.device).view(-1, 4, 1, 1)
        inside = ((rows >= box[:, 0]) & (rows < box[:, 0] + box[:, 2])
                  & (cols >= box[:, 1]) & (cols < box[:, 1] + box[:, 3]))
        pixels.masked_fill_(~inside.unsqueeze(1), 0.0)
    pixels = pixels.to(dtype)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return pixels.contiguous(memory_format=memory_format)


def model_label(batch: dict, device: torch.device | str) -> torch.Tensor:
    """The batch's labels as int64 on `device` (the training pipeline sends uint8 labels as uint8)."""
    return batch["label"].to(device, non_blocking=True).long()
