"""Few-shot segmentation metrics: per-class mIoU and FB-IoU (README: Metrics).

Counts are pixel sums accumulated over episodes (int64), never per-episode averages:

- ``IoU_c = Σ_e |P_e ∩ T_e| / Σ_e |P_e ∪ T_e|`` over the episodes ``e`` of class ``c``,
  where ``P`` is the predicted foreground and ``T`` the target foreground, both
  restricted to non-ignore pixels (target != 255). ``mIoU`` is the mean of ``IoU_c`` over
  all the fold's classes; a class that received no episode counts as 0, as in the
  releases (it is listed under ``missing_classes``).
- ``FB-IoU`` is the mean of the foreground IoU and the background IoU, each computed
  from intersection/union sums over all episodes of all classes.

A union of zero (nothing predicted and nothing to find) counts as a perfect IoU of 100.
When ``torch.distributed`` is initialised, ``compute`` all-reduces the sums, so it is a
collective call: every rank must call it, and every rank gets the same numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from fssam.contract import IGNORE_LABEL

log = logging.getLogger(__name__)



def logits_to_prediction(logits: torch.Tensor, size: Sequence[int],
                         foreground: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Upsample logits [H,W] to ``size`` (bilinear, align_corners=True), then apply the
    method's ``foreground`` rule (its model's ``foreground``, see ``fssam.contract``)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [H,W], got shape {tuple(logits.shape)}")
    height, width = (int(s) for s in size)
    up = F.interpolate(
        logits[None, None].float(), size=(height, width), mode="bilinear", align_corners=True
    )[0, 0]
    return foreground(up)


def _iou_percent(inter: float, union: float) -> float:
    return 100.0 if union == 0 else 100.0 * inter / union


class SegmentationEvaluator:
    """Accumulates intersection/union sums per class and for FB-IoU.

    Args:
        class_ids: the classes scored (a fold's novel classes, dataset ids).
    """

    def __init__(self, class_ids: Sequence[int]) -> None:
        ids = [int(c) for c in class_ids]
        if not ids:
            raise ValueError("class_ids must not be empty")
        if len(set(ids)) != len(ids):
            raise ValueError(f"class_ids has duplicates: {ids}")
        self.class_ids = ids
        self._index = {c: i for i, c in enumerate(ids)}
        self.reset()

    def reset(self) -> None:
        """Zero every sum."""
        n = len(self.class_ids)
        # Rows: foreground intersection, foreground union, episode count, per class.
        self.class_sums = torch.zeros(3, n, dtype=torch.int64)
        # Background intersection, background union, foreground intersection, union.
        self.fb_sums = torch.zeros(4, dtype=torch.int64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, class_id: int) -> None:
        """Add one episode: ``pred`` bool [H0,W0], ``target`` [H0,W0] in {0, 1, 255}."""
        class_id = int(class_id)
        if class_id not in self._index:
            raise ValueError(
                f"class {class_id} is not among the evaluated classes {self.class_ids}"
            )
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from target shape "
                f"{tuple(target.shape)}"
            )
        pred = pred.detach().to("cpu", torch.bool)
        target = target.detach().to("cpu")
        valid = target != IGNORE_LABEL
        fg_true = target == 1
        fg_pred = pred & valid
        bg_true = target == 0
        bg_pred = ~pred & valid
        fg_inter = int((fg_pred & fg_true).sum())
        fg_union = int((fg_pred | fg_true).sum())
        bg_inter = int((bg_pred & bg_true).sum())
        bg_union = int((bg_pred | bg_true).sum())
        col = self._index[class_id]
        self.class_sums[:, col] += torch.tensor([fg_inter, fg_union, 1])
        self.fb_sums += torch.tensor([bg_inter, bg_union, fg_inter, fg_union])

    def _reduced(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the sums, summed over processes when distributed is initialised."""
        flat = torch.cat([self.class_sums.flatten(), self.fb_sums])
        if dist.is_available() and dist.is_initialized():
            device = torch.device("cpu")
            if dist.get_backend() == "nccl":
                device = torch.device("cuda", torch.cuda.current_device())
            flat = flat.to(device)
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat = flat.cpu()
        n = self.class_sums.numel()
        return flat[:n].view_as(self.class_sums), flat[n:]

    def compute(self) -> dict[str, Any]:
        """Metrics in percent: ``miou``, ``fbiou``, ``class_iou``, ``missing_classes``.

        ``class_iou`` holds the classes that received an episode; ``miou`` averages over
        every class of ``class_ids`` (0 for the missing ones). Also ``fg_iou``, ``bg_iou``
        and ``num_episodes``. Leaves the sums untouched, so it may be called repeatedly.
        ``miou`` is NaN when no class received an episode.
        """
        class_sums, fb_sums = self._reduced()
        class_iou: dict[int, float] = {}
        missing: list[int] = []
        for col, cid in enumerate(self.class_ids):
            inter, union, count = (int(v) for v in class_sums[:, col])
            if count == 0:
                missing.append(cid)
            else:
                class_iou[cid] = _iou_percent(inter, union)
        if missing:
            log.warning("classes without any episode, counted as IoU 0 in the mIoU: %s",
                        missing)
        bg_inter, bg_union, fg_inter, fg_union = (int(v) for v in fb_sums)
        num_episodes = int(class_sums[2].sum())
        miou = sum(class_iou.values()) / len(self.class_ids) if class_iou else math.nan
        bg_iou = _iou_percent(bg_inter, bg_union) if num_episodes else math.nan
        fg_iou = _iou_percent(fg_inter, fg_union) if num_episodes else math.nan
        return {
            "miou": miou,
            "fbiou": (bg_iou + fg_iou) / 2.0,
            "fg_iou": fg_iou,
            "bg_iou": bg_iou,
            "class_iou": class_iou,
            "missing_classes": missing,
            "num_episodes": num_episodes,
        }
