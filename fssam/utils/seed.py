"""Per-rank seeding and capture/restore of every random generator a run uses."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

MAX_SEED = 2**32 - 1


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA) with ``seed + rank``; returns it.

    Ranks get different streams (e.g. dropout); data order and augmentation do not use
    these generators (samplers and datasets carry their own).
    """
    value = (int(seed) + int(rank)) % MAX_SEED
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


def get_rng_state() -> dict[str, Any]:
    """Generator states as tensors and plain Python types (loadable with weights_only).

    CUDA: the current device's generator (each rank drives one device).
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's device only
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``get_rng_state`` captured."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
