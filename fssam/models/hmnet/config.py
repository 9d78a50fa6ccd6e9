"""Checks of HMNet's config keys (``model.checks`` of configs/model/hmnet.yaml). Errors name
the key and value."""

from __future__ import annotations

from omegaconf import DictConfig

from fssam.data.folds import base_classes
from fssam.models.hmnet.backbones import BACKBONES
from fssam.models.hmnet.model import WINDOW_RATIO
from fssam.utils.config import check_choice, check_int, fail


def check_base_class_count(cfg: DictConfig) -> None:
    """``model.num_base_classes`` must be the fold's base-class count (15 PASCAL, 60 COCO)."""
    check_int(cfg, "model.num_base_classes", 1)
    expected = len(base_classes(cfg.dataset.protocol, cfg.split, cfg.dataset.coco_split))
    if cfg.model.num_base_classes != expected:
        fail("model.num_base_classes", cfg.model.num_base_classes,
             f"{cfg.dataset.protocol} has {expected} base classes per fold (the experiment "
             f"{cfg.dataset.protocol}_hmnet sets it)")


def check_config(cfg: DictConfig) -> None:
    """``model.*`` of an HMNet config: backbone, grid, widths, base classes."""
    check_choice(cfg, "model.backbone", BACKBONES)
    check_int(cfg, "model.grid", WINDOW_RATIO)
    if cfg.model.grid % WINDOW_RATIO:
        fail("model.grid", cfg.model.grid, f"must be a multiple of {WINDOW_RATIO}")
    for key in ("backbone_width", "head_dim", "reduce_dim", "mamba_depth"):
        check_int(cfg, f"model.{key}", 1)
    if cfg.model.shot != cfg.shot:
        fail("model.shot", cfg.model.shot, f"must equal shot={cfg.shot}")
    check_base_class_count(cfg)
