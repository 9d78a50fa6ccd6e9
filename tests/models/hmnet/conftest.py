"""Shared HMNet fixtures: the release's reference tensors and its weights rebuilt."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

PARITY_HMNET = Path(__file__).resolve().parents[2] / "fixtures" / "parity_hmnet"


def rebuild_release_weights(backbone: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The release model's state_dict entries under ``prefix`` (prefix stripped), rebuilt
    from ``weights_<backbone>.pt`` by the parity README's recipe; every float tensor is
    checked against its stored SHA-256."""
    spec = torch.load(PARITY_HMNET / f"weights_{backbone}.pt", weights_only=True)
    state = {}
    for row in spec["rows"]:
        key, shape = row["key"], tuple(row["shape"])
        if not key.startswith(prefix):
            continue
        if row["kind"] == "recipe":
            k = np.random.RandomState(row["seed"]).randint(-128, 128, size=int(np.prod(shape)))
            value = (row["base"] + k.astype(np.float64) * 2.0 ** (row["exp"] - 7))
            tensor = torch.from_numpy(value.astype(np.float32).reshape(shape))
        elif row["kind"] == "stored":
            tensor = spec["stored"][key]
        else:
            tensor = torch.zeros(shape, dtype=torch.long)
        if tensor.is_floating_point():
            digest = hashlib.sha256(tensor.numpy().astype("<f4").tobytes()).hexdigest()
            assert digest == spec["sha256"][key], f"rebuilt {key} does not match its SHA-256"
        state[key[len(prefix):]] = tensor
    return state


@pytest.fixture(scope="session")
def hmnet_parity():
    """Loader of ``tests/fixtures/parity_hmnet/<name>.pt`` by name, cached."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = torch.load(PARITY_HMNET / f"{name}.pt", weights_only=True)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def release_weights():
    """``release_weights(backbone, prefix)``: the release's rebuilt state_dict entries."""
    return rebuild_release_weights
