"""Stepping a method's optimisers and keeping their states (``fssam.contract``'s
``ScheduledOptimizer``: a method's recipe returns them, the trainer steps them all)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fssam.contract import ScheduledOptimizer

def backward_and_step(loss: torch.Tensor, optimizers: Sequence[ScheduledOptimizer],
                      scaler: torch.amp.GradScaler | None = None) -> None:
    """Clear the gradients, back-propagate ``loss`` and step every optimizer, through the
    gradient ``scaler`` (float16 training) when one is given."""
    for scheduled in optimizers:
        scheduled.optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        for scheduled in optimizers:
            scheduled.optimizer.step()
        return
    scaler.scale(loss).backward()
    for scheduled in optimizers:
        scaler.step(scheduled.optimizer)
    scaler.update()


def optimizer_states(optimizers: Sequence[ScheduledOptimizer]) -> dict[str, dict[str, Any]]:
    """Each optimizer's ``state_dict()`` under its name (a checkpoint's ``optimizers``)."""
    return {o.name: o.optimizer.state_dict() for o in optimizers}


def load_optimizer_states(optimizers: Sequence[ScheduledOptimizer],
                          checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Load a checkpoint's optimizer states by name; the names must be the same.

    A checkpoint of the single-optimizer format (``optimizer``) loads into a run with one
    optimizer.
    """
    saved = checkpoint.get("optimizers")
    if saved is None and "optimizer" in checkpoint and len(optimizers) == 1:
        saved = {optimizers[0].name: checkpoint["optimizer"]}
    names = sorted(o.name for o in optimizers)
    if saved is None or sorted(saved) != names:
        raise ValueError(f"cannot resume from {path}: it holds optimizers "
                         f"{sorted(saved or [])}, this run has {names}")
    for scheduled in optimizers:
        scheduled.optimizer.load_state_dict(saved[scheduled.name])
