"""The one model factory: a composed config's model, with the weights asked for.

Training, testing, ``predict.py``, the GPU check and the benchmarks all build their model
here. The method is whatever ``model._target_`` names (the engine never imports a method);
``weights`` says what fills the trained parts:

- ``ours``: a checkpoint of ``train.py`` (``model`` holds the trainable state);
- ``release``: an authors' checkpoint, read by the method's ``model.release.loader``; the
  builder arguments in ``model.release.build_without`` (weight files their file replaces)
  are not read;
- ``none``: the model as built (random heads; tests, baselines, benchmarks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from fssam.engine.checkpoint import load_trained_weights
from fssam.engine.config import model_kwargs
from fssam.utils.seed import seed_everything

log = logging.getLogger(__name__)

WEIGHTS = ("ours", "release", "none")


def build_model(model_cfg: DictConfig | Mapping[str, Any], *, weights: str = "none",
                checkpoint: str | Path | None = None, seed: int | None = None,
                state: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """The model of the ``model`` config group ``model_cfg`` with ``weights`` loaded.

    ``seed``: seeds the random initialisation first (parts without a weight file), as
    training does, so that a test rebuilds the parts a training run did not save. ``state``:
    the trainable state already read from ``checkpoint`` (``ours``).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}: must be one of {', '.join(WEIGHTS)}")
    if isinstance(model_cfg, Mapping) and not isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.create(dict(model_cfg))
    if seed is not None:
        seed_everything(int(seed))
    model = instantiate(model_kwargs(model_cfg, release=weights == "release"))
    if weights == "ours":
        if state is not None:
            model.load_trainable_state_dict(state)
        else:
            load_trained_weights(model, _required(checkpoint, weights))
    elif weights == "release":
        get_method(model_cfg.release.loader)(model, _required(checkpoint, weights))
    return model


def _required(checkpoint: str | Path | None, weights: str) -> str | Path:
    if checkpoint is None:
        raise ValueError(f"weights={weights!r} needs a checkpoint")
    return checkpoint
