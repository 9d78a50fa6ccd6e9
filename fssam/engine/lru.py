"""A least-recently-used store bounded by the bytes of the tensors it holds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import torch

GB = 1024**3


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in ``value`` (a tensor, or dicts/lists/tuples of them)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


class LRUStore:
    """Values by key, at most ``budget_bytes`` of tensors; the least recently used go first.

    A value larger than the whole budget is not stored. ``evictions`` counts the values
    dropped to make room.
    """

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.budget = int(budget_bytes)
        self.bytes = 0
        self.evictions = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> Any | None:
        """The value of ``key`` (now the most recently used), or None."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, value: Any) -> bool:
        """Store ``value`` under ``key``, evicting as needed; False when it cannot fit."""
        size = tensor_bytes(value)
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        if size > self.budget:
            return False
        while self.bytes + size > self.budget:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped
            self.evictions += 1
        self._items[key] = (value, size)
        self.bytes += size
        return True

    def clear(self) -> None:
        """Drop every value (not counted as evictions)."""
        self._items.clear()
        self.bytes = 0
