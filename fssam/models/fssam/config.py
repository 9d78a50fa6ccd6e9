"""Checks of FSSAM's own config keys (``model.checks``): the SAM 2 group, DINOv2, the
refinement and the training recipe. Errors name the key and value."""

from __future__ import annotations

from omegaconf import DictConfig

from fssam.utils.config import check_bool, check_choice, check_int, check_number, fail

SAM2_NAMES = ("tiny", "small", "base_plus", "large", "micro")
DINO_VARIANTS = ("vitb14", "vitl14", "vitg14")
REFINE_VERSIONS = ("v1", "v2")


def check_config(cfg: DictConfig) -> None:
    """``sam2.*``, ``model.*`` and ``model.optim.*`` of an FSSAM config."""
    check_choice(cfg, "sam2.name", SAM2_NAMES)
    check_int(cfg, "sam2.image_size", 32)
    if cfg.sam2.image_size % 32:
        fail("sam2.image_size", cfg.sam2.image_size, "must be a multiple of 32")
    check_choice(cfg, "model.dino_variant", DINO_VARIANTS)
    check_choice(cfg, "model.refine_version", REFINE_VERSIONS)
    check_int(cfg, "model.num_refine", 0)
    check_int(cfg, "model.dino_input_size", 14)
    if cfg.model.dino_input_size % 14:
        fail("model.dino_input_size", cfg.model.dino_input_size, "must be a multiple of 14")
    for key in ("lr", "power"):
        check_number(cfg, f"model.optim.{key}")
    check_number(cfg, "model.optim.weight_decay", allow_zero=True)
    for key in ("model.legacy_kshot", "model.fp32_calibration", "model.optim.one_based"):
        check_bool(cfg, key)
