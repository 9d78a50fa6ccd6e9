"""FSSAM's training recipe (README: Training): AdamW over SAM 2's mask decoder, memory
encoder and memory attention, per-iteration poly decay over all iterations, no warm-up."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fssam.contract import ScheduledOptimizer, poly_factor


def fssam_optimizers(model: torch.nn.Module, *, lr: float = 1e-3, weight_decay: float = 0.0,
                     betas: Sequence[float] = (0.9, 0.999), power: float = 0.9,
                     one_based: bool = True, batch_size: int | None = None
                     ) -> list[ScheduledOptimizer]:
    """One AdamW over ``model.param_groups()``; the rate of a step is
    ``lr * (1 - i / total) ** power`` with ``i`` the 1-based number of the step, as the
    release counts (``one_based=False``: the steps already taken, so the first step runs
    at ``lr``). ``batch_size`` (per process) does not change FSSAM's rate."""
    optimizer = torch.optim.AdamW(model.param_groups(), lr=lr, betas=tuple(betas),
                                  weight_decay=weight_decay)
    return [ScheduledOptimizer("adamw", optimizer, poly_factor(power, one_based=one_based))]
