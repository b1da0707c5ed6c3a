"""The training loss: cross-entropy on the decode head plus a weighted auxiliary-head term.

    loss = CE(out, label) + aux_weight * CE(aux, label)      (aux_weight 0.4 in every published recipe)

Pixels labelled `ignore_index` (255) add nothing to the sum. What the sum is divided by is the
recipe's (`train.loss_average`, docs/recipes.md):

    "all_pixels"  sum(w[y] * ce) / (all pixels, ignored ones included)   mmsegmentation, avg_non_ignore=False
    "labelled"    sum(w[y] * ce) / sum(w[y] over the labelled pixels)     sssegmentation, semseg, ChainerCV

and it is taken per GPU of the recipe: the global batch is split into `train.recipe_gpus` groups of
images as the recipe's GPUs held them (DDP's sampler gives image i of a global batch to GPU i mod G),
each group is normalised on its own and the groups' losses are averaged, which is what DDP's gradient
average did. So a run on any number of processes computes the recipe's gradients. With several
processes the groups' denominators are summed over the processes (one small all-reduce).
Options: per-class weights on both heads, and online hard example mining (OHEM) on the decode head
as mmsegmentation's and sssegmentation's OHEMPixelSampler, per group (per GPU): keep the pixels whose
probability of the true class is below max(thresh, the (min_kept x images)-th smallest); the kept
pixels have weight 1 (times their class weight), and the denominator follows `loss_average`.

The training loop passes the heads' own logits (1/8 of the input size): the loss upsamples them to
the label's size band by band (`sceneparse.engine.upsampled_loss`), the same numbers without ever
holding the full-resolution logits, their log-softmax and their gradients (PSPNet, UPerNet and
PSANet at 256x256, batch 2: 120-160 MiB less at the step's peak). Logits already at the label's
size are scored directly.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

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

log = logging.getLogger(__name__)
AVERAGES = ("all_pixels", "labelled")


@dataclass(frozen=True)
class Shard:
    """This process's part of the global batch, and how to sum a tensor over the processes.

    DDP's sampler interleaves: local image j of rank r is image r + world_size * j of the global batch.
    """

    rank: int = 0
    world_size: int = 1
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None


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
    """Decode-head loss (CE or OHEM CE) + `aux_weight` x auxiliary-head CE; returns the parts too.

    `average` and `groups` are the recipe's normalisation (see the module's docstring): `groups` is the
    number of the recipe's GPUs that one call's global batch stands for.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, aux_weight: float = 0.4, kind: str = "ce",
                 class_weights: list[float] | None = None, ohem_thresh: float = 0.7,
                 ohem_min_kept: int = 100000, align_corners: bool | None = None, average: str = "labelled",
                 groups: int = 1) -> None:
        super().__init__()
        if kind not in ("ce", "ohem"):
            raise ConfigError(f"train.loss = {kind!r}: expected 'ce' or 'ohem'")
        if average not in AVERAGES:
            raise ConfigError(f"train.loss_average = {average!r}: expected one of {', '.join(AVERAGES)}")
        if groups < 1:
            raise ConfigError(f"train.recipe_gpus = {groups}: expected at least 1")
        if class_weights and len(class_weights) != num_classes:
            raise ConfigError(f"train.class_weights has {len(class_weights)} entries; the model has "
                              f"{num_classes} classes")
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.kind = kind
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        self.align_corners = align_corners  # the model's: how logits smaller than the label are upsampled
        self.average = average
        self.groups = groups
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weight, persistent=False)

    def head_sums(self, logits: torch.Tensor, label: torch.Tensor, ohem: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the pixel losses, denominator) of one group of images on one head."""
        if ohem:
            keep = ohem_mask(logits, label, self.ignore_index, self.ohem_thresh, self.ohem_min_kept,
                             self.align_corners)
            label = torch.where(keep, label, torch.full_like(label, self.ignore_index))
        total, labelled = cross_entropy_sum(logits, label, self.ignore_index, self.class_weights, self.align_corners)
        if self.average == "all_pixels":
            return total, total.new_tensor(float(label.numel()))
        return total, labelled

    def group_count(self, count: int, shard: Shard) -> int:
        """How many groups the global batch makes: the recipe's GPUs, or one per image when it holds fewer."""
        return min(self.groups, count * shard.world_size)

    def group_of_images(self, count: int, shard: Shard) -> torch.Tensor:
        """The recipe GPU (group) of each local image: image i of the global batch was on GPU i mod G."""
        groups = self.group_count(count, shard)
        if self.kind == "ohem" and groups % shard.world_size:
            raise ConfigError(f"OHEM selects pixels per GPU of the recipe (train.recipe_gpus = {self.groups} per "
                              f"optimizer micro-step), which {shard.world_size} processes cannot split evenly: run "
                              f"on a number of processes that divides {groups}")
        return (shard.rank + shard.world_size * torch.arange(count)) % groups

    def forward(self, outputs: dict[str, torch.Tensor], label: torch.Tensor,
                shard: Shard | None = None) -> dict[str, torch.Tensor]:
        """The losses of `outputs` (left as they are; the training loop uses `consume`)."""
        return self.consume(dict(outputs), label, shard)

    def consume(self, outputs: dict[str, torch.Tensor], label: torch.Tensor,
                shard: Shard | None = None) -> dict[str, torch.Tensor]:
        """{"loss": total, "loss_decode": ..., "loss_aux": ... (when the model has an aux head)}.

        Each term is (world / G) x sum over this process's groups of (group's sum / group's denominator),
        the denominators summed over processes: DDP's average of the processes' gradients is then the
        gradient of the recipe's loss, the mean over its G GPUs of each GPU's normalised loss.

        `outputs` is emptied as the terms are computed, so each logits map is freed as soon as its
        loss has it (with full-resolution logits, one such map less at the peak of a training step).
        """
        shard = shard or Shard()
        # all_pixels CE has the same denominator on every group: one call over the local batch is the same sum
        split = self.groups > 1 and (self.average == "labelled" or self.kind == "ohem")
        group_ids = self.group_of_images(label.shape[0], shard) if split else torch.zeros(label.shape[0],
                                                                                          dtype=torch.long)
        groups = self.group_count(label.shape[0], shard) if split else 1
        present = sorted(set(group_ids.tolist()))
        names, sums, denominators = [], [], []
        heads = [("loss_decode", "out", self.kind == "ohem"), ("loss_aux", "aux", False)]
        for name, key, ohem in heads:
            if key not in outputs:
                continue
            logits = outputs.pop(key)
            head_sums, head_denominators = [], torch.zeros(groups, dtype=torch.float64, device=label.device)
            for group in present:
                index = (group_ids == group).nonzero().flatten().to(label.device)
                whole = len(present) == 1
                total, denominator = self.head_sums(logits if whole else logits[index],
                                                    label if whole else label[index], ohem)
                head_sums.append(total)
                head_denominators[group] = denominator.double()
            del logits
            names.append(name), sums.append(head_sums), denominators.append(head_denominators)
        counts = torch.stack(denominators)
        if shard.sum_over_processes is not None and shard.world_size > 1:
            counts = shard.sum_over_processes(counts)
        scale = shard.world_size / groups
        parts = {}
        for name, head_sums, head_counts in zip(names, sums, counts, strict=True):
            terms = [total / head_counts[group].to(total.dtype).clamp(min=1e-12)
                     for total, group in zip(head_sums, present, strict=True)]
            parts[name] = scale * torch.stack(terms).sum()
        total = parts["loss_decode"]
        if "loss_aux" in parts:
            total = total + self.aux_weight * parts["loss_aux"]
        return {"loss": total, **parts}


def recipe_groups(train: TrainConfig) -> int:
    """How many of the recipe's GPUs one micro-batch stands for (train.recipe_gpus over train.accumulate)."""
    if train.recipe_gpus < 1 or train.accumulate < 1:
        raise ConfigError(f"train.recipe_gpus = {train.recipe_gpus}, train.accumulate = {train.accumulate}: "
                          "both must be at least 1")
    groups = max(1, train.recipe_gpus // train.accumulate)
    if train.batch_size % groups:
        log.warning("train.batch_size = %d does not split evenly into the recipe's %d GPU(s) per micro-batch "
                    "(train.recipe_gpus / train.accumulate): the groups normalised apart hold unequal numbers of "
                    "images", train.batch_size, groups)
    return groups


def build_criterion(train: TrainConfig, num_classes: int, ignore_index: int, aux_weight: float,
                    align_corners: bool | None = None) -> SegmentationLoss:
    """The preset's loss: its kind, class weights, OHEM settings and normalisation (per recipe GPU)."""
    return SegmentationLoss(num_classes, ignore_index, aux_weight, train.loss, list(train.class_weights),
                            train.ohem_thresh, train.ohem_min_kept, align_corners, train.loss_average,
                            recipe_groups(train))
