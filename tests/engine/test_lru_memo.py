"""The byte-bounded LRU store and the per-pass memo."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fssam.engine.feature_cache import FeatureCache, PassMemo
from fssam.engine.lru import LRUStore, tensor_bytes


def block(n: int) -> dict[str, torch.Tensor]:
    return {"x": torch.zeros(n, dtype=torch.float32)}  # 4n bytes


def test_least_recently_used_goes_first() -> None:
    store = LRUStore(budget_bytes=100)
    for key in "abc":
        assert store.put(key, block(8))  # 32 bytes each
    assert store.get("a") is not None  # a is now the most recent
    store.put("d", block(8))
    assert "b" not in store and all(k in store for k in "acd")
    assert store.evictions == 1 and store.bytes == 96 and len(store) == 3


def test_too_large_replaced_and_cleared() -> None:
    store = LRUStore(budget_bytes=100)
    assert not store.put("big", block(26)) and "big" not in store and store.bytes == 0
    store.put("a", block(8))
    store.put("a", block(4))
    assert store.bytes == 16 and len(store) == 1 and store.evictions == 0
    store.clear()
    assert store.bytes == 0 and len(store) == 0 and store.get("a") is None
    with pytest.raises(ValueError, match="budget_bytes"):
        LRUStore(budget_bytes=-1)


def test_tensor_bytes_counts_nested_tensors() -> None:
    value = {"a": torch.zeros(2, 3), "b": [torch.zeros(4, dtype=torch.bfloat16), "x"]}
    assert tensor_bytes(value) == 2 * 3 * 4 + 4 * 2


def test_cache_stores_a_copy_of_the_same_dtype() -> None:
    cache = FeatureCache(size_gb=1, storage="device")
    value = {"f": torch.arange(6, dtype=torch.bfloat16).view(2, 3).t()}
    cache.put(("k",), value)
    value["f"].add_(1)  # the model's tensors may change later; the cache's copy does not
    got = cache.get(("k",), torch.device("cpu"))
    assert got["f"].dtype == torch.bfloat16
    assert torch.equal(got["f"], torch.arange(6, dtype=torch.bfloat16).view(2, 3).t())
    with pytest.raises(ValueError, match="storage"):
        FeatureCache(size_gb=1, storage="disk")


def test_memo_forgets_everything_after_a_weight_update() -> None:
    net = nn.Linear(2, 2)
    memo = PassMemo(size_gb=1)
    calls: list[int] = []

    def work() -> torch.Tensor:
        calls.append(1)
        return net(torch.ones(1, 2)).detach()
    memo.bind(net)
    memo.compute("k", work)
    memo.compute("k", work)
    memo.bind(net)  # same weights: kept (e.g. the next seed of a test)
    memo.compute("k", work)
    assert len(calls) == 1 and memo.stats()["hits"] == 2
    torch.optim.SGD(net.parameters(), lr=0.1).zero_grad()
    net(torch.ones(1, 2)).sum().backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    memo.bind(net)
    memo.compute("k", work)
    assert len(calls) == 2
    memo.bind(net, context="torch.bfloat16")  # another precision: nothing kept either
    memo.compute("k", work)
    assert len(calls) == 3
    memo.compute(None, work)  # no key: computed, never kept
    memo.compute(None, work)
    assert len(calls) == 5 and memo.stats()["misses"] == 3
    off = PassMemo(size_gb=0)
    off.compute("k", work)
    off.compute("k", work)
    assert len(calls) == 7 and len(off.store) == 0
