"""Selective-scan time at HMNet's sizes, for each implementation and the per-token loop.

HMNet's call: 4 directions x 512 channels (B and C in 4 groups, one per direction), state
16, delta_bias + softplus, D, last state; lengths 2*64^2 = 8192 (PASCAL) and
2*80^2 = 12800 (COCO); batch 1 and 2. Inputs follow HMNet's initialisation (A = -(1..16),
dt between 1e-3 and 1e-1). The naive loop is timed on its first ``--naive-prefix``
tokens and scaled to the full length (its time per token grows a little with the length,
so the estimate is a lower bound); ``--naive-prefix 0`` times it whole. Peak memory is the
largest extra memory seen during a call: CUDA allocations on CUDA, resident memory above
the pre-call level on Linux CPUs.

    python scripts/benchmark_scan.py --device cpu --threads 1
    python scripts/benchmark_scan.py --device cuda --repeats 20 --json scan.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from fssam.models.hmnet.scan import IMPLS, available_impls, selective_scan
from fssam.tools.benchmarking import peak_memory_bytes, reset_peak_memory, time_calls


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--impls", nargs="+", choices=IMPLS[1:], default=None,
                   help="default: every implementation available on the device")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    p.add_argument("--length", type=int, nargs="+", default=[8192, 12800])
    p.add_argument("--channels", type=int, default=2048, help="directions x channels")
    p.add_argument("--groups", type=int, default=4, help="B/C groups (directions)")
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--naive-prefix", type=int, default=256,
                   help="tokens the naive loop is timed on (0: the whole sequence)")
    p.add_argument("--backward", action="store_true", help="time forward + backward")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", dest="json_path", help="also write the rows to this file")
    args = p.parse_args(argv)
    usable = available_impls(args.device)
    args.impls = args.impls or usable
    missing = [name for name in args.impls if name not in usable]
    if missing:
        p.error(f"--impls {' '.join(missing)}: not available on {args.device} "
                f"(available: {' '.join(usable)})")
    if args.channels % args.groups:
        p.error(f"--channels {args.channels} is not divisible by --groups {args.groups}")
    return args


def make_inputs(args: argparse.Namespace, batch: int, length: int) -> dict:
    """HMNet-like arguments of one scan call (seeded)."""
    g = torch.Generator().manual_seed(0)
    d, n = args.channels, args.state
    dt0 = torch.exp(torch.empty(d).uniform_(math.log(1e-3), math.log(1e-1), generator=g))
    kwargs = {"u": torch.randn(batch, d, length, generator=g),
              "delta": 0.1 * torch.randn(batch, d, length, generator=g),
              "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),
              "B": torch.randn(batch, args.groups, n, length, generator=g),
              "C": torch.randn(batch, args.groups, n, length, generator=g),
              "D": torch.ones(d), "delta_bias": dt0 + torch.log(-torch.expm1(-dt0))}
    return {k: v.to(args.device) for k, v in kwargs.items()}


def prefix(kwargs: dict, tokens: int) -> dict:
    """The arguments cut to their first ``tokens`` tokens."""
    return {k: v[..., :tokens].contiguous() if k in ("u", "delta", "B", "C") else v
            for k, v in kwargs.items()}


def _resident_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_extra_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Largest extra memory during one call of ``fn`` in MiB (None where unmeasurable)."""
    if device.type == "cuda":
        reset_peak_memory(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        return (peak_memory_bytes(device) - before) / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size
        before = _resident_bytes("VmRSS")
        fn()
        return (_resident_bytes("VmHWM") - before) / 2**20
    except (OSError, KeyError):
        return None


def seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Fastest of ``repeats`` calls, after ``warmup`` calls."""
    return min(time_calls(fn, device, warmup, repeats))


def call(impl: str, kwargs: dict, backward: bool) -> Callable[[], object]:
    def run() -> None:
        if backward:
            leaves = {k: v.detach().requires_grad_(True) for k, v in kwargs.items()}
            y, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True,
                                     impl=impl)
            (y.sum() + last.sum()).backward()
        else:
            with torch.no_grad():
                selective_scan(**kwargs, delta_softplus=True, return_last_state=True, impl=impl)
    return run


def measure(args: argparse.Namespace, impl: str, batch: int, length: int) -> dict:
    """One row: the time of a call (scaled from a prefix for the naive loop)."""
    device = torch.device(args.device)
    kwargs = make_inputs(args, batch, length)
    timed = length
    if impl == "naive" and 0 < args.naive_prefix < length:
        timed = args.naive_prefix
        kwargs = prefix(kwargs, timed)
    fn = call(impl, kwargs, args.backward)
    t = seconds(fn, device, args.warmup, args.repeats)
    peak = peak_extra_mib(fn, device) if timed == length else None
    return {"impl": impl, "batch": batch, "length": length, "seconds": t * length / timed,
            "extrapolated": timed != length, "timed_length": timed, "peak_extra_mib": peak,
            "backward": args.backward, "device": args.device,
            "threads": torch.get_num_threads()}


def table(rows: list[dict]) -> str:
    naive = {(r["batch"], r["length"]): r["seconds"] for r in rows if r["impl"] == "naive"}
    lines = [f"{'impl':10s} {'batch':>5s} {'length':>6s} {'seconds':>9s} {'x naive':>8s} "
             f"{'peak MiB':>9s}  note"]
    for r in rows:
        ref = naive.get((r["batch"], r["length"]))
        speedup = f"{ref / r['seconds']:8.1f}" if ref else f"{'-':>8s}"
        peak = f"{r['peak_extra_mib']:9.0f}" if r["peak_extra_mib"] is not None else f"{'-':>9s}"
        note = f"scaled from {r['timed_length']} tokens" if r["extrapolated"] else ""
        lines.append(f"{r['impl']:10s} {r['batch']:5d} {r['length']:6d} {r['seconds']:9.3f} "
                     f"{speedup} {peak}  {note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(args, impl, batch, length) for batch in args.batch
            for length in args.length for impl in args.impls]
    print(f"selective scan, {args.device}, {torch.get_num_threads()} threads, "
          f"{'forward + backward' if args.backward else 'forward'}; "
          f"d = {args.channels}, groups {args.groups}, state {args.state}; "
          f"fastest of {args.repeats}")
    print(table(rows))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
