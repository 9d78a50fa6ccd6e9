"""The composed Hydra configs: composing them, checking what their schemas cannot, and the
keyword arguments they give the builders.

Types and choices are the schemas' (``fssam/configs/schema.py``): Hydra refuses a wrong one
at composition, naming the key. What remains here are ranges and relations between keys;
every error names the offending key and value (``shot=0: must be >= 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from fssam.data import benchmarks
from fssam.data.train_lists import AUTHORS
from fssam.utils.checks import ConfigError, check_int, check_number, fail

CONFIG_MODULE = "fssam.configs"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}
AMP_MODES = tuple(AMP_DTYPES)
DEVICES = ("auto", "cuda", "cpu")
# model.run.task: what a run trains on and validates with
TASKS = ("episodes", "base_classes")
# the parts of the model group the builder never sees
NOT_BUILDER_KEYS = ("run", "release", "optim")
# a model group saved before run metadata had its own node: these keys move into model.run
LEGACY_RUN_KEYS = ("name", "variant", "task", "checks", "weight_files")


def compose_config(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``fssam/configs/<name>.yaml`` composed with ``overrides`` outside ``hydra.main``.

    Hydra's global state (which importing sam2 sets up) is restored afterwards.
    """
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=name, overrides=list(overrides))
    finally:
        restore_gh_from_backup(backup)


def plain(cfg: DictConfig) -> dict[str, Any]:
    """A config as plain containers, resolved, choices as strings (what checkpoints keep)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def validate_config(cfg: DictConfig) -> None:
    """Check the keys shared by training and testing, then the method's own with the
    function ``model.run.checks`` names."""
    bench = benchmarks.get(str(cfg.dataset.benchmark))
    check_int(cfg, "split", 0, bench.max_fold)
    if bench.all_classes_fold and cfg.split == bench.num_folds and \
            cfg.get("val_dataset") is None:
        fail("split", cfg.split, f"is {bench.title}'s all-classes training fold: it has no "
             f"class to evaluate; validate on another dataset (experiment="
             f"{bench.name}_crossdomain) and test on a cross-domain target")
    check_int(cfg, "shot", 1)
    check_int(cfg, "seed", 0)
    scale = list(cfg.dataset.scale_range)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        fail("dataset.scale_range", scale, "must be [low, high] with 0 < low <= high")
    check_int(cfg, "model.run.input_size", 1)
    check_int(cfg, "dataset.support_points", 1)
    for key in ("train_list", "val_list"):
        value = cfg.dataset[key]
        if value is not None and not value.strip():
            fail(f"dataset.{key}", value, "must name a list (or a list file)")
    if cfg.dataset.train_list == AUTHORS and bench.authors_list is None:
        fail("dataset.train_list", AUTHORS, f"the authors' list is PASCAL's; for "
             f"{cfg.dataset.benchmark} use 'all' or a list file")
    wanted = cfg.experiment_dataset
    if wanted is not None and wanted != cfg.dataset.name:
        fail("dataset", cfg.dataset.name, f"experiment {cfg.experiment_name} is the recipe for "
             f"dataset={wanted}")
    if cfg.model.run.checks is not None:
        get_method(cfg.model.run.checks)(cfg)


def validate_trainable(cfg: DictConfig) -> None:
    """A ConfigError naming ``dataset`` when the benchmark has no training list (the
    cross-domain targets are test-only: train on PASCAL-5i, test there)."""
    bench = benchmarks.get(str(cfg.dataset.benchmark))
    if "train" not in bench.subsets:
        fail("dataset", cfg.dataset.name, f"{bench.title} is a test-only benchmark (no training "
             f"list): train on another dataset and test on it with test.py")


def validation_config(cfg: DictConfig) -> DictConfig:
    """The config a training run validates with: ``cfg`` itself, or, when ``val_dataset``
    is set (cross-domain training), ``cfg`` with that dataset and its fold 0."""
    if cfg.get("val_dataset") is None:
        return cfg
    out = cfg.copy()
    out.dataset = cfg.val_dataset
    out.split = 0
    return out


def validate_trainer(trainer: DictConfig) -> None:
    """Check the ranges of the ``trainer`` group (keys are reported as ``trainer.<key>``)."""
    cfg = OmegaConf.create({"trainer": trainer})
    for key, low in (("batch_size", 1), ("epochs", 1), ("val_per_epoch", 0),
                     ("val_start_epoch", 0), ("val_mid_epoch_from", 0),
                     ("val_mid_epoch_delay", 0), ("val_episodes", 1),
                     ("val_seed", 0), ("val_batch_size", 1), ("num_workers", 0), ("log_every", 1)):
        check_int(cfg, f"trainer.{key}", low)
    for key in ("total_batch_size", "max_iterations", "early_stop_patience", "save_every",
                "num_threads"):
        check_int(cfg, f"trainer.{key}", 1, optional=True)
    check_number(cfg, "trainer.dist_timeout_s")
    if not all(key.strip() for key in trainer.resume_allow_changes):
        fail("trainer.resume_allow_changes", list(trainer.resume_allow_changes),
             "must be a list of config keys, e.g. [trainer.epochs]")
    validate_eval_cache(trainer.eval_cache)


def validate_eval_cache(settings: DictConfig) -> None:
    """Check ``trainer.eval_cache`` (used by validation and by test.py)."""
    cfg = OmegaConf.create({"trainer": {"eval_cache": settings}})
    for key in ("size_gb", "memo_gb"):
        check_number(cfg, f"trainer.eval_cache.{key}", allow_zero=True)


def amp_dtype(trainer: DictConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``trainer.amp`` on ``device``; None (float32) off CUDA."""
    return AMP_DTYPES[str(trainer.amp)] if device.type == "cuda" else None


def per_process_batch(trainer: DictConfig, world_size: int) -> int:
    """``total_batch_size / world_size`` when a total is set, else ``batch_size``."""
    total = trainer.total_batch_size
    if total is None:
        return int(trainer.batch_size)
    if total % world_size:
        fail("trainer.total_batch_size", total, f"is not divisible by the {world_size} "
             "processes; set trainer.total_batch_size=null to use trainer.batch_size per process")
    return total // world_size


def model_group(group: Mapping[str, Any] | DictConfig) -> DictConfig:
    """A ``model`` group as a config, a saved one of the earlier flat layout (``name``,
    ``variant``... beside the builder arguments) moved into today's (``model.run``)."""
    container = (OmegaConf.to_container(group, resolve=True, enum_to_str=True)
                 if isinstance(group, DictConfig) else dict(group))
    if "run" not in container:
        run = {k: container.pop(k) for k in LEGACY_RUN_KEYS if k in container}
        run.setdefault("input_size", container.get("image_size"))
        container["run"] = run
    return OmegaConf.create(container)


def model_kwargs(model_cfg: Mapping[str, Any] | DictConfig, *,
                 release: bool = False) -> DictConfig:
    """The builder arguments of a ``model`` group, ready for ``instantiate``: the group
    without ``run``, ``release`` and ``optim``. With ``release`` (an authors' checkpoint
    will replace them) the weight files of ``release.build_without`` are not read: those
    arguments are None."""
    container = OmegaConf.to_container(model_group(model_cfg), resolve=True, enum_to_str=True)
    if release:
        for key in (container.get("release") or {}).get("build_without", []):
            container[key] = None
    for key in NOT_BUILDER_KEYS:
        container.pop(key, None)
    return OmegaConf.create(container)


def model_task(cfg: DictConfig) -> str:
    """``model.run.task``: "episodes" (few-shot training) or "base_classes" (a base
    learner's semantic segmentation of the fold's base classes)."""
    return str(cfg.model.run.task)


def dataset_kwargs(cfg: DictConfig, *, mode: str, num_episodes: int = 1000,
                   seed: int | None = None, protocol: str = "seeds",
                   release_workers: int = 0, subset: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``fssam.data.build_dataset`` for ``mode`` ("train"/"val");
    evaluation episodes of ``protocol`` (``fssam.data.protocol``) on the benchmark's list
    ``subset`` ("test" for test.py: the benchmark's test list where it has one)."""
    data = cfg.dataset
    return {
        "dataset": str(data.benchmark), "root": str(data.root), "fold": int(cfg.split),
        "shot": int(cfg.shot), "mode": mode, "image_size": int(cfg.model.run.input_size),
        "num_episodes": num_episodes, "seed": int(cfg.seed if seed is None else seed),
        "coco_folds": str(data.coco_folds), "support_annotation": str(data.support_annotation),
        "scale_range": (float(data.scale_range[0]), float(data.scale_range[1])),
        "train_list": data.train_list, "val_list": data.val_list,
        "cache_dir": data.cache_dir, "protocol": protocol, "release_workers": release_workers,
        "support_points": int(data.support_points),
        **({"subset": subset} if subset is not None else {}),
    }


def base_dataset_kwargs(cfg: DictConfig, *, mode: str) -> dict[str, Any]:
    """Keyword arguments of ``fssam.data.semantic.build_base_dataset`` for ``mode``."""
    keys = ("dataset", "root", "fold", "mode", "image_size", "seed", "coco_folds",
            "scale_range", "train_list", "val_list")
    kwargs = dataset_kwargs(cfg, mode=mode)
    return {k: kwargs[k] for k in keys}


def release_workers(cfg: DictConfig) -> int:
    """The loader workers of the method's release (``model.release.workers``), which decide
    the release's episode sequence."""
    workers = cfg.model.release.workers
    if workers < 0:
        raise ConfigError(f"model.release.workers={workers!r}: must be an integer >= 0 (the "
                          f"release config's DataLoader workers)")
    return int(workers)


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
