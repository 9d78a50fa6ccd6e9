"""What the benchmarks and machine checks share: timing between device synchronisations,
peak CUDA memory, and the FSSAM model at a chosen size with random weights (nothing
downloaded), its command-line options and its description."""

from __future__ import annotations

import argparse
import json
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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Device, precision, threads and the model's sizes (default: the paper's)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--sam2-config", default="sam2_hiera_s.yaml",
                        help="package config name or path to a yaml file")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--dino-variant", default="vitb14",
                        choices=("vitb14", "vitl14", "vitg14"))
    parser.add_argument("--dino-input-size", type=int, default=560)
    parser.add_argument("--dino-kwargs", type=json.loads, default=None,
                        help='timm overrides as JSON, e.g. \'{"embed_dim": 64, "depth": 2}\'')


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error for options that cannot run together."""
    if args.bf16 and not args.device.startswith("cuda"):
        parser.error("--bf16 needs a CUDA device")


def random_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """FSSAM of the chosen sizes with random weights (seed 0), in eval mode on ``device``."""
    from fssam.models.fssam import build_model  # not at import: the engine's checks use the timers

    torch.manual_seed(0)
    return build_model(sam2_config=args.sam2_config, sam2_checkpoint=None,
                       image_size=args.image_size, dino_variant=args.dino_variant,
                       dino_checkpoint=None, dino_input_size=args.dino_input_size,
                       dino_kwargs=args.dino_kwargs).to(device).eval()


def describe_model(args: argparse.Namespace) -> str:
    """The model, precision, device and torch version, for a benchmark's heading."""
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    precision = "bf16 autocast" if args.bf16 else "float32"
    return (f"{args.sam2_config} at {args.image_size} + DINOv2 {args.dino_variant} at "
            f"{args.dino_input_size}, random weights; {precision}, {where}, "
            f"torch {torch.__version__}")
