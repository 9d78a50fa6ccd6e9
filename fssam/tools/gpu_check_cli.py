"""Check a machine before a long run: precision, training, memory, speed and the torchrun path.

Random weights at the real sizes (SAM 2-S at 512, DINOv2-B/14 at 560), no dataset:
(a) bf16 autocast vs float32, 1- and 5-shot: largest logit difference, mask agreement
(target >= 99%); (b) training steps under bf16 at batch 2: finite loss, gradients only
on the trainable modules, peak memory (target <= 16 GB); (c) test episodes/s, batch 1 up
to the best batch; (d) training iterations/s and peak memory at batch 2 and 4;
(e) torchrun --nproc_per_node=1 train.py on synthetic data (NCCL), then test.py on its
checkpoint. Exit status 0 when (a), (b) and (e) pass. Without CUDA it says so, runs the
checks on the CPU (half resolution, fewer steps, (e) with the micro model on gloo) and
exits 0.

    python scripts/gpu_check.py
    python scripts/gpu_check.py --checks a b --json exp/gpu_check/a_b.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from fssam.tools.gpu_check_run import (CHECKS, PRESETS, GpuCheckSettings, best_batches,
                                        format_table, run_gpu_check)
from fssam.engine.tester import json_safe

CPU_DEFAULTS = {"preset": "cpu", "train_steps": 2, "test_batches": [1, 2], "warmup": 0,
                "repeats": 1, "launch_iterations": 2, "launch_episodes": 4}
CUDA_DEFAULTS = {"preset": "real", "train_steps": 3, "test_batches": [1, 2, 4, 8, 16, 32],
                 "warmup": 2, "repeats": 5, "launch_iterations": 4, "launch_episodes": 20}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="model sizes (default: real on CUDA, cpu without: "
                        + "; ".join(f"{k}: {v[1]}" for k, v in PRESETS.items()) + ")")
    p.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS))
    p.add_argument("--steps", dest="train_steps", type=int, help="training steps of (b)")
    p.add_argument("--test-batches", type=int, nargs="+", help="batch sizes of (c)")
    p.add_argument("--train-batches", type=int, nargs="+", default=[2, 4],
                   help="batch sizes of (d)")
    p.add_argument("--warmup", type=int, help="untimed calls before each timing")
    p.add_argument("--repeats", type=int, help="timed calls per timing")
    p.add_argument("--launch-preset", choices=tuple(PRESETS),
                   help="sizes of (e) (default: --preset on CUDA, micro on CPU)")
    p.add_argument("--launch-iterations", type=int, help="training iterations of (e)")
    p.add_argument("--launch-episodes", type=int, help="test episodes of (e)")
    p.add_argument("--workdir", default="exp/gpu_check",
                   help="synthetic data and the run of (e)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", dest="json_path", default=None,
                   help="report file (default: <workdir>/gpu_check.json)")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace, cuda: bool) -> GpuCheckSettings:
    chosen = {k: v for k, v in vars(args).items() if v is not None}
    defaults = CUDA_DEFAULTS if cuda else CPU_DEFAULTS
    values = {**defaults, **{k: chosen[k] for k in (*defaults, "launch_preset") if k in chosen}}
    notes = []
    if not cuda:
        notes.append("no CUDA device: the checks run on the CPU, at the sizes below (the real "
                     "ones with --preset real), with float32 training (bf16 autocast is "
                     "CUDA-only in training; (a) uses the CPU's bf16 autocast) and (e) on gloo "
                     "with the micro model unless --launch-preset; nothing here says how a GPU "
                     "behaves")
    return GpuCheckSettings(device="cuda" if cuda else "cpu", checks=args.checks,
                            train_batches=args.train_batches, workdir=args.workdir,
                            notes=notes, **values)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("fssam.models").setLevel(logging.ERROR)  # random weights are the point
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check.py: error: --device cuda: CUDA is not available", file=sys.stderr)
        return 2
    cuda = args.device != "cpu" and torch.cuda.is_available()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_from_args(args, cuda)
    for note in settings.notes:
        print(f"note: {note}", flush=True)
    report = run_gpu_check(settings)
    print(f"{report['device']}, torch {report['torch']}; {report['sizes']}, random weights; "
          f"{report['seconds']:.0f} s")
    print(format_table(report))
    for line in best_batches(report):
        print(line)
    path = Path(args.json_path or Path(args.workdir) / "gpu_check.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    failed = [k for k, ok in report["passed"].items() if not ok]
    print(f"report: {path}")
    if not cuda:
        print("no CUDA: CPU results only (exit 0); run this on the GPU machine before training")
        return 0
    print("PASS: (a), (b) and (e) passed" if not failed else f"FAIL: {', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
