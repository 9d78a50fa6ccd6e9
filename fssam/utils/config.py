"""Checks of composed Hydra configs, and the keyword arguments they give the builders.

Every error names the offending key and value (``shot=0: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

DATASETS = ("pascal", "coco", "toy")
PROTOCOLS = ("pascal", "coco")
COCO_SPLITS = ("interleaved", "contiguous")
SUPPORT_ANNOTATIONS = ("mask", "bbox")
SAM2_NAMES = ("tiny", "small", "base_plus", "large", "micro")
DINO_VARIANTS = ("vitb14", "vitl14", "vitg14")
REFINE_VERSIONS = ("v1", "v2")
AMP_MODES = ("bf16", "none")
DEVICES = ("auto", "cuda", "cpu")
CACHE_STORAGES = ("cpu", "device")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key."""


def _fail(key: str, value: Any, why: str) -> NoReturn:
    raise ConfigError(f"{key}={value!r}: {why}")


def _int(cfg: DictConfig, key: str, low: int | None = None, high: int | None = None,
         optional: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, value, "must be an integer")
    if low is not None and value < low:
        _fail(key, value, f"must be >= {low}" + (f" and <= {high}" if high is not None else ""))
    if high is not None and value > high:
        _fail(key, value, f"must be <= {high}" + (f" and >= {low}" if low is not None else ""))


def _choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        _fail(key, value, f"must be one of {', '.join(choices)}")


def _positive(cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, value, "must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        _fail(key, value, "must be >= 0" if allow_zero else "must be > 0")


def _check_scale_range(value: Any) -> None:
    pair = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else []
    numbers = [v for v in pair if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(pair) != 2 or len(numbers) != 2 or not 0 < numbers[0] <= numbers[1]:
        _fail("dataset.scale_range", value, "must be [low, high] with 0 < low <= high")


def validate_config(cfg: DictConfig) -> None:
    """Check the keys shared by training and testing: split, shot, dataset, sam2, model."""
    _int(cfg, "split", 0, 3)
    _int(cfg, "shot", 1)
    _int(cfg, "seed", 0)
    _choice(cfg, "dataset.name", DATASETS)
    _choice(cfg, "dataset.protocol", PROTOCOLS)
    _choice(cfg, "dataset.coco_split", COCO_SPLITS)
    _choice(cfg, "dataset.support_annotation", SUPPORT_ANNOTATIONS)
    _check_scale_range(OmegaConf.select(cfg, "dataset.scale_range"))
    _choice(cfg, "sam2.name", SAM2_NAMES)
    _int(cfg, "sam2.image_size", 32)
    if cfg.sam2.image_size % 32:
        _fail("sam2.image_size", cfg.sam2.image_size, "must be a multiple of 32")
    _choice(cfg, "model.dino_variant", DINO_VARIANTS)
    _choice(cfg, "model.refine_version", REFINE_VERSIONS)
    _int(cfg, "model.num_refine", 0)
    _int(cfg, "model.dino_input_size", 14)
    if cfg.model.dino_input_size % 14:
        _fail("model.dino_input_size", cfg.model.dino_input_size, "must be a multiple of 14")
    wanted = OmegaConf.select(cfg, "experiment_dataset")
    if wanted is not None and wanted != cfg.dataset.name:
        _fail("dataset", cfg.dataset.name, f"experiment {cfg.experiment_name} is the recipe for "
              f"dataset={wanted}")


def validate_trainer(trainer: DictConfig) -> None:
    """Check the ``trainer`` group (keys are reported as ``trainer.<key>``)."""
    cfg = OmegaConf.create({"trainer": trainer})
    for key in ("lr", "lr_power"):
        _positive(cfg, f"trainer.{key}")
    _positive(cfg, "trainer.weight_decay", allow_zero=True)
    for key, low in (("batch_size", 1), ("epochs", 1), ("val_per_epoch", 0), ("val_episodes", 1),
                     ("val_seed", 0), ("val_batch_size", 1), ("num_workers", 0), ("log_every", 1)):
        _int(cfg, f"trainer.{key}", low)
    for key in ("total_batch_size", "max_iterations", "early_stop_patience", "save_every",
                "num_threads"):
        _int(cfg, f"trainer.{key}", 1, optional=True)
    _choice(cfg, "trainer.amp", AMP_MODES)
    _choice(cfg, "trainer.device", DEVICES)
    validate_eval_cache(trainer.eval_cache)


def validate_eval_cache(settings: DictConfig) -> None:
    """Check ``trainer.eval_cache`` (used by validation and by test.py)."""
    cfg = OmegaConf.create({"trainer": {"eval_cache": settings}})
    enabled = OmegaConf.select(cfg, "trainer.eval_cache.enabled")
    if not isinstance(enabled, bool):
        _fail("trainer.eval_cache.enabled", enabled, "must be true or false")
    for key in ("size_gb", "memo_gb"):
        _positive(cfg, f"trainer.eval_cache.{key}", allow_zero=True)
    _choice(cfg, "trainer.eval_cache.storage", CACHE_STORAGES)


def per_process_batch(trainer: DictConfig, world_size: int) -> int:
    """``total_batch_size / world_size`` when a total is set, else ``batch_size``."""
    total = trainer.total_batch_size
    if total is None:
        return int(trainer.batch_size)
    if total % world_size:
        _fail("trainer.total_batch_size", total, f"is not divisible by the {world_size} "
              "processes; set trainer.total_batch_size=null to use trainer.batch_size per process")
    return total // world_size


def model_kwargs(model_cfg: DictConfig) -> DictConfig:
    """The ``model`` group without ``name`` (a run-folder label), ready for ``instantiate``."""
    container = OmegaConf.to_container(model_cfg, resolve=True)
    container.pop("name", None)
    return OmegaConf.create(container)


def dataset_kwargs(cfg: DictConfig, *, mode: str, num_episodes: int = 1000,
                   seed: int | None = None) -> dict[str, Any]:
    """Keyword arguments of ``fssam.data.build_dataset`` for ``mode`` ("train"/"val")."""
    data = cfg.dataset
    return {
        "dataset": data.protocol, "root": str(data.root), "fold": int(cfg.split),
        "shot": int(cfg.shot), "mode": mode, "image_size": int(cfg.sam2.image_size),
        "num_episodes": num_episodes, "seed": int(cfg.seed if seed is None else seed),
        "coco_split": data.coco_split, "support_annotation": data.support_annotation,
        "scale_range": (float(data.scale_range[0]), float(data.scale_range[1])),
        "train_list": data.train_list, "cache_dir": data.cache_dir,
    }


def config_changes(saved: dict[str, Any], current: dict[str, Any],
                   prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, current value)`` of every value that differs."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += config_changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append((f"{prefix}{key}", old, new))
    return changes
