"""The confusion matrix every metric is computed from (torchvision references' ConfusionMatrix style).

`update` adds a batch with one `bincount` on the device; `all_reduce` sums the matrices of all
processes, so distributed evaluation counts each pixel exactly once. With `void_column` the matrix
has one more column, for predictions outside the classes (255 where a model abstains): such a
pixel is a false negative of its ground-truth class and nobody's false positive, as the official
Cityscapes evaluator and mmsegmentation count it (`metrics.split_void`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """rows: ground truth class, columns: predicted class; pixels labelled `ignore_index` are skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu",
                 void_column: bool = False) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.void_column = void_column
        columns = num_classes + 1 if void_column else num_classes
        self.matrix = torch.zeros(num_classes, columns, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add predictions and labels of the same shape (any shape; class ids)."""
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
        pred = pred.reshape(-1).to(self.matrix.device, torch.int64)
        label = label.reshape(-1).to(self.matrix.device, torch.int64)
        keep = label != self.ignore_index
        label, pred = label[keep], pred[keep]
        if label.numel() and (int(label.min()) < 0 or int(label.max()) >= self.num_classes):
            bad = label[(label < 0) | (label >= self.num_classes)].unique()[:10].tolist()
            raise ValueError(f"label values {bad} are outside 0..{self.num_classes - 1} and not the ignore "
                             f"index {self.ignore_index}")
        n = self.num_classes
        outside = (pred < 0) | (pred >= n)
        if self.void_column:
            pred = torch.where(outside, n, pred)
        elif outside.any():
            bad = pred[outside].unique()[:10].tolist()
            raise ValueError(f"predicted values {bad} are outside 0..{n - 1}")
        columns = self.matrix.shape[1]
        self.matrix += torch.bincount(label * columns + pred, minlength=n * columns).reshape(n, columns)

    def all_reduce(self) -> None:
        """Sum over all processes (no-op without an initialised process group)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    def reset(self) -> None:
        self.matrix.zero_()
