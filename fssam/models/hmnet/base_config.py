"""Checks of the base learner's config keys (``model.checks`` of configs/model/pspnet.yaml).
Errors name the key and value."""

from __future__ import annotations

from omegaconf import DictConfig

from fssam.data.folds import base_classes
from fssam.models.hmnet.backbones import BACKBONES
from fssam.utils.config import check_choice, check_int, check_number, fail


def check_config(cfg: DictConfig) -> None:
    """``model.*`` and ``model.optim.*`` of a PSPNet base-learner config."""
    check_choice(cfg, "model.backbone", BACKBONES)
    for key in ("backbone_width", "head_dim", "num_base_classes"):
        check_int(cfg, f"model.{key}", 1)
    expected = len(base_classes(cfg.dataset.protocol, cfg.split, cfg.dataset.coco_split))
    if cfg.model.num_base_classes != expected:
        fail("model.num_base_classes", cfg.model.num_base_classes,
             f"{cfg.dataset.protocol} has {expected} base classes per fold")
    for key in ("backbone_lr", "head_lr", "power"):
        check_number(cfg, f"model.optim.{key}")
    for key in ("momentum", "weight_decay"):
        check_number(cfg, f"model.optim.{key}", allow_zero=True)
