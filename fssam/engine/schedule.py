"""When things happen during training: the learning rate and the validation points."""

from __future__ import annotations


def poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    """``base_lr * (1 - iteration / total) ** power`` (iteration counts finished steps)."""
    return base_lr * max(0.0, 1.0 - iteration / total) ** power


def validation_points(iters_per_epoch: int, per_epoch: int) -> set[int]:
    """Batch counts within an epoch after which to validate; the last is the epoch end."""
    return {max(1, round(k * iters_per_epoch / per_epoch)) for k in range(1, per_epoch + 1)}
