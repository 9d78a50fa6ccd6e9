"""Saving and loading what training changes: a model's trained state without the frozen
parts that come from weight files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn


def load_exactly(model: nn.Module, state: Mapping[str, Tensor], expected: Iterable[str]) -> None:
    """Load ``state`` into ``model`` when its keys are exactly ``expected`` (the model's
    ``trainable_state_dict()`` keys); otherwise a KeyError names every missing and
    unexpected key. The other parameters of ``model`` are left as they are."""
    expected = set(expected)
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        raise KeyError(f"trainable state dict mismatch: missing {missing}, "
                       f"unexpected {unexpected}")
    model.load_state_dict(dict(state), strict=False)
