"""Evaluation speed with the encoder cache off, on a cold first pass and on a warm second pass.

Random weights at the real sizes (SAM 2-S at 512, DINOv2-B/14 at 560) on a synthetic dataset
with the benchmarks' repetition: a few images per class, several episodes per image. For
each shot count, three passes over the same episodes go through the engine's evaluation:

- ``off``: no reuse, every image of every episode is encoded;
- ``cold``: a new encoder cache (and per-pass memo), filled as the pass goes;
- ``warm``: the same cache again with a new memo, as in the next validation of a training.

The metrics of the three passes must be identical (checked). Rows: episodes/s, speed-up
over ``off``, CPU seconds per episode and their ratio to ``off`` (steadier than wall time on
a shared machine), encoder-cache and memo hit rates, cache size, peak memory.

    python scripts/benchmark_eval.py --json bench_eval.json
    python scripts/benchmark_eval.py --device cuda --bf16 --episodes 100
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fssam.data.episodic import EpisodicDataset
from fssam.data.sources import ImageRecord
from fssam.engine.evaluate import build_eval_loader, run_evaluation
from fssam.engine.feature_cache import FeatureCache, PassMemo
from fssam.engine.lru import GB
from fssam.tools.benchmarking import (add_model_arguments, check_model_arguments,
                                      describe_model, peak_memory_bytes, random_model,
                                      reset_peak_memory, synchronize)

MODES = ("off", "cold", "warm")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(p)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument("--episodes", type=int, default=10, help="episodes per pass")
    p.add_argument("--classes", type=int, default=1)
    p.add_argument("--images-per-class", type=int, default=7,
                   help="at least the largest shot + 1")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--cache-gb", type=float, default=8.0)
    p.add_argument("--memo-gb", type=float, default=1.0)
    p.add_argument("--json", dest="json_path", help="also write the rows to this file")
    args = p.parse_args(argv)
    check_model_arguments(p, args)
    if args.images_per_class < max(args.shots) + 1:
        p.error(f"--images-per-class must be at least the largest shot + 1 "
                f"({max(args.shots) + 1})")
    return args


def write_dataset(root: Path, classes: int, per_class: int) -> list[ImageRecord]:
    """``classes`` x ``per_class`` random 500x375 images, each with one rectangle of its class."""
    rng = np.random.default_rng(0)
    records = []
    for c in range(1, classes + 1):
        for i in range(per_class):
            image = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
            label = np.zeros((375, 500), np.uint8)
            top, left = rng.integers(20, 150), rng.integers(20, 250)
            label[top:top + 150, left:left + 200] = c
            paths = [root / f"{c}_{i}.{ext}" for ext in ("jpg", "png")]
            cv2.imwrite(str(paths[0]), image)
            cv2.imwrite(str(paths[1]), label)
            records.append(ImageRecord(str(paths[0]), str(paths[1]), (c,)))
    return records


def peak_memory_gb(device: torch.device) -> float:
    """Peak CUDA memory since the last reset, or the process's peak resident memory."""
    peak = peak_memory_bytes(device)
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak / GB


def timed_pass(model: torch.nn.Module, loader: Any, args: argparse.Namespace, **reuse: Any
               ) -> tuple[dict, float, float]:
    """Metrics, wall seconds and CPU seconds (all threads of this process) of one pass."""
    device = torch.device(args.device)
    reset_peak_memory(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    metrics = run_evaluation(model, loader, class_ids=loader.dataset.class_ids, device=device,
                             amp_dtype=torch.bfloat16 if args.bf16 else None, progress=False,
                             **reuse)
    synchronize(device)
    return metrics, time.perf_counter() - start, time.process_time() - cpu_start


def rate(now: dict[str, int], before: dict[str, int]) -> float:
    hits, misses = now["hits"] - before["hits"], now["misses"] - before["misses"]
    return hits / (hits + misses) if hits + misses else 0.0


def bench_shot(model: torch.nn.Module, records: list[ImageRecord], shot: int,
               args: argparse.Namespace) -> list[dict[str, Any]]:
    """The three passes of one shot count; raises if their metrics differ."""
    dataset = EpisodicDataset(records=records, class_ids=sorted({r.classes[0] for r in records}),
                              shot=shot, mode="val", image_size=args.image_size,
                              num_episodes=args.episodes, seed=321)
    loader = build_eval_loader(dataset, batch_size=args.batch_size, num_workers=0)
    cache = FeatureCache(size_gb=args.cache_gb)
    rows, reference = [], None
    for mode in MODES:
        before, memo = cache.stats(), PassMemo(size_gb=args.memo_gb)
        reuse = {} if mode == "off" else {"feature_cache": cache, "memo": memo}
        metrics, seconds, cpu_seconds = timed_pass(model, loader, args, **reuse)
        if reference is not None and metrics != reference:
            raise AssertionError(f"{shot}-shot {mode} pass changed the metrics: {metrics} vs "
                                 f"{reference}")
        reference = metrics
        on = mode != "off"
        rows.append({"shot": shot, "cache": mode, "episodes": args.episodes,
                     "seconds": seconds, "episodes_per_s": args.episodes / seconds,
                     "cpu_seconds": cpu_seconds,
                     "hit_rate": rate(cache.stats(), before) if on else None,
                     "memo_hit_rate": rate(memo.stats(), {"hits": 0, "misses": 0}) if on else None,
                     "cache_gb": cache.stats()["bytes"] / GB if on else 0.0,
                     "peak_memory_gb": peak_memory_gb(torch.device(args.device))})
    off, off_cpu = rows[0]["seconds"], rows[0]["cpu_seconds"]
    for row in rows:
        row["speedup"] = off / row["seconds"]
        row["cpu_speedup"] = off_cpu / row["cpu_seconds"]
    return rows


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = torch.device(args.device)
    model = random_model(args, device)
    with tempfile.TemporaryDirectory() as tmp:
        records = write_dataset(Path(tmp), args.classes, args.images_per_class)
        warm_up = EpisodicDataset(records=[r for r in records if r.classes == (1,)],
                                  class_ids=[1], shot=1, mode="val",
                                  image_size=args.image_size, num_episodes=1, seed=0)
        timed_pass(model, build_eval_loader(warm_up, batch_size=1, num_workers=0), args)
        return [row for shot in args.shots for row in bench_shot(model, records, shot, args)]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'shot':>4} {'cache':>5} {'episodes/s':>10} {'s/episode':>9} {'speed-up':>8} "
             f"{'CPU s/ep':>8} {'CPU x':>6} {'hit rate':>8} {'memo hits':>9} {'cache GB':>8} "
             f"{'peak GB':>7}"]
    for r in rows:
        lines.append(
            f"{r['shot']:>4} {r['cache']:>5} {r['episodes_per_s']:>10.3f} "
            f"{r['seconds'] / r['episodes']:>9.2f} {r['speedup']:>7.2f}x "
            f"{r['cpu_seconds'] / r['episodes']:>8.2f} {r['cpu_speedup']:>5.1f}x "
            f"{_percent(r['hit_rate']):>8} {_percent(r['memo_hit_rate']):>9} "
            f"{r['cache_gb']:>8.2f} {r['peak_memory_gb']:>7.2f}")
    return "\n".join(lines)


def describe(args: argparse.Namespace) -> str:
    memory = ("CUDA allocated" if torch.device(args.device).type == "cuda"
              else "process resident (cumulative)")
    return (f"{describe_model(args)}; {args.classes} classes x {args.images_per_class} "
            f"images, {args.episodes} episodes per pass, batch {args.batch_size}; peak "
            f"memory: {memory}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    print(describe(args))
    print(format_table(rows))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump([{**row, "setup": describe(args)} for row in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
