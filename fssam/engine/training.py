"""Training setup: the model, data, validation and trainer of a composed config.

``train(cfg)`` is what ``train.py`` runs (and the demos, in code): it checks the config,
joins the process group, writes the run records and trains. ``model.run.task`` chooses the data
and the validation: few-shot episodes (the default), or the base classes of a base learner
(HMNet's first stage).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from fssam.contract import ScheduledOptimizer
from fssam.data import build_dataset
from fssam.data.folds import base_classes
from fssam.data.semantic import build_base_dataset
from fssam.engine.build import build_model
from fssam.engine.config import (AMP_DTYPES, amp_dtype, base_dataset_kwargs, dataset_kwargs,
                                 model_task, per_process_batch, plain, release_workers,
                                 validate_config, validate_trainable, validate_trainer,
                                 validation_config)
from fssam.engine.evaluate import build_eval_loader
from fssam.engine.faults import guard
from fssam.engine.feature_cache import reuse_from_config
from fssam.engine.prior_cache import PriorCache, cache_settings, model_prior_settings
from fssam.engine.train_data import build_train_loader
from fssam.engine.trainer import Trainer, TrainSettings
from fssam.engine.validation import BaseClassValidation, EpisodicValidation, Validation
from fssam.utils.dist import DistInfo, cleanup, init_distributed
from fssam.utils.logging import setup_logging, teardown_logging, write_run_records
from fssam.utils.seed import seed_everything

log = logging.getLogger(__name__)


def settings_from_config(trainer: DictConfig) -> TrainSettings:
    """TrainSettings from the ``trainer`` group."""
    return TrainSettings(
        epochs=trainer.epochs, max_iterations=trainer.max_iterations,
        early_stop_patience=trainer.early_stop_patience, val_per_epoch=trainer.val_per_epoch,
        val_start_epoch=trainer.val_start_epoch, val_mid_epoch_from=trainer.val_mid_epoch_from,
        val_mid_epoch_delay=trainer.val_mid_epoch_delay,
        amp_dtype=AMP_DTYPES[str(trainer.amp)],
        save_every=trainer.save_every, log_every=trainer.log_every, resume=trainer.resume,
        progress=trainer.progress, resume_allow_changes=tuple(trainer.resume_allow_changes))


def build_optimizers(cfg: DictConfig, model: torch.nn.Module,
                     batch_size: int) -> list[ScheduledOptimizer]:
    """The method's optimisers: ``model.optim`` names its recipe and the recipe's values;
    every recipe also gets the per-process ``batch_size`` (HMNet's AdamW rate follows it)."""
    return list(instantiate(cfg.model.optim, model, batch_size=batch_size))


def val_prior_cache(cfg: DictConfig, model: torch.nn.Module, device: torch.device,
                    episodes: str) -> PriorCache | None:
    """On-disk priors of the validation episodes (``episodes``: their fingerprint) when
    ``trainer.val_prior_cache`` is set."""
    if cfg.trainer.val_prior_cache is None:
        return None
    model_settings = model_prior_settings(
        model, setting=f"trainer.val_prior_cache={cfg.trainer.val_prior_cache}",
        model_name=cfg.model.run.name)
    settings = cache_settings(cfg, episodes=episodes, model_settings=model_settings,
                              amp_dtype=amp_dtype(cfg.trainer, device))
    return PriorCache(cfg.trainer.val_prior_cache, settings)


def episodic_data(cfg: DictConfig, model: torch.nn.Module,
                  device: torch.device) -> tuple[Dataset, Validation | None]:
    """Episodes of the base classes; validation on episodes of the novel classes
    (``trainer.val_protocol``: the release's sequence by default)."""
    t = cfg.trainer
    train_set = build_dataset(**dataset_kwargs(cfg, mode="train"))
    if t.val_per_epoch == 0:
        return train_set, None
    val_cfg = validation_config(cfg)  # cfg, or its val_dataset (cross-domain training)
    val_set = build_dataset(**dataset_kwargs(
        val_cfg, mode="val", num_episodes=t.val_episodes, seed=t.val_seed,
        protocol=t.val_protocol, release_workers=release_workers(cfg)))
    feature_cache, memo_gb = reuse_from_config(t.eval_cache)
    return train_set, EpisodicValidation(
        loader=build_eval_loader(val_set, batch_size=t.val_batch_size, num_workers=t.num_workers),
        class_ids=val_set.class_ids,
        amp_dtype=amp_dtype(t, device),
        prior_cache=val_prior_cache(val_cfg, model, device, val_set.fingerprint()),
        feature_cache=feature_cache, memo_gb=memo_gb, progress=t.progress)


def base_class_data(cfg: DictConfig, model: torch.nn.Module,
                    device: torch.device) -> tuple[Dataset, Validation | None]:
    """Every listed image with its base classes as semantic labels (a base learner's
    stage); validation: the base-class mIoU over the whole validation list."""
    t = cfg.trainer
    train_set = build_base_dataset(**base_dataset_kwargs(cfg, mode="train"))
    if t.val_per_epoch == 0:
        return train_set, None
    val_set = build_base_dataset(**base_dataset_kwargs(cfg, mode="val"))
    return train_set, BaseClassValidation(
        loader=build_eval_loader(val_set, batch_size=t.val_batch_size, num_workers=t.num_workers),
        class_ids=base_classes(str(cfg.dataset.benchmark), cfg.split, str(cfg.dataset.coco_folds)),
        amp_dtype=amp_dtype(t, device), progress=t.progress)


TASK_DATA = {"episodes": episodic_data, "base_classes": base_class_data}


def build_trainer(cfg: DictConfig, info: DistInfo) -> Trainer:
    """Model, loaders and trainer of a validated config (``model.run.task`` chooses the data
    and the validation: few-shot episodes by default)."""
    t = cfg.trainer
    batch_size = per_process_batch(t, info.world_size)
    model = build_model(cfg.model, seed=cfg.seed)  # identical initial weights on every rank
    seed_everything(cfg.seed, info.rank)
    train_set, validation = TASK_DATA[model_task(cfg)](cfg, model, info.device)
    train_loader = build_train_loader(train_set, batch_size=batch_size, num_workers=t.num_workers,
                                      seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    log.info("%d training items, %d per process per step over %d process(es)", len(train_set),
             batch_size, info.world_size)
    return Trainer(model=model, optimizers=build_optimizers(cfg, model, batch_size),
                   train_loader=train_loader, validation=validation, run_dir=cfg.run_dir,
                   settings=settings_from_config(t), dist=info,
                   config=plain(cfg))


def train(cfg: DictConfig) -> dict[str, Any]:
    """Validate ``cfg``, join the process group, train; returns the trainer's summary."""
    validate_config(cfg)
    validate_trainable(cfg)
    validate_trainer(cfg.trainer)
    info = init_distributed(cfg.trainer.device, timeout_s=cfg.trainer.dist_timeout_s)
    try:
        run_dir = Path(cfg.run_dir)
        setup_logging(info.rank, run_dir / "train.log")
        if cfg.trainer.num_threads is not None:
            torch.set_num_threads(int(cfg.trainer.num_threads))
        if cfg.trainer.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
            torch.use_deterministic_algorithms(True)
        if info.is_main:
            write_run_records(run_dir, OmegaConf.to_yaml(cfg, resolve=True), info.world_size)
        log.info("run folder %s", run_dir)
        with guard(info):  # names lost ranks; no retry of what a restart meets again
            return build_trainer(cfg, info).fit()
    finally:
        cleanup()
        teardown_logging()
