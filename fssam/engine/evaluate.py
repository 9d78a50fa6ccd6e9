"""Episodic evaluation shared by testing and the trainer's validation.

Episodes are sharded over ranks without padding (every episode is seen exactly once),
predictions are scored at the original query label size, and the per-class sums are
all-reduced by ``SegmentationEvaluator``, so every rank returns the same metrics, equal
to those of one process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from fssam.contract import (PromptedSupports, episode_image_ids, episode_images,
                            sigmoid_foreground, supports_feature_cache)
from fssam.data import collate_episodes
from fssam.data.support_prompts import LABELS_KEY, POINTS_KEY, SCRIBBLES_KEY
from fssam.engine.evaluator import SegmentationEvaluator, logits_to_prediction
from fssam.engine.feature_cache import BatchFeatures, FeatureCache, PassMemo, log_reuse
from fssam.engine.preemption import StopSignalsToRank
from fssam.engine.prior_cache import PriorCache
from fssam.engine.visualize import episode_panel, save_episode_png

log = logging.getLogger(__name__)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpisodeShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` below ``num_episodes``: no padding, no repeats."""

    def __init__(self, num_episodes: int, *, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.indices = range(rank, num_episodes, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int) -> DataLoader:
    """Loader over this rank's share of the evaluation episodes, in increasing order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rank, world = _rank_world()
    sampler = EpisodeShardSampler(len(dataset), rank=rank, world_size=world)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_episodes,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        worker_init_fn=StopSignalsToRank(os.getpid()),  # a stop ends the step, not them
    )


class PriorOnly(nn.Module):
    """Baseline that predicts the thresholded prior: logits ``prior_fg - 0.5``.

    Bilinear upsampling commutes with the shift, so ``sigmoid(up(logits)) >= 0.5`` is
    exactly ``up(prior_fg) >= 0.5``: the prior is scored the way the model's logits are.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any], **reuse: Any) -> dict[str, torch.Tensor]:
        priors = batch.get("priors")
        if priors is None:
            priors = self.model(batch, **reuse)["priors"]
        return {"logits": priors[:, 0] - 0.5, "priors": priors}

    def foreground(self, logits: torch.Tensor) -> torch.Tensor:
        return sigmoid_foreground(logits)

    def frozen_encoders(self) -> dict[str, str]:
        return self.model.frozen_encoders()

    def encode_images(self, name: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.encode_images(name, images)

    def support_masks_from_prompts(self, batch: dict[str, Any], **reuse: Any) -> torch.Tensor:
        return support_masks_from_prompts(self.model, batch, **reuse)


def support_masks_from_prompts(model: nn.Module, batch: dict[str, Any], *,
                               features: Any = None) -> torch.Tensor:
    """The support masks [b, K, S, S] the model makes of a batch's support prompts
    (``support_annotation=points|scribble``); a model that is not ``PromptedSupports``
    cannot."""
    if not isinstance(model, PromptedSupports):
        raise ValueError(f"{type(model).__name__} cannot turn support prompts (points, "
                         f"scribbles) into masks: it holds no SAM 2. Evaluate it with "
                         f"dataset.support_annotation=mask or bbox")
    return model.support_masks_from_prompts(batch, features=features)


def autocast(
    device: torch.device, amp_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """Autocast to ``amp_dtype`` on ``device``; no context when it is None (float32)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    keys = ("query_img", "support_imgs", "support_masks", "priors", POINTS_KEY, LABELS_KEY,
            SCRIBBLES_KEY)
    inputs = {k: batch[k].to(device, non_blocking=True) for k in keys if k in batch}
    inputs.update({k: batch[k] for k in ("query_id", "support_ids") if k in batch})
    return inputs


def _cached_priors(cache: PriorCache | None, episodes: Sequence[int]) -> torch.Tensor | None:
    """Stacked cached priors [b, 2, S, S] when every episode of the batch is cached."""
    if cache is None:
        return None
    found = [cache.get(i) for i in episodes]
    if any(p is None for p in found):
        return None
    return torch.stack(found)


def _save_overlays(
    vis_dir: Path, batch: dict[str, Any], preds: list[torch.Tensor], num_vis: int
) -> None:
    for i, episode in enumerate(batch["episode"].tolist()):
        if episode >= num_vis:
            continue
        panel = episode_panel(
            query_img=batch["query_img"][i],
            support_imgs=batch["support_imgs"][i],
            support_masks=batch["support_masks"][i],
            prediction=preds[i],
            target=batch["query_label"][i],
        )
        save_episode_png(
            vis_dir / f"episode_{episode:05d}_class{int(batch['class_id'][i])}.png", panel
        )


@torch.no_grad()
def evaluate_batch(
    model: nn.Module,
    batch: dict[str, Any],
    evaluator: SegmentationEvaluator,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    prior_cache: PriorCache | None = None,
    feature_cache: FeatureCache | None = None,
    memo: PassMemo | None = None,
) -> list[torch.Tensor]:
    """Run one batch, score every episode, fill the caches; returns the predictions.

    A model with frozen encoders (``supports_feature_cache``) gets their outputs from
    ``feature_cache`` (or, without one, encoded image by image all the same) and ``memo``
    (one that stores nothing when None).
    """
    episodes = batch["episode"].tolist()
    inputs = _to_device(batch, device)
    cached = _cached_priors(prior_cache, episodes)
    if cached is not None:
        inputs["priors"] = cached.to(device)
    reuse: dict[str, Any] = {}
    if supports_feature_cache(model):
        features = BatchFeatures(model, episode_images(inputs), episode_image_ids(inputs),
                                 feature_cache)
        reuse = {"features": features, "memo": memo if memo is not None else PassMemo(size_gb=0)}
    with autocast(device, amp_dtype):
        if "support_masks" not in inputs:  # prompted supports: the model's SAM 2 masks them
            inputs["support_masks"] = support_masks_from_prompts(
                model, inputs, features=reuse.get("features"))
            batch["support_masks"] = inputs["support_masks"].cpu()
        out = model(inputs, **reuse)
    if prior_cache is not None and cached is None:
        for i, episode in enumerate(episodes):
            prior_cache.put(episode, out["priors"][i])
    logits = out["logits"].float()
    preds = []
    for i, label in enumerate(batch["query_label"]):
        pred = logits_to_prediction(logits[i], tuple(label.shape), model.foreground).cpu()
        evaluator.update(pred, label, int(batch["class_id"][i]))
        preds.append(pred)
    return preds


def run_evaluation(
    model: nn.Module,
    loader: DataLoader,
    *,
    class_ids: Sequence[int],
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    prior_cache: PriorCache | None = None,
    feature_cache: FeatureCache | None = None,
    memo: PassMemo | None = None,
    vis_dir: str | os.PathLike | None = None,
    num_vis: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every episode of ``loader`` (this rank's shard) and reduce over ranks.

    Returns ``SegmentationEvaluator.compute()`` (identical on every rank). With a
    ``prior_cache``, cached priors are given to the model in ``batch["priors"]`` and
    missing ones are stored. ``feature_cache`` (kept across calls) and ``memo`` (only while
    the weights do not change, e.g. the seeds of one test) reuse work across episodes
    without changing any result (``fssam.engine.feature_cache``); their counters are logged
    at the end. With ``vis_dir`` and ``num_vis > 0``, episodes with an index below
    ``num_vis`` are written as PNG overlays by the rank that evaluates them.
    """
    device = torch.device(device)
    rank, _ = _rank_world()
    evaluator = SegmentationEvaluator(class_ids)
    reuse = supports_feature_cache(model)
    if reuse and feature_cache is not None:
        feature_cache.begin_pass(model, device, amp_dtype)
    if reuse and memo is not None:
        memo.bind(model, (str(amp_dtype), device.type))
    before = {"cache": feature_cache and feature_cache.stats(), "memo": memo and memo.stats()}
    was_training = model.training
    model.eval()
    try:
        bar = tqdm(loader, desc="eval", disable=not progress or rank != 0, dynamic_ncols=True)
        for batch in bar:
            preds = evaluate_batch(
                model, batch, evaluator, device=device, amp_dtype=amp_dtype,
                prior_cache=prior_cache, feature_cache=feature_cache, memo=memo,
            )
            if vis_dir is not None and num_vis > 0:
                _save_overlays(Path(vis_dir), batch, preds, num_vis)
    finally:
        model.train(was_training)
    if reuse and feature_cache is not None:
        log_reuse("encoder cache", feature_cache.stats(), before["cache"])
    if reuse and memo is not None:
        log_reuse("pass memo", memo.stats(), before["memo"])
    return evaluator.compute()


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and population standard deviation (ddof=0) of finite values (NaN if none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": math.nan, "std": math.nan}
    mean = sum(finite) / len(finite)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))}


def summarize_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean +- std over seeds of ``miou``, ``fbiou`` and each class IoU (never a best seed).

    ``per_seed`` maps a seed to ``run_evaluation``'s result for it.
    """
    if not per_seed:
        raise ValueError("no seed was evaluated")
    results = list(per_seed.values())
    classes = sorted({int(c) for r in results for c in r["class_iou"]})
    return {
        "seeds": [int(s) for s in per_seed],
        "miou": _mean_std([r["miou"] for r in results]),
        "fbiou": _mean_std([r["fbiou"] for r in results]),
        "class_iou": {
            c: _mean_std([r["class_iou"][c] for r in results if c in r["class_iou"]])
            for c in classes
        },
    }
