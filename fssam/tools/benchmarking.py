"""What the benchmarks and machine checks share: timing between device synchronisations,
peak CUDA memory, and the model of Hydra overrides with random weights (nothing
downloaded), its command-line options and its description."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA; nothing to wait for elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Synchronise and restart the peak CUDA memory count (nothing on other devices)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak allocated CUDA memory since ``reset_peak_memory`` in bytes, after synchronising
    (None on other devices)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int, *,
               back_to_back: bool = False, reset_peak: bool = False) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls and a
    synchronisation. Each call is timed up to a synchronisation after it; with
    ``back_to_back`` the calls run one after another between two synchronisations (as in a
    training loop) and every entry is their mean. ``reset_peak``: restart the peak CUDA
    memory count after the warm-up, so that ``peak_memory_bytes`` covers the timed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if reset_peak:
        reset_peak_memory(device)
    if back_to_back:
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        synchronize(device)
        return [(time.perf_counter() - start) / repeats] * repeats
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


RANDOM_WEIGHTS = ("sam2.checkpoint=null", "model.dino_checkpoint=null")
"""Overrides that leave every weight file unread (random weights, nothing downloaded)."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Device, precision, threads, and the model as Hydra overrides of train.yaml (default:
    the paper's sizes, SAM 2-S at 512 + DINOv2-B at 560)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Hydra overrides of the model, as train.py takes them (e.g. "
                             "sam2=large model.dino_variant=vitl14); weights stay random")


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error for options that cannot run together, or overrides that do
    not compose; sets ``args.model_cfg`` (the composed config)."""
    if args.bf16 and not args.device.startswith("cuda"):
        parser.error("--bf16 needs a CUDA device")
    from fssam.engine.config import compose_config

    try:
        args.model_cfg = compose_config("train", [*args.overrides, *RANDOM_WEIGHTS])
    except Exception as err:  # Hydra names the override it cannot apply
        parser.error(f"overrides {' '.join(args.overrides)}: {err}")
    args.image_size = int(args.model_cfg.model.run.input_size)


def random_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """The composed model with random weights (seed 0), in eval mode on ``device``."""
    from fssam.engine.build import build_model

    return build_model(args.model_cfg.model, seed=0).to(device).eval()


def describe_model(args: argparse.Namespace) -> str:
    """The model, precision, device and torch version, for a benchmark's heading."""
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    precision = "bf16 autocast" if args.bf16 else "float32"
    model = args.model_cfg.model
    dino = (f" + DINOv2 {model.dino_variant} at {model.dino_input_size}"
            if "dino_variant" in model else "")
    return (f"{model.run.name} ({model.run.variant}) at {model.run.input_size}{dino}, "
            f"random weights; "
            f"{precision}, {where}, torch {torch.__version__}")
