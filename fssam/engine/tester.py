"""Testing a model on the evaluation episodes of two protocols (test.py and the demo).

Two rows, both of ``episodes`` episodes scored with ``run_evaluation``: the release
protocol's (the releases' own test episodes: seed 321 and the release's worker count; the
number to set beside a paper's table) and ours over several seeds (mean and standard
deviation over the seeds, never a best seed). ``protocols`` selects the rows; both by
default. Only rank 0 writes ``results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fssam.data import benchmarks, build_dataset
from fssam.data.protocol import PROTOCOLS, RELEASE, RULE_NAMES, SEEDS
from fssam.engine.build import WEIGHTS, build_model
from fssam.engine.evaluate import PriorOnly, build_eval_loader, run_evaluation, summarize_seeds
from fssam.engine.feature_cache import PassMemo, reuse_from_config
from fssam.engine.prior_cache import PriorCache, cache_settings, model_prior_settings
from fssam.engine.config import (ConfigError, amp_dtype, dataset_kwargs, model_task,
                                 release_workers, validate_config, validate_eval_cache)
from fssam.utils.dist import DistInfo, cleanup, init_distributed
from fssam.utils.io import atomic_write_text
from fssam.utils.logging import setup_logging, teardown_logging

log = logging.getLogger(__name__)

CHECKPOINT_FORMATS = WEIGHTS


def validate_test_config(cfg: DictConfig) -> None:
    """Shared checks plus the test keys; errors name the key (``episodes=0: ...``)."""
    validate_config(cfg)
    if model_task(cfg) != "episodes":
        raise ConfigError(f"model.run.task={model_task(cfg)}: test.py evaluates few-shot episodes; "
                          f"model={cfg.model.run.name} is a base learner, validated by its training "
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
    protocols = list(cfg.protocols) if OmegaConf.is_list(cfg.protocols) else None
    if not protocols or any(p not in PROTOCOLS for p in protocols) or \
            len(set(protocols)) != len(protocols):
        raise ConfigError(f"protocols={cfg.protocols!r}: must be a list of distinct values "
                          f"among {', '.join(PROTOCOLS)}")
    seeds = list(cfg.seeds) if OmegaConf.is_list(cfg.seeds) else None
    if SEEDS in protocols and (not seeds or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
        raise ConfigError(f"seeds={cfg.seeds!r}: must be a non-empty list of integers >= 0")
    if SEEDS in protocols and len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds}: a seed is repeated")
    value = cfg.release_seed
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"release_seed={value!r}: must be an integer >= 0")
    if RELEASE in protocols:
        release_workers(cfg)
    for key in ("prior_cache", "prior_only"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r}: must be true or false")
    if cfg.prior_cache and cfg.dataset.support_annotation in ("points", "scribble"):
        raise ConfigError(f"prior_cache=true with dataset.support_annotation="
                          f"{cfg.dataset.support_annotation}: the priors then depend on the "
                          f"support masks SAM 2's trained decoder makes of the prompts, which "
                          f"the cache is not keyed by; use prior_cache=false")


def build_test_model(cfg: DictConfig) -> torch.nn.Module:
    """The configured model with the weights of ``checkpoint`` (``checkpoint_format``),
    seeded with ``cfg.seed`` as training seeds it (``fssam.engine.build.build_model``)."""
    if cfg.checkpoint_format == "none":
        log.warning("checkpoint_format=none: testing the model WITHOUT trained weights")
    return build_model(cfg.model, weights=cfg.checkpoint_format, checkpoint=cfg.checkpoint,
                       seed=int(cfg.seed))


def _prior_cache(cfg: DictConfig, model_settings: dict[str, Any] | None, episodes: str,
                 amp_dtype: torch.dtype | None) -> PriorCache | None:
    if model_settings is None:
        return None
    settings = cache_settings(cfg, episodes=episodes, model_settings=model_settings,
                              amp_dtype=amp_dtype)
    return PriorCache(cfg.prior_cache_dir, settings)


def protocol_passes(cfg: DictConfig) -> list[tuple[str, int]]:
    """(protocol, seed) of every evaluation pass of a test, in order: the release's sequence
    (``release_seed``) first, then ours for each of ``seeds``."""
    passes: list[tuple[str, int]] = []
    if RELEASE in cfg.protocols:
        passes.append((RELEASE, int(cfg.release_seed)))
    if SEEDS in cfg.protocols:
        passes += [(SEEDS, int(seed)) for seed in cfg.seeds]
    return passes


def evaluate_protocols(cfg: DictConfig, model: torch.nn.Module, info: DistInfo
                       ) -> dict[str, Any]:
    """The release protocol's row and the multi-seed row (``protocols``) of ``model``.

    ``release``: the metrics of the releases' test episodes (``release_seed``, the
    release's worker count), the numbers comparable with the papers. ``per_seed`` and
    ``summary``: our protocol over ``seeds``, mean and std over the seeds (never a best
    seed).
    """
    model.to(info.device)
    predictor = PriorOnly(model) if cfg.prior_only else model
    start = time.perf_counter()
    # The weights never change here: support memories may be reused across all passes.
    feature_cache, memo_gb = reuse_from_config(cfg.trainer.eval_cache)
    memo = PassMemo(size_gb=memo_gb) if memo_gb else None
    prior_settings = (model_prior_settings(model, setting="prior_cache=true",
                                           model_name=cfg.model.run.name)
                      if cfg.prior_cache else None)
    amp = amp_dtype(cfg.trainer, info.device)
    workers = release_workers(cfg)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for number, (protocol, seed) in enumerate(protocol_passes(cfg)):
        dataset = build_dataset(**dataset_kwargs(
            cfg, mode="val", num_episodes=int(cfg.episodes), seed=seed, protocol=protocol,
            release_workers=workers, subset="test"))
        loader = build_eval_loader(
            dataset, batch_size=int(cfg.batch_size), num_workers=int(cfg.trainer.num_workers)
        )
        vis_dir = Path(cfg.run_dir) / "vis" if number == 0 and cfg.vis > 0 else None
        rows[protocol, seed] = run_evaluation(
            predictor,
            loader,
            class_ids=dataset.class_ids,
            device=info.device,
            amp_dtype=amp,
            prior_cache=_prior_cache(cfg, prior_settings, dataset.fingerprint(), amp),
            feature_cache=feature_cache,
            memo=memo,
            vis_dir=vis_dir,
            num_vis=int(cfg.vis),
            progress=bool(cfg.trainer.progress),
        )
        log.info("%s protocol, seed %d: mIoU %.2f FB-IoU %.2f", protocol, seed,
                 rows[protocol, seed]["miou"], rows[protocol, seed]["fbiou"])
    per_seed = {seed: row for (protocol, seed), row in rows.items() if protocol == SEEDS}
    rule = benchmarks.get(str(cfg.dataset.benchmark)).release_rule
    release = next((dict(seed=seed, rule=rule, workers=workers if rule == "fssam" else None,
                         **row)
                    for (protocol, seed), row in rows.items() if protocol == RELEASE), None)
    return {
        "dataset": cfg.dataset.name,
        "split": int(cfg.split),
        "shot": int(cfg.shot),
        "model": cfg.model.run.name,
        "variant": cfg.model.run.variant,
        "checkpoint": None if cfg.checkpoint_format == "none" else str(cfg.checkpoint),
        "checkpoint_format": str(cfg.checkpoint_format),
        "prior_only": bool(cfg.prior_only),
        "episodes": int(cfg.episodes),
        "world_size": info.world_size,
        "seconds": round(time.perf_counter() - start, 2),
        "protocols": [str(p) for p in cfg.protocols],
        "release": release,
        "per_seed": [{"seed": s, **r} for s, r in per_seed.items()],
        "summary": summarize_seeds(per_seed) if per_seed else None,
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
    """A small table: the release protocol's row, then one row per seed and mean +- std."""
    lines = [
        f"{results['model']} {results['dataset']} split{results['split']} {results['shot']}-shot "
        f"{results['variant']}: {results['episodes']} episodes per row",
        f"{'protocol':<34}  {'mIoU':>14}  {'FB-IoU':>14}",
    ]
    release = results.get("release")
    if release:
        name = (f"release (seed {release['seed']}, {release['workers']} workers)"
                if release.get("workers") is not None else
                f"release ({RULE_NAMES.get(release.get('rule'), release.get('rule'))}, "
                f"seed {release['seed']})")
        lines.append(f"{name:<34}  {release['miou']:>14.2f}  {release['fbiou']:>14.2f}"
                     "   <- the papers' protocol")
    for row in results["per_seed"]:
        lines.append(f"{'seeds: ' + str(row['seed']):<34}  {row['miou']:>14.2f}  "
                     f"{row['fbiou']:>14.2f}")
    summary = results.get("summary")
    if summary:
        miou, fbiou = summary["miou"], summary["fbiou"]
        name = f"seeds: mean+-std over {len(results['per_seed'])}"
        lines.append(f"{name:<34}  {miou['mean']:>7.2f} +-{miou['std']:>5.2f}  "
                     f"{fbiou['mean']:>7.2f} +-{fbiou['std']:>5.2f}")
    return "\n".join(lines)


def run_test(cfg: DictConfig) -> dict[str, Any]:
    """Validate ``cfg``, join the process group, test; rank 0 writes ``results_file``."""
    validate_test_config(cfg)
    info = init_distributed(cfg.trainer.device)
    try:
        setup_logging(info.rank, Path(cfg.run_dir) / "test.log")
        if cfg.trainer.num_threads is not None:
            torch.set_num_threads(int(cfg.trainer.num_threads))
        results = evaluate_protocols(cfg, build_test_model(cfg), info)
        if info.is_main:
            path = write_results(results, cfg.results_file)
            log.info("results written to %s\n%s", path, format_results(results))
        return results
    finally:
        cleanup()
        teardown_logging()
