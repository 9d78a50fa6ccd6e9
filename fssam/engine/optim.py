"""Optimizers with their learning-rate schedules, as a method's recipe hands them over.

A method (``fssam.models.<method>.recipe``) builds a list of ``ScheduledOptimizer``; the
trainer sets every learning rate before each step and steps them all, never asking which
method it trains. Each parameter group keeps its base rate in ``initial_lr``; the rate of
a step is ``initial_lr * factor(done, total)`` with ``done`` the steps already taken.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

LRFactor = Callable[[int, int], float]


def poly_factor(power: float, *, one_based: bool = False) -> LRFactor:
    """``(1 - i / total) ** power`` with ``i`` the finished steps, or the step being taken
    when ``one_based`` (``i = done + 1``, set before the step); never below 0."""
    offset = 1 if one_based else 0

    def factor(done: int, total: int) -> float:
        return max(0.0, 1.0 - (done + offset) / total) ** power

    return factor


def constant_factor(done: int, total: int) -> float:
    """A constant learning rate."""
    return 1.0


@dataclass
class ScheduledOptimizer:
    """``optimizer`` named ``name`` (its checkpoint key) and its schedule ``factor``."""

    name: str
    optimizer: Optimizer
    factor: LRFactor

    def __post_init__(self) -> None:
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def set_lr(self, done: int, total: int) -> float:
        """Set every group's rate for the next step; returns the first group's."""
        factor = self.factor(done, total)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]


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
