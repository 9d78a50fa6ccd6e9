"""Checks of HMNet's config keys (``model.run.checks`` of fssam/configs/model/hmnet.yaml) and of its base
learner's (configs/model/pspnet.yaml). Errors name the key and value."""

from __future__ import annotations

from omegaconf import DictConfig

from fssam.data import benchmarks
from fssam.data.folds import base_classes
from fssam.models.hmnet.model import WINDOW_RATIO
from fssam.utils.checks import check_int, check_number, fail


def check_base_class_count(cfg: DictConfig) -> None:
    """``model.num_base_classes`` must be the fold's base-class count (15 PASCAL, 60 COCO)."""
    check_int(cfg, "model.num_base_classes", 1)
    benchmark = str(cfg.dataset.benchmark)
    bench = benchmarks.get(benchmark)
    if bench.hmnet_release is None:
        fail("dataset", cfg.dataset.name, f"HMNet's base learner exists for PASCAL-5i and "
             f"COCO-20i only (its folds' base classes); {bench.title} has none: use FSSAM "
             f"there")
    expected = len(base_classes(benchmark, cfg.split, str(cfg.dataset.coco_folds)))
    if cfg.model.num_base_classes != expected:
        fail("model.num_base_classes", cfg.model.num_base_classes,
             f"{benchmark} has {expected} base classes per fold (the experiments "
             f"{benchmark}_hmnet and {benchmark}_base set it)")


def check_config(cfg: DictConfig) -> None:
    """Ranges of ``model.*`` in an HMNet config: grid, widths, base classes."""
    check_int(cfg, "model.grid", WINDOW_RATIO)
    if cfg.model.grid % WINDOW_RATIO:
        fail("model.grid", cfg.model.grid, f"must be a multiple of {WINDOW_RATIO}")
    for key in ("backbone_width", "head_dim", "reduce_dim", "mamba_depth"):
        check_int(cfg, f"model.{key}", 1)
    if cfg.model.shot != cfg.shot:
        fail("model.shot", cfg.model.shot, f"must equal shot={cfg.shot}")
    check_base_class_count(cfg)
    for key in ("sgd_lr", "lr_multiplier", "adamw_lr", "adamw_eps", "power"):
        check_number(cfg, f"model.optim.{key}")
    for key in ("momentum", "sgd_weight_decay", "adamw_weight_decay"):
        check_number(cfg, f"model.optim.{key}", allow_zero=True)


def check_pspnet_config(cfg: DictConfig) -> None:
    """Ranges of ``model.*`` and ``model.optim.*`` in the PSPNet base learner's config."""
    for key in ("backbone_width", "head_dim"):
        check_int(cfg, f"model.{key}", 1)
    check_base_class_count(cfg)
    for key in ("backbone_lr", "head_lr", "power"):
        check_number(cfg, f"model.optim.{key}")
    for key in ("momentum", "weight_decay"):
        check_number(cfg, f"model.optim.{key}", allow_zero=True)
