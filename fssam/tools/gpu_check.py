"""Model-level checks of a machine before a long run (``scripts/gpu_check.py``).

Random weights, random episodes, no dataset:

- (a) ``check_precision``: bf16 autocast against float32 on identical inputs;
- (b) ``check_training``: a few training steps through the trainer's own step (bf16 on
  CUDA): finite loss, gradients only on the trainable modules, peak memory;
- (c) ``test_throughput``: episodes/s of the test step (forward, upsampling, metrics);
- (d) ``train_throughput``: iterations/s and peak memory of the training step.

Peak memory is ``torch.cuda.max_memory_allocated`` (None on CPU); every timing is taken
between two device synchronisations.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fssam.data import collate_episodes
from fssam.engine.evaluate import evaluate_batch
from fssam.engine.evaluator import SegmentationEvaluator
from fssam.engine.lru import GB
from fssam.contract import ScheduledOptimizer
from fssam.engine.train_data import build_train_loader
from fssam.engine.trainer import NonFiniteLossError, Trainer, TrainSettings
from fssam.tools.benchmarking import peak_memory_bytes, reset_peak_memory, time_calls
from fssam.utils.dist import DistInfo

AGREEMENT_TARGET = 0.99
MEMORY_TARGET_GB = 16.0
# the method's recipe: (model, per-process batch) -> its optimisers (``model.optim`` of the configs)
OptimizerFactory = Callable[[nn.Module, int], Sequence[ScheduledOptimizer]]


class RandomEpisodes(Dataset):
    """Random K-shot episodes of ``size`` px: noise images, a square object per mask."""

    def __init__(self, *, num: int, shots: int, size: int, seed: int = 0) -> None:
        self.num, self.shots, self.size, self.seed = num, shots, size, seed

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100003 + index)
        s, k = self.size, self.shots
        masks = torch.zeros(k + 1, s, s, dtype=torch.int64)
        for m in masks:
            top, left = (int(v) for v in torch.randint(0, s // 2, (2,), generator=g))
            m[top:top + s // 2, left:left + s // 2] = 1
        return {"query_img": torch.rand(3, s, s, generator=g) * 255,
                "support_imgs": torch.rand(k, 3, s, s, generator=g) * 255,
                "support_masks": masks[1:], "query_mask": masks[0], "query_label": masks[0],
                "class_id": torch.tensor(1), "episode": torch.tensor(index)}


def episode_batch(*, batch: int, shots: int, size: int, seed: int = 0) -> dict[str, Any]:
    """A collated batch of ``RandomEpisodes``."""
    data = RandomEpisodes(num=batch, shots=shots, size=size, seed=seed)
    return collate_episodes([data[i] for i in range(batch)])


def peak_gb(device: torch.device) -> float | None:
    """Peak allocated CUDA memory since ``reset_peak_memory`` in GiB (None on CPU)."""
    peak = peak_memory_bytes(device)
    return None if peak is None else peak / GB


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """Float32 reference: TF32 off for matmuls and convolutions, restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def bf16(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def check_precision(model: nn.Module, device: torch.device, *, shots: int, size: int,
                    batch: int = 1) -> dict[str, Any]:
    """(a) Largest |logit difference| and sign agreement of bf16 autocast vs float32."""
    model.eval()
    inputs = {k: v.to(device) for k, v in episode_batch(batch=batch, shots=shots, size=size,
                                                         seed=shots).items()
              if k in ("query_img", "support_imgs", "support_masks")}
    with strict_float32():
        reference = model(inputs)["logits"].float()
    with bf16(device):
        low = model(inputs)["logits"].float()
    agreement = ((reference > 0) == (low > 0)).float().mean().item()
    return {"shots": shots, "max_logit_diff": (reference - low).abs().max().item(),
            "mean_abs_logit": reference.abs().mean().item(), "mask_agreement": agreement,
            "finite": bool(torch.isfinite(low).all()), "target": AGREEMENT_TARGET,
            "passed": bool(torch.isfinite(low).all()) and agreement >= AGREEMENT_TARGET}


def make_trainer(model: nn.Module, optimizers: OptimizerFactory, device: torch.device, *,
                 batch: int, shots: int, size: int, amp: bool, run_dir: str,
                 steps: int) -> Trainer:
    """The project's Trainer over ``steps`` batches of random episodes (one process)."""
    data = RandomEpisodes(num=batch * steps, shots=shots, size=size)
    loader = build_train_loader(data, batch_size=batch, num_workers=0, seed=0)
    settings = TrainSettings(epochs=1, amp_dtype=torch.bfloat16 if amp else None,
                             val_per_epoch=0, progress=False)
    model.to(device)  # optimisers are built over the parameters where they will live
    return Trainer(model=model, optimizers=list(optimizers(model, batch)), train_loader=loader,
                   validation=None, run_dir=run_dir, settings=settings,
                   dist=DistInfo(0, 1, 0, device), config={})


def _trainable_groups(trainer: Trainer) -> dict[int, str]:
    """id(parameter) -> ``optimizer/group`` name, for every parameter an optimizer steps."""
    groups = {}
    for scheduled in trainer.optimizers:
        for i, group in enumerate(scheduled.optimizer.param_groups):
            for p in group["params"]:
                groups[id(p)] = f"{scheduled.name}/{group.get('name', i)}"
    return groups


def gradient_report(model: nn.Module, groups: dict[int, str]) -> dict[str, Any]:
    """Which parameters hold gradients: only those of the optimisers' ``groups`` may (each
    group at least one), all finite."""
    frozen_with_grad = [n for n, p in model.named_parameters()
                        if id(p) not in groups and p.grad is not None]
    with_grad: dict[str, int] = {name: 0 for name in dict.fromkeys(groups.values())}
    finite = True
    for p in model.parameters():
        if id(p) in groups and p.grad is not None and bool(p.grad.abs().sum() > 0):
            with_grad[groups[id(p)]] += 1
            finite = finite and bool(torch.isfinite(p.grad).all())
    return {"trainable_tensors_with_grad": with_grad, "frozen_with_grad": frozen_with_grad[:10],
            "frozen_with_grad_count": len(frozen_with_grad), "finite": finite,
            "passed": not frozen_with_grad and finite and all(with_grad.values())}


def _steps(trainer: Trainer, count: int) -> list[float]:
    losses = []
    batches = iter(trainer.train_loader)
    for _ in range(count):
        losses.append(float(trainer.train_step(next(batches))))
    return losses


def check_training(model: nn.Module, optimizers: OptimizerFactory, device: torch.device, *,
                   batch: int, shots: int, size: int, steps: int, amp: bool) -> dict[str, Any]:
    """(b) ``steps`` training steps: losses, gradients, peak memory."""
    model.train()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(model, optimizers, device, batch=batch, shots=shots, size=size,
                               amp=amp, run_dir=run_dir, steps=steps)
        reset_peak_memory(device)
        try:
            losses, error = _steps(trainer, steps), None
        except NonFiniteLossError as err:
            losses, error = [], str(err)
        peak = peak_gb(device)
        grads = gradient_report(model, _trainable_groups(trainer))
    model.zero_grad(set_to_none=True)
    memory_ok = peak is None or peak <= MEMORY_TARGET_GB
    finite = error is None and all(math.isfinite(v) for v in losses)
    return {"batch": batch, "shots": shots, "steps": steps, "bf16": amp and device.type == "cuda",
            "losses": losses, "error": error, "gradients": grads, "peak_gb": peak,
            "memory_target_gb": MEMORY_TARGET_GB,
            "passed": finite and grads["passed"] and memory_ok}


def _timed(fn: Any, device: torch.device, warmup: int, repeats: int) -> float:
    """Seconds per call (mean of ``repeats`` back-to-back calls after ``warmup``)."""
    return time_calls(fn, device, warmup, repeats, back_to_back=True)[0]


def test_throughput(model: nn.Module, device: torch.device, *, shots: int, size: int,
                    batches: Sequence[int], warmup: int, repeats: int,
                    amp: bool) -> list[dict[str, Any]]:
    """(c) Episodes/s of the test step per batch size; stops at the first out-of-memory."""
    model.eval()
    rows = []
    evaluator = SegmentationEvaluator([1])
    amp_dtype = torch.bfloat16 if amp else None
    for batch in batches:
        episodes = episode_batch(batch=batch, shots=shots, size=size)
        reset_peak_memory(device)
        try:
            seconds = _timed(lambda: evaluate_batch(model, episodes, evaluator, device=device,
                                                    amp_dtype=amp_dtype), device, warmup, repeats)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append({"shots": shots, "batch": batch, "out_of_memory": True})
            break
        rows.append({"shots": shots, "batch": batch, "episodes_per_s": batch / seconds,
                     "peak_gb": peak_gb(device)})
    return rows


def train_throughput(model: nn.Module, optimizers: OptimizerFactory, device: torch.device, *,
                     batch: int, shots: int, size: int, warmup: int, repeats: int,
                     amp: bool) -> dict[str, Any]:
    """(d) Iterations/s and peak memory of the training step at ``batch``."""
    model.train()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(model, optimizers, device, batch=batch, shots=shots, size=size,
                               amp=amp, run_dir=run_dir, steps=warmup + repeats)
        batches = iter(trainer.train_loader)
        loaded = [next(batches) for _ in range(warmup + repeats)]
        reset_peak_memory(device)
        try:
            for b in loaded[:warmup]:
                trainer.train_step(b)
            timed = iter(loaded[warmup:])
            seconds = _timed(lambda: trainer.train_step(next(timed)), device, 0, repeats)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return {"batch": batch, "shots": shots, "out_of_memory": True}
        finally:
            model.zero_grad(set_to_none=True)
        return {"batch": batch, "shots": shots, "iterations_per_s": 1 / seconds,
                "episodes_per_s": batch / seconds, "peak_gb": peak_gb(device)}
