"""What the trainer runs to validate: ``validation(model, device) -> metrics``.

The trainer keeps the checkpoint with the best ``metrics["miou"]`` and records every
number of ``metrics`` (metrics.jsonl, TensorBoard ``val/<name>``); it never asks what is
validated. Two kinds:

- ``EpisodicValidation``: few-shot episodes of the fold's novel classes (the shared
  evaluator): ``miou``, ``fbiou``, ``class_iou``;
- ``BaseClassValidation``: semantic segmentation of the fold's base classes (a base
  learner's stage): ``miou``, ``class_iou``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from fssam.engine.evaluate import run_evaluation
from fssam.engine.feature_cache import FeatureCache, PassMemo
from fssam.engine.prior_cache import PriorCache
from fssam.engine.semantic_eval import run_base_class_evaluation


class Validation(Protocol):
    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Metrics of ``model`` on the validation set (identical on every rank), with at
        least ``miou``."""


@dataclass
class EpisodicValidation:
    """Episodes of ``loader`` scored on ``class_ids``; ``prior_cache`` keeps the episodes'
    priors, ``feature_cache`` the frozen encoders' outputs across validations, and each
    validation gets a new ``PassMemo`` of ``memo_gb`` (0: none), so nothing that depends on
    trained weights outlives a training step."""

    loader: DataLoader
    class_ids: Sequence[int]
    amp_dtype: torch.dtype | None = None
    prior_cache: PriorCache | None = None
    feature_cache: FeatureCache | None = None
    memo_gb: float = 0.0
    progress: bool = True

    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        result = run_evaluation(model, self.loader, class_ids=list(self.class_ids), device=device,
                                amp_dtype=self.amp_dtype, prior_cache=self.prior_cache,
                                feature_cache=self.feature_cache,
                                memo=PassMemo(size_gb=self.memo_gb) if self.memo_gb else None,
                                progress=self.progress)
        return {"miou": result["miou"], "fbiou": result["fbiou"],
                "class_iou": result["class_iou"]}


@dataclass
class BaseClassValidation:
    """Images of ``loader`` segmented over the base classes ``class_ids`` (ascending)."""

    loader: DataLoader
    class_ids: Sequence[int]
    amp_dtype: torch.dtype | None = None
    progress: bool = True

    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        return run_base_class_evaluation(model, self.loader, class_ids=self.class_ids,
                                         device=device, amp_dtype=self.amp_dtype,
                                         progress=self.progress)
