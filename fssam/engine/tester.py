"""Testing a model on the evaluation episodes of several seeds (test.py and the demo).

For each seed, ``episodes`` evaluation episodes are scored with ``run_evaluation``;
``results.json`` holds the metrics of every seed and their mean and standard deviation
over the seeds (never a best seed). Only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from fssam.data import build_dataset
from fssam.data.folds import novel_classes
from fssam.engine.checkpoint import load_trained_weights
from fssam.engine.evaluate import PriorOnly, build_eval_loader, run_evaluation, summarize_seeds
from fssam.engine.feature_cache import PassMemo, reuse_from_config
from fssam.engine.prior_cache import PriorCache, cache_settings, model_prior_settings
from fssam.utils.config import ConfigError, dataset_kwargs, model_kwargs, validate_config
from fssam.utils.config import amp_dtype as amp_dtype_of
from fssam.utils.config import model_task, validate_eval_cache
from fssam.utils.dist import DistInfo, cleanup, init_distributed
from fssam.utils.io import atomic_write_text
from fssam.utils.logging import setup_logging, teardown_logging
from fssam.utils.seed import seed_everything

log = logging.getLogger(__name__)

CHECKPOINT_FORMATS = ("ours", "release", "none")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose_config(
    name: str, overrides: Sequence[str] = (), config_dir: Path = CONFIG_DIR
) -> DictConfig:
    """``configs/<name>.yaml`` composed with ``overrides`` outside ``hydra.main``.

    Hydra's global state (which importing sam2 sets up) is restored afterwards.
    """
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name=name, overrides=list(overrides))
    finally:
        restore_gh_from_backup(backup)


def validate_test_config(cfg: DictConfig) -> None:
    """Shared checks plus the test keys; errors name the key (``episodes=0: ...``)."""
    validate_config(cfg)
    if model_task(cfg) != "episodes":
        raise ConfigError(f"model.task={model_task(cfg)}: test.py evaluates few-shot episodes; "
                          f"model={cfg.model.name} is a base learner, validated by its training "
                          f"(best.pt by base-class mIoU)")
    validate_eval_cache(cfg.trainer.eval_cache)
    if cfg.checkpoint_format not in CHECKPOINT_FORMATS:
        raise ConfigError(
            f"checkpoint_format={cfg.checkpoint_format!r}: must be one of "
            f"{', '.join(CHECKPOINT_FORMATS)}"
        )
    for key, low in (("episodes", 1), ("batch_size", 1), ("vis", 0)):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{key}={value!r}: must be an integer >= {low}")
    seeds = list(cfg.seeds) if OmegaConf.is_list(cfg.seeds) else None
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds={cfg.seeds!r}: must be a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds}: a seed is repeated")
    for key in ("prior_cache", "prior_only"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r}: must be true or false")


def build_test_model(cfg: DictConfig) -> torch.nn.Module:
    """The configured model with the weights of ``checkpoint`` (``checkpoint_format``).

    Seeded with ``cfg.seed`` before it is built, as training does, so parts without a
    weight file (random micro SAM 2 / tiny DINOv2 of tests and the demo) are the same. An
    authors' checkpoint is read by the method's ``model.release.loader``; the builder
    arguments in ``model.release.build_without`` (weight files the release checkpoint
    replaces) are then not read.
    """
    seed_everything(int(cfg.seed))
    model = instantiate(model_kwargs(cfg.model, release=cfg.checkpoint_format == "release"))
    if cfg.checkpoint_format == "ours":
        load_trained_weights(model, cfg.checkpoint)
    elif cfg.checkpoint_format == "release":
        get_method(cfg.model.release.loader)(model, cfg.checkpoint)
    else:
        log.warning("checkpoint_format=none: testing the model WITHOUT trained weights")
    return model


def _prior_cache(cfg: DictConfig, model_settings: dict[str, Any] | None, seed: int,
                 amp_dtype: torch.dtype | None) -> PriorCache | None:
    if model_settings is None:
        return None
    settings = cache_settings(cfg, seed=seed, model_settings=model_settings, amp_dtype=amp_dtype)
    return PriorCache(cfg.prior_cache_dir, settings)


def evaluate_seeds(cfg: DictConfig, model: torch.nn.Module, info: DistInfo) -> dict[str, Any]:
    """Metrics of every seed in ``cfg.seeds`` and their mean/std (see ``summarize_seeds``)."""
    model.to(info.device)
    predictor = PriorOnly(model) if cfg.prior_only else model
    classes = novel_classes(cfg.dataset.protocol, int(cfg.split), cfg.dataset.coco_split)
    per_seed: dict[int, dict[str, Any]] = {}
    start = time.perf_counter()
    # The weights never change here: support memories may be reused across all seeds.
    feature_cache, memo_gb = reuse_from_config(cfg.trainer.eval_cache)
    memo = PassMemo(size_gb=memo_gb) if memo_gb else None
    prior_settings = (model_prior_settings(model, setting="prior_cache=true",
                                           model_name=cfg.model.name)
                      if cfg.prior_cache else None)
    for number, seed in enumerate(cfg.seeds):
        dataset = build_dataset(
            **dataset_kwargs(cfg, mode="val", num_episodes=int(cfg.episodes), seed=int(seed))
        )
        loader = build_eval_loader(
            dataset, batch_size=int(cfg.batch_size), num_workers=int(cfg.trainer.num_workers)
        )
        vis_dir = Path(cfg.run_dir) / "vis" if number == 0 and cfg.vis > 0 else None
        amp_dtype = amp_dtype_of(cfg.trainer, info.device)
        per_seed[int(seed)] = run_evaluation(
            predictor,
            loader,
            class_ids=classes,
            device=info.device,
            amp_dtype=amp_dtype,
            prior_cache=_prior_cache(cfg, prior_settings, seed, amp_dtype),
            feature_cache=feature_cache,
            memo=memo,
            vis_dir=vis_dir,
            num_vis=int(cfg.vis),
            progress=bool(cfg.trainer.progress),
        )
        log.info(
            "seed %d: mIoU %.2f FB-IoU %.2f",
            seed,
            per_seed[int(seed)]["miou"],
            per_seed[int(seed)]["fbiou"],
        )
    return {
        "dataset": cfg.dataset.name,
        "split": int(cfg.split),
        "shot": int(cfg.shot),
        "model": cfg.model.name,
        "variant": cfg.model.variant,
        "checkpoint": None if cfg.checkpoint_format == "none" else str(cfg.checkpoint),
        "checkpoint_format": cfg.checkpoint_format,
        "prior_only": bool(cfg.prior_only),
        "episodes": int(cfg.episodes),
        "world_size": info.world_size,
        "seconds": round(time.perf_counter() - start, 2),
        "per_seed": [{"seed": s, **r} for s, r in per_seed.items()],
        "summary": summarize_seeds(per_seed),
    }


def json_safe(value: Any) -> Any:
    """Non-finite floats become null; mapping keys become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_results(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``results`` as JSON atomically (temporary file, fsync, rename)."""
    return atomic_write_text(path, json.dumps(json_safe(results), indent=1))


def format_results(results: dict[str, Any]) -> str:
    """A small table: one row per seed, then mean +- std."""
    summary = results["summary"]
    lines = [
        f"{results['model']} {results['dataset']} split{results['split']} {results['shot']}-shot "
        f"{results['variant']}: {len(results['per_seed'])} seed(s) x "
        f"{results['episodes']} episodes",
        f"{'seed':>10}  {'mIoU':>14}  {'FB-IoU':>14}",
    ]
    for row in results["per_seed"]:
        lines.append(f"{row['seed']:>10}  {row['miou']:>14.2f}  {row['fbiou']:>14.2f}")
    miou, fbiou = summary["miou"], summary["fbiou"]
    lines.append(
        f"{'mean+-std':>10}  {miou['mean']:>7.2f} +-{miou['std']:>5.2f}  "
        f"{fbiou['mean']:>7.2f} +-{fbiou['std']:>5.2f}"
    )
    return "\n".join(lines)


def run_test(cfg: DictConfig) -> dict[str, Any]:
    """Validate ``cfg``, join the process group, test; rank 0 writes ``results_file``."""
    validate_test_config(cfg)
    info = init_distributed(cfg.trainer.device)
    try:
        setup_logging(info.rank, Path(cfg.run_dir) / "test.log")
        if cfg.trainer.num_threads is not None:
            torch.set_num_threads(int(cfg.trainer.num_threads))
        results = evaluate_seeds(cfg, build_test_model(cfg), info)
        if info.is_main:
            path = write_results(results, cfg.results_file)
            log.info("results written to %s\n%s", path, format_results(results))
        return results
    finally:
        cleanup()
        teardown_logging()
