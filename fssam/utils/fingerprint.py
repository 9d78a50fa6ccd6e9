"""Fingerprints of weights and settings: what caches use to tell one model from another."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def _update(digest: Any, name: str, tensor: torch.Tensor) -> None:
    data = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
    if data.numel():
        digest.update(data.view(torch.uint8).numpy())


def state_fingerprint(parts: Mapping[str, nn.Module | torch.Tensor],
                      settings: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex, 16 characters) of modules' state dicts, lone tensors and settings.

    Names, dtypes, shapes and every value count, so two fingerprints are equal only when
    the weights (whatever their origin: a file or a random initialisation) and the JSON
    form of ``settings`` are.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(settings or {}), sort_keys=True, default=str).encode())
    for prefix, part in sorted(parts.items()):
        state = part.state_dict() if isinstance(part, nn.Module) else {"": part}
        for name, tensor in sorted(state.items()):
            _update(digest, f"{prefix}.{name}", tensor)
    return digest.hexdigest()[:16]


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 (hex, 16 characters) of a module's state dict: names, dtypes, shapes, values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        _update(digest, name, tensor)
    return digest.hexdigest()[:16]
