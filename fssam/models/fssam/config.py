"""Checks of FSSAM's own config keys (``model.run.checks``): the SAM 2 group, DINOv2, the
refinement and the training recipe. Errors name the key and value."""

from __future__ import annotations

from omegaconf import DictConfig

from fssam.models.fssam.prior import TIMM_NAMES
from fssam.utils.checks import check_int, check_number, fail

SAM2_NAMES = ("tiny", "small", "base_plus", "large", "micro")
DINO_VARIANTS = tuple(TIMM_NAMES)
REFINE_VERSIONS = ("v1", "v2")


def check_config(cfg: DictConfig) -> None:
    """Ranges of ``sam2.*``, ``model.*`` and ``model.optim.*`` in an FSSAM config (their types
    and choices are the schema's)."""
    check_int(cfg, "sam2.image_size", 32)
    if cfg.sam2.image_size % 32:
        fail("sam2.image_size", cfg.sam2.image_size, "must be a multiple of 32")
    check_int(cfg, "model.num_refine", 0)
    check_int(cfg, "model.dino_input_size", 14)
    if cfg.model.dino_input_size % 14:
        fail("model.dino_input_size", cfg.model.dino_input_size, "must be a multiple of 14")
    for key in ("lr", "power"):
        check_number(cfg, f"model.optim.{key}")
    check_number(cfg, "model.optim.weight_decay", allow_zero=True)
