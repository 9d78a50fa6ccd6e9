"""How a method turns its single-channel logits (at the label size) into a foreground mask."""

from __future__ import annotations

from torch import Tensor


def sigmoid_foreground(logits: Tensor) -> Tensor:
    """Foreground where ``sigmoid(logits) >= 0.5`` (FSSAM, DESIGN.md section 6)."""
    return logits.sigmoid() >= 0.5


def positive_foreground(logits: Tensor) -> Tensor:
    """Foreground where ``logits > 0`` strictly: with ``logits = fg - bg`` this is the
    argmax of two channels with ties to the background (HMNet, HMNET.md section 2.11)."""
    return logits > 0
