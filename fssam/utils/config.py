"""Checks of composed Hydra configs, and the keyword arguments they give the builders.

Every error names the offending key and value (``shot=0: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from fssam.data.train_lists import AUTHORS, CHOICES as TRAIN_LISTS

DATASETS = ("pascal", "coco", "toy")
PROTOCOLS = ("pascal", "coco")
COCO_SPLITS = ("interleaved", "contiguous")
SUPPORT_ANNOTATIONS = ("mask", "bbox")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}
AMP_MODES = tuple(AMP_DTYPES)
NOT_BUILDER_KEYS = ("name", "variant", "optim", "checks", "release", "task", "weight_files")
DEVICES = ("auto", "cuda", "cpu")
# model.task: what a run trains on and validates with (train.py); episodes when unset
TASKS = ("episodes", "base_classes")
CACHE_STORAGES = ("cpu", "device")
EVAL_PROTOCOLS = ("release", "seeds")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key."""


def fail(key: str, value: Any, why: str) -> NoReturn:
    raise ConfigError(f"{key}={value!r}: {why}")


def check_int(cfg: DictConfig, key: str, low: int | None = None, high: int | None = None,
         optional: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        fail(key, value, "must be an integer")
    if low is not None and value < low:
        fail(key, value, f"must be >= {low}" + (f" and <= {high}" if high is not None else ""))
    if high is not None and value > high:
        fail(key, value, f"must be <= {high}" + (f" and >= {low}" if low is not None else ""))


def check_choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        fail(key, value, f"must be one of {', '.join(choices)}")


def check_bool(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        fail(key, value, "must be true or false")


def check_number(cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(key, value, "must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        fail(key, value, "must be >= 0" if allow_zero else "must be > 0")


def _check_scale_range(value: Any) -> None:
    pair = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else []
    numbers = [v for v in pair if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(pair) != 2 or len(numbers) != 2 or not 0 < numbers[0] <= numbers[1]:
        fail("dataset.scale_range", value, "must be [low, high] with 0 < low <= high")


def _check_val_list(data: DictConfig) -> None:
    value = OmegaConf.select(data, "val_list")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        fail("dataset.val_list", value, "must be standard or a list file")


def _check_train_list(data: DictConfig) -> None:
    value = OmegaConf.select(data, "train_list")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        fail("dataset.train_list", value, f"must be {', '.join(TRAIN_LISTS)} or a list file")
    if value == AUTHORS and data.protocol != "pascal":
        fail("dataset.train_list", value, f"the authors' list is PASCAL's; for "
             f"protocol {data.protocol} use 'all' or a list file")


def validate_config(cfg: DictConfig) -> None:
    """Check the keys shared by training and testing (split, shot, dataset, the model's
    input size), then the method's own keys with the function ``model.checks`` names."""
    check_int(cfg, "split", 0, 3)
    check_int(cfg, "shot", 1)
    check_int(cfg, "seed", 0)
    check_choice(cfg, "dataset.name", DATASETS)
    check_choice(cfg, "dataset.protocol", PROTOCOLS)
    check_choice(cfg, "dataset.coco_split", COCO_SPLITS)
    check_choice(cfg, "dataset.support_annotation", SUPPORT_ANNOTATIONS)
    _check_scale_range(OmegaConf.select(cfg, "dataset.scale_range"))
    check_int(cfg, "model.image_size", 1)
    _check_train_list(cfg.dataset)
    _check_val_list(cfg.dataset)
    if model_task(cfg) not in TASKS:
        fail("model.task", model_task(cfg), f"must be one of {', '.join(TASKS)}")
    wanted = OmegaConf.select(cfg, "experiment_dataset")
    if wanted is not None and wanted != cfg.dataset.name:
        fail("dataset", cfg.dataset.name, f"experiment {cfg.experiment_name} is the recipe for "
             f"dataset={wanted}")
    checks = OmegaConf.select(cfg, "model.checks")
    if checks is not None:
        get_method(checks)(cfg)


def validate_trainer(trainer: DictConfig) -> None:
    """Check the ``trainer`` group (keys are reported as ``trainer.<key>``)."""
    cfg = OmegaConf.create({"trainer": trainer})
    for key, low in (("batch_size", 1), ("epochs", 1), ("val_per_epoch", 0),
                     ("val_start_epoch", 0), ("val_mid_epoch_from", 0),
                     ("val_mid_epoch_delay", 0), ("val_episodes", 1),
                     ("val_seed", 0), ("val_batch_size", 1), ("num_workers", 0), ("log_every", 1)):
        check_int(cfg, f"trainer.{key}", low)
    for key in ("total_batch_size", "max_iterations", "early_stop_patience", "save_every",
                "num_threads"):
        check_int(cfg, f"trainer.{key}", 1, optional=True)
    check_choice(cfg, "trainer.amp", AMP_MODES)
    check_choice(cfg, "trainer.device", DEVICES)
    check_choice(cfg, "trainer.val_protocol", EVAL_PROTOCOLS)
    check_number(cfg, "trainer.dist_timeout_s")
    allowed = OmegaConf.select(cfg, "trainer.resume_allow_changes")
    if not OmegaConf.is_list(allowed) or not all(isinstance(k, str) and k for k in allowed):
        fail("trainer.resume_allow_changes", allowed, "must be a list of config keys, e.g. "
             "[trainer.epochs]")
    validate_eval_cache(trainer.eval_cache)


def validate_eval_cache(settings: DictConfig) -> None:
    """Check ``trainer.eval_cache`` (used by validation and by test.py)."""
    cfg = OmegaConf.create({"trainer": {"eval_cache": settings}})
    enabled = OmegaConf.select(cfg, "trainer.eval_cache.enabled")
    if not isinstance(enabled, bool):
        fail("trainer.eval_cache.enabled", enabled, "must be true or false")
    for key in ("size_gb", "memo_gb"):
        check_number(cfg, f"trainer.eval_cache.{key}", allow_zero=True)
    check_choice(cfg, "trainer.eval_cache.storage", CACHE_STORAGES)


def amp_dtype(trainer: DictConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``trainer.amp`` on ``device``; None (float32) off CUDA."""
    return AMP_DTYPES[trainer.amp] if device.type == "cuda" else None


def per_process_batch(trainer: DictConfig, world_size: int) -> int:
    """``total_batch_size / world_size`` when a total is set, else ``batch_size``."""
    total = trainer.total_batch_size
    if total is None:
        return int(trainer.batch_size)
    if total % world_size:
        fail("trainer.total_batch_size", total, f"is not divisible by the {world_size} "
             "processes; set trainer.total_batch_size=null to use trainer.batch_size per process")
    return total // world_size


def model_kwargs(model_cfg: DictConfig, *, release: bool = False) -> DictConfig:
    """The ``model`` group ready for ``instantiate``: without the run-folder labels
    (``name``, ``variant``), the training recipe (``optim``), ``checks``, ``release``, the
    training ``task`` and the ``weight_files`` a path key picks from. With ``release`` (an
    authors' checkpoint will replace them) the weight files of ``release.build_without``
    are not read: those arguments are None."""
    container = OmegaConf.to_container(model_cfg, resolve=True)
    if release:
        for key in container.get("release", {}).get("build_without", []):
            container[key] = None
    for key in NOT_BUILDER_KEYS:
        container.pop(key, None)
    return OmegaConf.create(container)


def dataset_kwargs(cfg: DictConfig, *, mode: str, num_episodes: int = 1000,
                   seed: int | None = None, protocol: str = "seeds",
                   release_workers: int = 0) -> dict[str, Any]:
    """Keyword arguments of ``fssam.data.build_dataset`` for ``mode`` ("train"/"val");
    evaluation episodes of ``protocol`` (``fssam.data.protocol``)."""
    data = cfg.dataset
    return {
        "dataset": data.protocol, "root": str(data.root), "fold": int(cfg.split),
        "shot": int(cfg.shot), "mode": mode, "image_size": int(cfg.model.image_size),
        "num_episodes": num_episodes, "seed": int(cfg.seed if seed is None else seed),
        "coco_split": data.coco_split, "support_annotation": data.support_annotation,
        "scale_range": (float(data.scale_range[0]), float(data.scale_range[1])),
        "train_list": data.train_list, "val_list": OmegaConf.select(data, "val_list"),
        "cache_dir": data.cache_dir, "protocol": protocol, "release_workers": release_workers,
    }


def model_task(cfg: DictConfig) -> str:
    """``model.task``: "episodes" (few-shot training, the default) or "base_classes" (a base
    learner's semantic segmentation of the fold's base classes)."""
    return OmegaConf.select(cfg, "model.task", default=TASKS[0])


def base_dataset_kwargs(cfg: DictConfig, *, mode: str) -> dict[str, Any]:
    """Keyword arguments of ``fssam.data.semantic.build_base_dataset`` for ``mode``."""
    keys = ("dataset", "root", "fold", "mode", "image_size", "seed", "coco_split",
            "scale_range", "train_list", "val_list")
    kwargs = dataset_kwargs(cfg, mode=mode)
    return {k: kwargs[k] for k in keys}


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
