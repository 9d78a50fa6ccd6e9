"""Which config changes a resume accepts.

A checkpoint stores the resolved config of its run; resuming compares it with this run's,
key by key (``config_changes``), and sorts every changed key into one of three kinds:

- ``FREE``: where files are and how the run is watched or paced (paths of the data and
  of the run, workers, threads, logging, saving, the stop point ``max_iterations``, the
  validation caches, timeouts) and where code lives (``_target_``, ``model.run.checks``).
  Same result: resumed with a log line. The batch sizes are left to the trainer, which
  refuses another epoch length (the same total batch over other processes resumes).
- ``IDENTITY``: what makes the checkpoint another run's (the method and its architecture,
  the SAM 2 / backbone variant, shot, fold, dataset, class split, seed, input size, task).
  Always refused: that run belongs in its own folder.
- everything else (the schedule's length, the optimiser's values, augmentation, precision,
  validation settings, weight files, the training list...): changes the rest of the run,
  so refused unless listed in ``trainer.resume_allow_changes`` (a key, or a prefix such as
  ``model.optim``).

A checkpoint written before the model's run keys had their own node (``model.name``...)
or before the dataset's keys were renamed (``dataset.protocol``, ``dataset.coco_split``) is
read in today's layout first. A key absent from the checkpoint's config (added to the code
since) or from this run's (removed) is logged, not refused. Entries are dotted keys; a key
matches an entry equal to it or below it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf

from fssam.engine.config import config_changes, model_group

log = logging.getLogger(__name__)

FREE = (
    "exp_dir", "run_dir", "dataset.root", "dataset.cache_dir",
    "trainer.num_workers", "trainer.num_threads", "trainer.progress", "trainer.log_every",
    "trainer.save_every", "trainer.max_iterations", "trainer.resume",
    "trainer.resume_allow_changes", "trainer.device", "trainer.deterministic",
    "trainer.eval_cache", "trainer.val_prior_cache", "trainer.val_batch_size",
    "trainer.dist_timeout_s", "model.run.checks", "model.release",
    "trainer.batch_size", "trainer.total_batch_size",  # judged by the epoch length instead
)
CODE_PATHS = "_target_"  # where a builder lives: code may move, model.run.name names the method
IDENTITY = (
    "model.run.name", "model.run.variant", "model.run.task", "model.run.input_size",
    "model.backbone", "model.sam2_config", "model.dino_variant", "model.image_size",
    "model.shot", "model.num_base_classes", "sam2.name", "sam2.config", "sam2.image_size",
    "shot", "split", "seed", "dataset.name", "dataset.benchmark", "dataset.coco_folds",
    "experiment_dataset",
)
# dataset keys of checkpoints written before they were renamed
LEGACY_DATASET_KEYS = {"protocol": "benchmark", "coco_split": "coco_folds"}


class ResumeMismatchError(ValueError):
    """The checkpoint belongs to another run, or this run changes it without leave."""


def _matches(key: str, entries: Sequence[str]) -> bool:
    return any(key == e or key.startswith(e + ".") for e in entries)


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], *, path: str,
                        allowed: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
    """Refuse (ResumeMismatchError naming every offending key with both values) the
    changes the rule above refuses; returns the accepted changes, which are logged."""
    saved = current_layout(saved)
    blocked_identity, blocked, accepted = [], [], []
    saved_keys, current_keys = _flat_keys(saved), _flat_keys(current)
    for key, old, new in config_changes(saved, current):
        line = f"{key}: {old!r} in the checkpoint, {new!r} now"
        if key not in saved_keys or key not in current_keys:
            log.info("resuming: %s (a key %s)", line, "newer than the checkpoint"
                     if key not in saved_keys else "this run no longer has")
        elif _matches(key, IDENTITY):
            blocked_identity.append(line)
        elif (_matches(key, FREE) or key.split(".")[-1] == CODE_PATHS
              or _matches(key, allowed)):
            accepted.append((key, old, new))
            log.info("resuming with %s=%r (the checkpoint had %r)", key, new, old)
        else:
            blocked.append(line)
    if blocked_identity:
        raise ResumeMismatchError(
            f"cannot resume from {path}: it is another run's checkpoint ("
            f"{'; '.join(blocked_identity)}). Give this run its own folder (exp_dir=... or "
            f"run_dir=...), or trainer.resume=false to start over here")
    if blocked:
        keys = ",".join(line.split(":")[0] for line in blocked)
        raise ResumeMismatchError(
            f"cannot resume from {path}: this run changes {'; '.join(blocked)}. These "
            f"change the rest of the run; to resume anyway add "
            f"trainer.resume_allow_changes=[{keys}], or go back to the checkpoint's values")
    return accepted


def _flat_keys(config: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in config.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, dict):
            keys |= _flat_keys(value, f"{prefix}{key}.")
    return keys


def current_layout(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with the keys of earlier layouts at today's places: the model
    group's run keys under ``model.run`` (``fssam.engine.config.model_group``), the
    dataset's renamed keys under their new names."""
    saved = dict(saved)
    if isinstance(saved.get("model"), dict):
        saved["model"] = OmegaConf.to_container(model_group(saved["model"]))
    if isinstance(saved.get("dataset"), dict):
        saved["dataset"] = {LEGACY_DATASET_KEYS.get(k, k): v for k, v in saved["dataset"].items()}
    return saved
