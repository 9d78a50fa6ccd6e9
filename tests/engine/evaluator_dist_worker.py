"""Worker of the 2-process evaluator test (imported by name in spawned processes)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist

from fssam.engine.evaluator import SegmentationEvaluator

CLASS_IDS = [1, 2, 3, 4, 5]


def make_episodes(count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Random episodes (pred, target with ignore pixels, class).

    Episode i has class ``1 + i % 4``: split by parity over two ranks, each rank alone
    misses two classes; class 5 never occurs.
    """
    gen = torch.Generator().manual_seed(seed)
    episodes = []
    for i in range(count):
        h, w = (int(v) for v in torch.randint(5, 17, (2,), generator=gen))
        target = torch.randint(0, 2, (h, w), generator=gen)
        target[torch.rand(h, w, generator=gen) < 0.15] = 255
        pred = torch.rand(h, w, generator=gen) < 0.5
        class_id = 1 + i % 4
        episodes.append((pred, target, class_id))
    return episodes


def run(rank: int, world_size: int, init_file: str, out_dir: str, num_episodes: int) -> None:
    """Evaluate episodes ``rank, rank + world_size, ...`` and write this rank's metrics."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        evaluator = SegmentationEvaluator(CLASS_IDS)
        for i, (pred, target, class_id) in enumerate(make_episodes(num_episodes)):
            if i % world_size == rank:
                evaluator.update(pred, target, class_id)
        first = evaluator.compute()
        second = evaluator.compute()
        local = evaluator.class_sums[2].sum().item()
        result = {"first": first, "second": second, "local_episodes": local}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()
