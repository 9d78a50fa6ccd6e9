"""Base-class semantic evaluation: a base learner's validation (README: Training HMNet).

``IoU_j = Σ |P_j ∩ T_j| / Σ |P_j ∪ T_j|`` summed over every image of the set (pixels
labelled 255 left out), for each base class j = 1..B; ``miou`` is their mean in percent,
background excluded. A base class absent from the set and never predicted counts as 0, as
in BAM (its union is 0: ``I / (U + 1e-10)``). Sums are all-reduced over processes, so
every rank gets the numbers of the whole set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fssam.contract import IGNORE_LABEL
from fssam.engine.evaluate import autocast
from fssam.utils.dist import all_reduce_sum_cpu, is_main

log = logging.getLogger(__name__)

UNION_EPS = 1e-10


class BaseClassMeter:
    """Intersection and union sums of the background and the base classes ``class_ids``
    (label j = the j-th of them, 1-based; 0 = background)."""

    def __init__(self, class_ids: Sequence[int]) -> None:
        self.class_ids = [int(c) for c in class_ids]
        self.sums = torch.zeros(2, 1 + len(self.class_ids), dtype=torch.int64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add images: ``pred`` and ``target`` (..., H, W) labels 0..B (target 255 = ignore)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target "
                             f"shape {tuple(target.shape)}")
        n = self.sums.shape[1]
        valid = target != IGNORE_LABEL
        pred, target = pred[valid].long().cpu(), target[valid].long().cpu()
        if target.numel() and int(target.max()) >= n:
            raise ValueError(f"target label {int(target.max())} outside 0..{n - 1} and 255")
        inter = torch.bincount(target[pred == target], minlength=n)
        union = torch.bincount(pred, minlength=n) + torch.bincount(target, minlength=n) - inter
        self.sums += torch.stack([inter[:n], union[:n]])

    def compute(self) -> dict[str, Any]:
        """``miou`` (percent, over the base classes) and ``class_iou`` {class id: percent}."""
        inter, union = all_reduce_sum_cpu(self.sums).double()
        iou = 100.0 * inter / (union + UNION_EPS)
        class_iou = {c: float(iou[j + 1]) for j, c in enumerate(self.class_ids)}
        return {"miou": float(iou[1:].mean()), "class_iou": class_iou}


@torch.no_grad()
def run_base_class_evaluation(model: nn.Module, loader: DataLoader, *,
                              class_ids: Sequence[int], device: torch.device | str,
                              amp_dtype: torch.dtype | None = None,
                              progress: bool = True) -> dict[str, Any]:
    """Score ``model`` (``forward({"image"}) -> {"logits": (b,1+B,H,W)}``) on this rank's
    share of ``loader`` (items ``image``, ``label``) by argmax; see ``BaseClassMeter``."""
    device = torch.device(device)
    meter = BaseClassMeter(class_ids)
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="base-class eval", dynamic_ncols=True,
                          disable=not progress or not is_main()):
            with autocast(device, amp_dtype):
                logits = model({"image": batch["image"].to(device, non_blocking=True)})["logits"]
            meter.update(logits.float().argmax(1), batch["label"])
    finally:
        model.train(was_training)
    return meter.compute()
