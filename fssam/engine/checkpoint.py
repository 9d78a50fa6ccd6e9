"""Checkpoints: atomic writes, safe loads, strict loading of the trained weights.

A checkpoint (``last.pt``, ``best.pt``) is a dict with ``model`` (the model's
``trainable_state_dict()``), ``optimizers`` (state per optimizer name), ``scaler``,
``epoch``, ``iteration``, ``best_miou``, ``config`` (resolved, plain containers) and
``rng`` (per-rank generator states). Checkpoints written before several optimizers were
supported hold one ``optimizer`` instead; they still resume.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fssam.utils.dist import broadcast_object
from fssam.utils.io import WriteError, atomic_write

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("model", "epoch", "iteration", "best_miou", "config", "rng")


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then
    renamed over ``path``: a crash at any point leaves the previous file intact. The state
    is serialised in memory first: ``torch.save`` into a full disk reports only "unexpected
    pos", the write of its bytes a ``WriteError`` naming ``path`` and the cause.
    """
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    data = buffer.getbuffer()
    path = atomic_write(path, lambda handle: handle.write(data))
    log.info("saved %s", path)
    return path


def save_on_main(make_state: Callable[[], Mapping[str, Any]], paths: Sequence[Path], *,
                 is_main: bool) -> None:
    """Rank 0 writes ``make_state()`` to each of ``paths``; then every rank raises if it
    could not (a collective: a full disk stops all ranks with rank 0's error, which names
    the file and the cause, instead of leaving them waiting for rank 0)."""
    error: Exception | None = None
    if is_main:
        try:
            state = make_state()
            for path in paths:
                save_checkpoint(state, path)
        except Exception as err:  # noqa: BLE001 (told to every rank, then raised)
            error = err
    failure = broadcast_object(None if error is None else (getattr(error, "errno", None),
                                                           str(error)))
    if error is not None:
        raise error
    if failure is not None:
        code, message = failure
        text = f"rank 0 could not save a checkpoint: {message}"
        raise RuntimeError(text) if code is None else WriteError(code, text)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    full: bool = True) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    ``full`` requires every key of a training checkpoint (for resuming); otherwise only
    ``model`` is required.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    required = REQUIRED_KEYS if full else ("model",)
    missing = [key for key in required if key not in state]
    if missing:
        raise KeyError(f"checkpoint {path} lacks {missing} (has {sorted(state)})")
    return state


def load_trained_weights(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Strictly load the ``model`` entry of a checkpoint into ``model``; returns the checkpoint.

    ``model`` must offer ``load_trainable_state_dict``, which names every missing or
    unexpected key.
    """
    state = load_checkpoint(path, full=False)
    model.load_trainable_state_dict(state["model"])
    log.info("loaded trained weights from %s (epoch %s, iteration %s)", path,
             state.get("epoch"), state.get("iteration"))
    return state


def find_resume_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """``run_dir/last.pt`` if it exists."""
    path = Path(run_dir) / LAST
    return path if path.is_file() else None
