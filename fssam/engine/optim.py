"""Optimizers with their learning-rate schedules, as a method's recipe hands them over.

A method (``fssam.models.<method>.recipe``) builds a list of ``ScheduledOptimizer``; the
trainer sets every learning rate before each step and steps them all, never asking which
method it trains. Each parameter group keeps its base rate in ``initial_lr``; the rate of
a step is ``initial_lr * factor(done, total)`` with ``done`` the steps already taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
