"""When things happen during training: the validation points of each epoch."""

from __future__ import annotations


def validation_points(iters_per_epoch: int, per_epoch: int) -> set[int]:
    """Batch counts within an epoch after which to validate; the last is the epoch end."""
    return {max(1, round(k * iters_per_epoch / per_epoch)) for k in range(1, per_epoch + 1)}


def epoch_validation_points(iters_per_epoch: int, epoch: int, *, per_epoch: int,
                            start_epoch: int = 0, mid_epoch_from: int = 0,
                            mid_epoch_delay: int = 0) -> set[int]:
    """``validation_points`` of the 0-based ``epoch``: none before ``start_epoch`` (or when
    ``per_epoch`` is 0), only the epoch end before ``mid_epoch_from``; the points inside the
    epoch come ``mid_epoch_delay`` steps later (never past its end)."""
    if not per_epoch or epoch < start_epoch:
        return set()
    points = validation_points(iters_per_epoch, per_epoch if epoch >= mid_epoch_from else 1)
    return {min(p + mid_epoch_delay, iters_per_epoch) if p < iters_per_epoch else p
            for p in points}
