"""The training loss: cross-entropy on the decode head plus a weighted auxiliary-head term.

    loss = CE(out, label) + aux_weight * CE(aux, label)      (aux_weight 0.4 in every published recipe)

Pixels labelled `ignore_index` (255) contribute nothing; the mean is over the labelled pixels
(torch's `cross_entropy(..., ignore_index)`, as torchvision's reference and sssegmentation) of the
global batch: with several processes the pixel counts are summed over them, so the gradient is the
one a single process holding the whole batch would compute.
Options: per-class weights on both heads, and online hard example mining (OHEM) on the decode
head as mmsegmentation's OHEMPixelSampler: keep the pixels whose probability of the true class
is below `thresh`, and at least `min_kept` pixels per image (the hardest ones).

The training loop passes the heads' own logits (1/8 of the input size): the loss upsamples them to
the label's size band by band (`sceneparse.engine.upsampled_loss`), the same numbers without ever
holding the full-resolution logits, their log-softmax and their gradients (PSPNet, UPerNet and
PSANet at 256x256, batch 2: 120-160 MiB less at the step's peak). Logits already at the label's
size are scored directly.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sceneparse.config.schema import TrainConfig
from sceneparse.engine.upsampled_loss import (
    scoring_precision,
    upsampled_cross_entropy_sum,
    upsampled_true_class_probability,
)
from sceneparse.errors import ConfigError

# (local counts) -> (counts summed over processes, number of processes)
CountReducer = Callable[[torch.Tensor], tuple[torch.Tensor, int]]


def cross_entropy(logits: torch.Tensor, label: torch.Tensor, ignore_index: int,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels (0 when a batch has none, instead of NaN)."""
    total, denominator = cross_entropy_sum(logits, label, ignore_index, weight)
    return total / denominator.clamp(min=1e-12)


def cross_entropy_sum(logits: torch.Tensor, label: torch.Tensor, ignore_index: int,
                      weight: torch.Tensor | None = None, align_corners: bool | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the pixel losses, sum of their weights): the mean's parts, so several processes can
    divide by the count of the whole global batch, as one process holding it would.

    Logits smaller than the label are the heads' own (`Segmentor(..., upsample=False)`): they are
    upsampled bilinearly with `align_corners` band by band inside the loss
    (`sceneparse.engine.upsampled_loss`), so the full-resolution map is never held.
    """
    if logits.shape[-2:] != label.shape[-2:]:
        if align_corners is None:
            raise ValueError(f"logits of size {tuple(logits.shape[-2:])} for labels of size "
                             f"{tuple(label.shape[-2:])}: give align_corners to upsample them")
        total = upsampled_cross_entropy_sum(logits, label, align_corners, ignore_index, weight)
    else:  # autocast hands over half-precision logits; the loss is summed in float32
        total = F.cross_entropy(scoring_precision(logits), label, weight=weight, ignore_index=ignore_index,
                                reduction="sum")
    valid = label != ignore_index
    if weight is None:
        denominator = valid.sum().to(total.dtype)
    else:
        safe_label = torch.where(valid, label, torch.zeros_like(label))
        denominator = (weight[safe_label] * valid).sum()
    return total, denominator.detach()  # ignored pixels add 0 and the sum still carries the graph (DDP)


@torch.no_grad()
def ohem_mask(logits: torch.Tensor, label: torch.Tensor, ignore_index: int, thresh: float,
              min_kept: int, align_corners: bool | None = None) -> torch.Tensor:
    """The pixels OHEM keeps: true-class probability below max(thresh, the min_kept-th smallest).
    Logits smaller than the label are upsampled with `align_corners`, band by band."""
    valid = label != ignore_index
    if logits.shape[-2:] != label.shape[-2:]:
        if align_corners is None:
            raise ValueError("OHEM on logits smaller than the label needs align_corners to upsample them")
        true_prob = upsampled_true_class_probability(logits, label, align_corners, ignore_index)
    else:
        safe_label = torch.where(valid, label, torch.zeros_like(label))
        true_prob = scoring_precision(logits).softmax(dim=1).gather(1, safe_label.unsqueeze(1)).squeeze(1)
    valid_probs = true_prob[valid]
    if valid_probs.numel() == 0:
        return valid
    # mmsegmentation: the threshold is at least the (min_kept x batch)-th smallest probability
    index = min(min_kept * label.shape[0], valid_probs.numel() - 1)
    kth = valid_probs.kthvalue(index + 1).values.item()
    return valid & (true_prob < max(thresh, kth))

class SegmentationLoss(nn.Module):
    """Decode-head loss (CE or OHEM CE) + `aux_weight` x auxiliary-head CE; returns the parts too."""

    def __init__(self, num_classes: int, ignore_index: int = 255, aux_weight: float = 0.4, kind: str = "ce",
                 class_weights: list[float] | None = None, ohem_thresh: float = 0.7,
                 ohem_min_kept: int = 100000, align_corners: bool | None = None) -> None:
        super().__init__()
        if kind not in ("ce", "ohem"):
            raise ConfigError(f"train.loss = {kind!r}: expected 'ce' or 'ohem'")
        if class_weights and len(class_weights) != num_classes:
            raise ConfigError(f"train.class_weights has {len(class_weights)} entries; the model has "
                              f"{num_classes} classes")
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.kind = kind
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        self.align_corners = align_corners  # the model's: how logits smaller than the label are upsampled
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weight, persistent=False)

    def decode_loss(self, logits: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "ohem":
            keep = ohem_mask(logits, label, self.ignore_index, self.ohem_thresh, self.ohem_min_kept,
                             self.align_corners)
            label = torch.where(keep, label, torch.full_like(label, self.ignore_index))
        return cross_entropy_sum(logits, label, self.ignore_index, self.class_weights, self.align_corners)

    def forward(self, outputs: dict[str, torch.Tensor], label: torch.Tensor,
                reduce_counts: CountReducer | None = None) -> dict[str, torch.Tensor]:
        """The losses of `outputs` (left as they are; the training loop uses `consume`)."""
        return self.consume(dict(outputs), label, reduce_counts)

    def consume(self, outputs: dict[str, torch.Tensor], label: torch.Tensor,
                reduce_counts: CountReducer | None = None) -> dict[str, torch.Tensor]:
        """{"loss": total, "loss_decode": ..., "loss_aux": ... (when the model has an aux head)}.

        Each term is (sum of pixel losses) / (labelled pixels of the global batch). `reduce_counts`
        sums the local counts over processes and returns (summed counts, number of processes); the
        loss is then scaled by the number of processes, so that DDP's gradient average equals the
        gradient of the global-batch mean (1 process with batch 2B == 2 processes with batch B).

        `outputs` is emptied as the terms are computed, so each logits map is freed as soon as its
        loss has it (with full-resolution logits, one such map less at the peak of a training step).
        """
        sums, counts, names = [], [], []
        total_d, count_d = self.decode_loss(outputs.pop("out"), label)
        sums.append(total_d), counts.append(count_d), names.append("loss_decode")
        if "aux" in outputs:
            total_a, count_a = cross_entropy_sum(outputs.pop("aux"), label, self.ignore_index, self.class_weights,
                                                 self.align_corners)
            sums.append(total_a), counts.append(count_a), names.append("loss_aux")
        count_tensor = torch.stack(counts)
        world = 1
        if reduce_counts is not None:
            count_tensor, world = reduce_counts(count_tensor)
        parts = {name: world * part / count.clamp(min=1e-12)
                 for name, part, count in zip(names, sums, count_tensor, strict=True)}
        total = parts["loss_decode"]
        if "loss_aux" in parts:
            total = total + self.aux_weight * parts["loss_aux"]
        return {"loss": total, **parts}


def build_criterion(train: TrainConfig, num_classes: int, ignore_index: int, aux_weight: float,
                    align_corners: bool | None = None) -> SegmentationLoss:
    return SegmentationLoss(num_classes, ignore_index, aux_weight, train.loss, list(train.class_weights),
                            train.ohem_thresh, train.ohem_min_kept, align_corners)
