"""Training loss (README: Training)."""

from __future__ import annotations

import torch
from torch import Tensor

DICE_EPS = 1e-8


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Dice loss of ``sigmoid(logits)`` [b,H,W] against ``target == 1`` ([b,H,W] {0,1,255}).

    Ignore pixels (255) count as background. Per sample
    ``1 - 2Σpt / max(Σp² + Σt², 1e-8)``, averaged over the batch.
    """
    prob = torch.sigmoid(logits.float()).flatten(1)
    fg = (target == 1).float().flatten(1)
    inter = (prob * fg).sum(1)
    denom = (prob.square().sum(1) + fg.square().sum(1)).clamp(min=DICE_EPS)
    return (1 - 2 * inter / denom).mean()
