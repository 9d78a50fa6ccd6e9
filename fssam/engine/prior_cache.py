"""On-disk cache of the pseudo-prompt priors of fixed evaluation episodes.

The priors of an evaluation episode depend only on the episode (dataset, fold, shot, the
episode sequence and the index in it, support annotation type), the input size, the DINOv2 weights and the
precision DINOv2 ran in, never on the trained parts of the model. A cache directory is
named by a hash of those settings and holds ``settings.json`` plus one ``<index>.pt``
file per episode with the tensor ``[2, S, S]`` (channel 0 ``prior_fg``, channel 1
``prior_fb``) in float32.

Writes go to a temporary file in the same directory, are flushed to disk and renamed
into place, so readers never see a partial file and several ranks (or runs) may fill the
same directory at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fssam.data import benchmarks
from fssam.utils.checks import ConfigError
from fssam.utils.io import atomic_write

log = logging.getLogger(__name__)

KEY_FIELDS = (
    "dataset",
    "fold",
    "shot",
    "episodes",
    "image_size",
    "support_annotation",
    "coco_folds",
    "dino_variant",
    "dino_input_size",
    "dino_weights",
    "fp32_priors",
    "amp",
)
# Fields that may be left out; they then take this value.
DEFAULTS = {"amp": "none", "fp32_priors": False}


def prior_cache_key(settings: Mapping[str, Any]) -> str:
    """Hash (hex, 20 characters) of the settings that determine an episode's priors.

    ``settings`` must hold every name in ``KEY_FIELDS`` but those in ``DEFAULTS`` (use
    ``None`` where a field does not apply, e.g. ``coco_folds`` on PASCAL); ``amp`` is the
    autocast dtype DINOv2 runs under ("bfloat16", or "none" for float32). Extra names are
    rejected so a typo cannot silently drop a field from the key.
    """
    settings = {**DEFAULTS, **settings}
    missing = sorted(set(KEY_FIELDS) - set(settings))
    extra = sorted(set(settings) - set(KEY_FIELDS))
    if missing or extra:
        raise ValueError(f"prior cache settings: missing {missing}, unexpected {extra}")
    text = json.dumps({k: settings[k] for k in KEY_FIELDS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def model_prior_settings(model: torch.nn.Module, *, setting: str,
                         model_name: str) -> dict[str, Any]:
    """``model.prior_cache_settings()`` (it fingerprints the prior encoder's weights: call it
    once per model); a ConfigError naming ``setting`` when the model has no priors to cache."""
    if not callable(getattr(model, "prior_cache_settings", None)):
        raise ConfigError(f"{setting}: model {model_name} has no priors to cache "
                          f"(no prior_cache_settings)")
    return model.prior_cache_settings()


def cache_settings(cfg: Any, *, episodes: str, model_settings: Mapping[str, Any],
                   amp_dtype: torch.dtype | None) -> dict[str, Any]:
    """Cache settings of a composed train/test config's evaluation episodes (``episodes``:
    the sequence's ``EpisodicDataset.fingerprint()``);
    ``model_settings`` is the model's ``prior_cache_settings()`` (its prior encoder's
    ``dino_variant``, ``dino_input_size`` and ``dino_weights`` fingerprint)."""
    data = cfg.dataset
    return {
        "dataset": f"{data.name}:{Path(data.root).resolve()}",
        "fold": int(cfg.split),
        "shot": int(cfg.shot),
        "episodes": str(episodes),
        "image_size": int(cfg.model.run.input_size),
        "support_annotation": str(data.support_annotation),
        "coco_folds": (str(data.coco_folds)
                       if len(benchmarks.get(str(data.benchmark)).fold_schemes) > 1 else None),
        **model_settings,
        "amp": "none" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
    }


class PriorCache:
    """Priors of evaluation episodes stored under ``root/<prior_cache_key(settings)>/``."""

    def __init__(self, root: str | os.PathLike, settings: Mapping[str, Any]) -> None:
        self.settings = {**DEFAULTS, **settings}
        self.key = prior_cache_key(self.settings)
        self.dir = Path(root) / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "settings.json"
        if not info.exists():
            text = json.dumps(self.settings, sort_keys=True, indent=1).encode()
            atomic_write(info, lambda handle: handle.write(text))
        log.info("prior cache %s", self.dir)

    def path(self, index: int) -> Path:
        """File holding the priors of episode ``index``."""
        return self.dir / f"{int(index):06d}.pt"

    def get(self, index: int) -> torch.Tensor | None:
        """Priors ``[2, S, S]`` float32 of episode ``index``, or None when not cached."""
        path = self.path(index)
        if not path.exists():
            return None
        try:
            priors = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
            log.warning("unreadable prior cache file %s (%s); recomputing", path, error)
            return None
        size = self.settings["image_size"]
        if not isinstance(priors, torch.Tensor) or tuple(priors.shape) != (2, size, size):
            log.warning("prior cache file %s has an unexpected content; recomputing", path)
            return None
        return priors

    def put(self, index: int, priors: torch.Tensor) -> None:
        """Store the priors ``[2, S, S]`` of episode ``index`` (atomic, last writer wins)."""
        size = self.settings["image_size"]
        if tuple(priors.shape) != (2, size, size):
            raise ValueError(f"priors must be [2, {size}, {size}], got {tuple(priors.shape)}")
        data = priors.detach().to("cpu", torch.float32).contiguous().clone()
        atomic_write(self.path(index), lambda handle: torch.save(data, handle))
