"""HMNet's training losses (README: Training HMNet)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from fssam.contract import IGNORE_LABEL
from fssam.models.losses import dice_loss


def hmnet_losses(final: Tensor, meta: Tensor, target: Tensor, *,
                 aux_weight: float = 1.0) -> dict[str, Tensor]:
    """``final`` and ``meta`` [b,2,H,W] at the label size, ``target`` [b,H,W] {0,1,255}.

    ``main``: cross entropy of ``final`` (ignore 255). ``final`` holds the ensemble's
    probability-scale values, used as logits as the release does. ``aux``: Dice of each
    channel of ``meta`` through its own sigmoid, against ``target == 0`` (background)
    and ``target == 1`` (foreground); ignore pixels are 0 in both targets. Summed over
    the two channels and averaged over the batch (range 0..2). ``loss`` = main +
    ``aux_weight`` * aux.
    """
    main = F.cross_entropy(final.float(), target.long(), ignore_index=IGNORE_LABEL)
    background = (target == 0).long()
    aux = dice_loss(meta[:, 0], background) + dice_loss(meta[:, 1], target)
    return {"loss": main + aux_weight * aux, "main": main, "aux": aux}
