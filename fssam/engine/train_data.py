"""Training loader: sharded over ranks, reshuffled per epoch, resumable mid-epoch."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from fssam.data import collate_episodes
from fssam.engine.preemption import StopSignalsToRank


class ResumableSampler(Sampler[int]):
    """This rank's share of a ``DistributedSampler`` epoch, from position ``start`` on.

    The order of an epoch depends only on (seed, epoch), so skipping the first ``start``
    indices continues an interrupted epoch exactly where it stopped.
    """

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and the number of indices already consumed."""
        if not 0 <= start <= len(self.sampler):
            raise ValueError(f"start {start} outside 0..{len(self.sampler)}")
        self.sampler.set_epoch(epoch)
        self.start = start

    def num_batches(self, batch_size: int) -> int:
        """Full batches in a whole epoch (incomplete ones are dropped)."""
        return len(self.sampler) // batch_size

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return len(self.sampler) - self.start


def build_train_loader(dataset: Dataset, *, batch_size: int, num_workers: int, seed: int,
                       rank: int = 0, world_size: int = 1) -> DataLoader:
    """Shuffled, rank-sharded loader of full batches.

    The loader has its own generator, so starting an epoch never draws from the global
    torch generator (which the model's dropout uses): resumed runs stay identical.
    """
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableSampler(sampler),
        num_workers=num_workers,
        collate_fn=collate_episodes,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        generator=torch.Generator().manual_seed(seed + rank),
        persistent_workers=False,
        worker_init_fn=StopSignalsToRank(os.getpid()),  # a stop ends the step, not them
    )
