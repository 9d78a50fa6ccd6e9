"""Training of any method: the step does forward/backward/step, the rest hangs off it.

The method's model gives what differs: its loss (``model.loss(out, batch)``, a dict with
``loss``) and, through its recipe, the optimizers with their learning-rate schedules
(``ScheduledOptimizer``); the trainer never asks which method it trains.

Around the step: the per-iteration learning rates, loss records (metrics.jsonl,
TensorBoard), validation (evenly spaced within each epoch) by what the run validates
(``fssam.engine.validation``: few-shot episodes, or the base classes of a base learner),
``best.pt`` by mIoU, ``last.pt`` with everything needed to continue, automatic resume
(mid-epoch included: the batches already done are skipped, so a resumed run ends with
the weights of an uninterrupted one; a checkpoint of another run, or a changed config, is
refused by ``fssam.engine.resume_check``), early stopping, and stopping on SIGTERM or
SIGUSR1 after a step that every rank agrees on, with ``last.pt`` of that iteration
(``fssam.engine.preemption``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from fssam.engine import checkpoint as ckpt
from fssam.engine.optim import (ScheduledOptimizer, backward_and_step, load_optimizer_states,
                                optimizer_states)
from fssam.engine.preemption import PREEMPTED, StopRequest, report_stop
from fssam.engine.resume_check import check_resume_config
from fssam.engine.schedule import epoch_validation_points
from fssam.engine.train_data import ResumableSampler
from fssam.engine.validation import Validation
from fssam.utils.dist import DistInfo, all_gather_objects, all_reduce_sum, broadcast_object
from fssam.utils.logging import RunRecords
from fssam.utils.seed import get_rng_state, set_rng_state

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainSettings:
    """Schedule and bookkeeping settings (``configs/trainer``).

    Validation: ``val_per_epoch`` times per epoch (the last at its end) from the 0-based
    epoch ``val_start_epoch`` on; epochs before ``val_mid_epoch_from`` validate only at
    their end; the validations inside an epoch come ``val_mid_epoch_delay`` steps later than
    evenly spaced (HMNet's release: 1). ``amp_dtype`` float16 adds a gradient scaler.
    ``resume_allow_changes``: config keys (or prefixes) a resume may change
    (``fssam.engine.resume_check``).
    """

    epochs: int
    max_iterations: int | None = None
    early_stop_patience: int | None = None
    val_per_epoch: int = 2
    val_start_epoch: int = 0
    val_mid_epoch_from: int = 0
    val_mid_epoch_delay: int = 0
    amp_dtype: torch.dtype | None = None
    save_every: int | None = None
    log_every: int = 20
    resume: bool = True
    progress: bool = True
    resume_allow_changes: tuple[str, ...] = ()


@dataclass
class TrainState:
    """Position of the run: iterations done, best validation mIoU and when it was reached."""

    iteration: int = 0
    best_miou: float | None = None
    best_epoch: float = 0.0


class Trainer:
    """Trains ``model`` with ``optimizers`` on ``train_loader``; validates with ``validation``.

    ``model`` offers ``loss(out, batch)``, ``trainable_state_dict()`` and
    ``load_trainable_state_dict()``. ``train_loader`` must use a ``ResumableSampler``
    (``build_train_loader``); ``validation`` (``fssam.engine.validation``; None: never)
    returns the metrics of the model, ``miou`` choosing ``best.pt``; ``config`` (plain
    containers) is stored in every checkpoint.
    """

    def __init__(self, *, model: torch.nn.Module, optimizers: Sequence[ScheduledOptimizer],
                 train_loader: DataLoader, validation: Validation | None, run_dir: str | Path,
                 settings: TrainSettings, dist: DistInfo, config: dict[str, Any]) -> None:
        if not isinstance(train_loader.sampler, ResumableSampler):
            raise TypeError("train_loader needs a ResumableSampler (see build_train_loader)")
        self.model = model.to(dist.device)
        self.ddp = self._wrap(self.model, dist)
        self.train_loader, self.validation = train_loader, validation
        self.run_dir, self.settings, self.dist, self.config = Path(run_dir), settings, dist, config
        names = [o.name for o in optimizers]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"optimizers need distinct names, got {names}")
        self.optimizers = list(optimizers)
        fp16 = settings.amp_dtype == torch.float16 and dist.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self.iters_per_epoch = train_loader.sampler.num_batches(train_loader.batch_size)
        if self.iters_per_epoch < 1:
            raise ValueError(f"the training set ({len(train_loader.dataset)} items) is smaller "
                             f"than one batch over all processes")
        self.total_iterations = settings.epochs * self.iters_per_epoch
        self.state = TrainState()
        self.records: RunRecords | None = None
        self._losses: list[float] = []
        self._stop = StopRequest()
        self._saved_at = -1

    @staticmethod
    def _wrap(model: torch.nn.Module, dist: DistInfo) -> torch.nn.Module:
        """DDP over several processes. Some trainable parameters may never receive a
        gradient (SAM 2 heads FSSAM does not use, HMNet's unused last support branch); a
        static graph handles them without the cost of ``find_unused_parameters``. On CUDA,
        BatchNorm layers become SyncBatchNorm (in place: the optimisers' parameters stay
        the same objects), so trained statistics are those of the whole batch; gloo (CPU)
        cannot run it, so CPU processes keep per-process statistics."""
        if dist.world_size == 1:
            return model
        device_ids = None
        if dist.device.type == "cuda":
            device_ids = [dist.device.index]
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=device_ids, static_graph=True)

    # -- the step ---------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """The one precision context around each forward (off on CPU)."""
        dtype = self.settings.amp_dtype
        if dtype is None or self.dist.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=dtype)

    def train_step(self, batch: dict[str, Any]) -> torch.Tensor:
        """Forward, the model's loss, backward, every optimizer's step; returns the loss
        averaged over ranks."""
        inputs = {k: v.to(self.dist.device, non_blocking=True) for k, v in batch.items()
                  if isinstance(v, torch.Tensor)}
        with self.autocast():
            out = self.ddp(inputs)
        loss = self.model.loss(out, inputs)["loss"]
        mean = all_reduce_sum(loss.detach().clone()) / self.dist.world_size
        if not torch.isfinite(mean):
            it = self.state.iteration + 1
            raise NonFiniteLossError(
                f"non-finite loss ({mean.item()}) at iteration {it} (epoch "
                f"{(it - 1) // self.iters_per_epoch}): training stopped; {ckpt.LAST} holds the "
                f"last saved state")
        backward_and_step(loss, self.optimizers, self.scaler)
        return mean

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until the last epoch, ``max_iterations`` or early stopping."""
        self._resume()
        self.records = RunRecords(self.run_dir, start_iteration=self.state.iteration,
                                  enabled=self.dist.is_main)
        limit = min(self.total_iterations, self.settings.max_iterations or self.total_iterations)
        at_epoch_start = self.state.iteration % self.iters_per_epoch == 0
        stopped = "stopped early" if at_epoch_start and self._patience_exhausted() else None
        redirect = logging_redirect_tqdm() if self._show_progress() else contextlib.nullcontext()
        with redirect, self._stop:
            try:
                while stopped is None and self.state.iteration < limit:
                    stopped = self._run_epoch(limit)
            finally:
                self.records.close()
        stopped = stopped or "finished"
        log.info("training %s at iteration %d; best validation mIoU %s", stopped,
                 self.state.iteration, self.state.best_miou)
        return {"iteration": self.state.iteration, "best_miou": self.state.best_miou,
                "stopped": stopped}

    def _run_epoch(self, limit: int) -> str | None:
        ipe = self.iters_per_epoch
        epoch, done = divmod(self.state.iteration, ipe)
        self.train_loader.sampler.set_epoch(epoch, start=done * self.train_loader.batch_size)
        if hasattr(self.train_loader.dataset, "set_epoch"):
            self.train_loader.dataset.set_epoch(epoch)
        s = self.settings
        checks = epoch_validation_points(ipe, epoch, per_epoch=s.val_per_epoch,
                                         start_epoch=s.val_start_epoch,
                                         mid_epoch_from=s.val_mid_epoch_from,
                                         mid_epoch_delay=s.val_mid_epoch_delay)
        self.ddp.train()
        bar = tqdm(total=ipe, initial=done, desc=f"epoch {epoch}", dynamic_ncols=True,
                   disable=not self._show_progress())
        with bar:
            for batch in self.train_loader:
                lr = [o.set_lr(self.state.iteration, self.total_iterations)
                      for o in self.optimizers][0]
                loss = self.train_step(batch).item()
                self.state.iteration += 1
                done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                reason = self._after_step(loss, lr, validate=done in checks,
                                          epoch_end=done == ipe, limit=limit)
                if reason:
                    return reason
                if self._stop.agreed():
                    return self._stop_on_signal()
        return None

    def _stop_on_signal(self) -> str:
        """Every rank agreed to stop after this step: ``last.pt`` of this iteration."""
        if self._saved_at != self.state.iteration:
            self._save([ckpt.LAST])
        report_stop(self.state.iteration, self._stop.received, self.dist.local_rank)
        return PREEMPTED

    def _after_step(self, loss: float, lr: float, *, validate: bool, epoch_end: bool,
                    limit: int) -> str | None:
        it, s = self.state.iteration, self.settings
        self._record_loss(loss, lr)
        at_limit = it >= limit
        validate = validate or (at_limit and s.val_per_epoch > 0)
        improved = self._validate() if validate else False
        if validate or epoch_end or at_limit or (s.save_every and it % s.save_every == 0):
            self._save([ckpt.BEST, ckpt.LAST] if improved else [ckpt.LAST])
        if at_limit:
            return "finished" if it >= self.total_iterations else "reached max_iterations"
        return "stopped early" if epoch_end and self._patience_exhausted() else None

    def _patience_exhausted(self) -> bool:
        """The releases' early stop, checked between epochs: True once
        ``early_stop_patience`` whole epochs have run after the (0-based) epoch whose
        validation, at mid-epoch or at its end, gave the best mIoU. Never before a first
        validation."""
        patience, best = self.settings.early_stop_patience, self.state.best_miou
        if not patience or best is None:
            return False
        ipe = self.iters_per_epoch
        best_epoch = (round(self.state.best_epoch * ipe) - 1) // ipe
        since = self.state.iteration // ipe - 1 - best_epoch
        if since < patience:
            return False
        log.info("no better validation mIoU in the %d epochs after epoch %d", since, best_epoch)
        return True

    def _show_progress(self) -> bool:
        return self.settings.progress and self.dist.is_main

    # -- hooks ------------------------------------------------------------------------
    def _record_loss(self, loss: float, lr: float) -> None:
        self._losses.append(loss)
        it = self.state.iteration
        if it % self.settings.log_every and it != self.settings.max_iterations:
            return
        mean = sum(self._losses) / len(self._losses)
        self._losses = []
        record = {"type": "train", "iteration": it, "epoch": it / self.iters_per_epoch,
                  "loss": mean, "lr": lr}
        self.records.write(record, {"train/loss": mean, "train/lr": lr})

    def _validate(self) -> bool:
        """Validate, record, and say whether the mIoU improved. RNG-neutral."""
        if self.validation is None:
            return False
        cuda = self.dist.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.dist.device] if cuda else []):
            result = self.validation(self.model, self.dist.device)
        self.ddp.train()
        it, miou, best = self.state.iteration, float(result["miou"]), self.state.best_miou
        improved = math.isfinite(miou) and (best is None or miou > best)
        if improved:
            self.state.best_miou, self.state.best_epoch = miou, it / self.iters_per_epoch
        record = {"type": "val", "iteration": it, "epoch": it / self.iters_per_epoch, **result,
                  "miou": miou, "best_miou": self.state.best_miou}
        scalars = {k: float(v) for k, v in result.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.records.write(record, {f"val/{k}": v for k, v in scalars.items()})
        best = math.nan if self.state.best_miou is None else self.state.best_miou
        log.info("iteration %d: validation %s (best mIoU %.2f)", it,
                 ", ".join(f"{k} {v:.2f}" for k, v in scalars.items()), best)
        return improved

    # -- checkpoints ------------------------------------------------------------------
    def _checkpoint(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {"model": self.model.trainable_state_dict(),
                "optimizers": optimizer_states(self.optimizers),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "epoch": self.state.iteration // self.iters_per_epoch,
                "iteration": self.state.iteration, "iterations_per_epoch": self.iters_per_epoch,
                "best_miou": self.state.best_miou, "best_epoch": self.state.best_epoch,
                "pending_losses": list(self._losses), "config": self.config, "rng": rng}

    def _save(self, names: Sequence[str]) -> None:
        rng = all_gather_objects(get_rng_state())  # every rank takes part
        ckpt.save_on_main(lambda: self._checkpoint(rng), [self.run_dir / n for n in names],
                          is_main=self.dist.is_main)
        self._saved_at = self.state.iteration

    def _resume(self) -> None:
        found = ckpt.find_resume_checkpoint(self.run_dir) if self.settings.resume else None
        if not broadcast_object(found is not None):
            return
        path = self.run_dir / ckpt.LAST
        state = ckpt.load_checkpoint(path, map_location="cpu")
        check_resume_config(state["config"], self.config, path=str(path),
                            allowed=self.settings.resume_allow_changes)
        if state.get("iterations_per_epoch") != self.iters_per_epoch:
            raise ValueError(
                f"cannot resume from {path}: it has {state.get('iterations_per_epoch')} "
                f"iterations per epoch, this run {self.iters_per_epoch} (the number of "
                f"processes, the batch size or the dataset changed)")
        self.model.load_trainable_state_dict(state["model"])
        load_optimizer_states(self.optimizers, state, path)
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.state = TrainState(state["iteration"], state["best_miou"], state["best_epoch"])
        self._losses = list(state.get("pending_losses", []))
        if len(state["rng"]) == self.dist.world_size:
            set_rng_state(state["rng"][self.dist.rank])
        else:
            log.warning("checkpoint holds random states of %d processes, this run has %d: "
                        "random streams restart", len(state["rng"]), self.dist.world_size)
        log.info("resumed from %s at iteration %d (epoch %d)", path, self.state.iteration,
                 state["epoch"])
