"""Forward time (and peak CUDA memory) of FSSAM with random weights, and of DINOv2 alone.

Default: SAM 2-S at 512 + DINOv2-B/14 at 560, batch 1, 1-shot. Rows of the table:

- ``fssam``: the whole forward, priors computed by DINOv2;
- ``fssam, given priors``: the forward with precomputed priors (what a prior cache gives);
- ``ppg``: the Pseudo Prompt Generator alone (DINOv2 on query + supports, then the priors);
- ``dinov2 features``: DINOv2 alone on query + supports (one batched call).

    python scripts/benchmark_forward.py --device cpu --repeats 5
    python scripts/benchmark_forward.py --device cuda --bf16 --repeats 50
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch

from fssam.models.fssam.prior import PseudoPromptGenerator
from fssam.tools.benchmarking import (add_model_arguments, check_model_arguments,
                                      describe_model, peak_memory_bytes, random_model,
                                      time_calls)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(p)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", dest="json_path", help="also write the results to this file")
    args = p.parse_args(argv)
    check_model_arguments(p, args)
    return args


def measure(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int
            ) -> dict[str, float]:
    """Milliseconds per call (mean, std, min) and peak CUDA memory in MiB (NaN on CPU)."""
    times = [t * 1000 for t in time_calls(fn, device, warmup, repeats, reset_peak=True)]
    peak = peak_memory_bytes(device)
    return {"mean_ms": statistics.fmean(times), "min_ms": min(times),
            "std_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
            "peak_mib": float("nan") if peak is None else peak / 2**20}


def make_batch(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b, k, s = args.batch, args.shots, args.image_size
    masks = torch.zeros(b, k, s, s, dtype=torch.int64)
    masks[..., s // 4: 3 * s // 4, s // 4: 3 * s // 4] = 1
    batch = {"query_img": torch.rand(b, 3, s, s, generator=g) * 255,
             "support_imgs": torch.rand(b, k, 3, s, s, generator=g) * 255,
             "support_masks": masks}
    return {key: value.to(device) for key, value in batch.items()}


def run(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    device = torch.device(args.device)
    model = random_model(args, device)
    ppg = next(m for m in model.modules() if isinstance(m, PseudoPromptGenerator))
    batch = make_batch(args, device)
    images = torch.cat([batch["query_img"][:, None], batch["support_imgs"]], 1).flatten(0, 1)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if args.bf16 else nullcontext())
    with torch.no_grad(), amp:
        priors = model(batch)["priors"]
    given = dict(batch, priors=priors)
    cases = {
        "fssam": lambda: model(batch),
        "fssam, given priors": lambda: model(given),
        "ppg": lambda: ppg(batch["query_img"], batch["support_imgs"], batch["support_masks"]),
        "dinov2 features": lambda: ppg.extract_features(images),
    }
    results = []
    for name, fn in cases.items():
        with torch.no_grad(), amp:
            results.append((name, measure(fn, device, args.warmup, args.repeats)))
    return results


def format_table(results: list[tuple[str, dict[str, float]]]) -> str:
    lines = [f"{'part':22s} {'mean ms':>10s} {'std ms':>9s} {'min ms':>10s} {'peak MiB':>9s}"]
    for name, r in results:
        peak = "-" if r["peak_mib"] != r["peak_mib"] else f"{r['peak_mib']:.0f}"
        lines.append(f"{name:22s} {r['mean_ms']:10.1f} {r['std_ms']:9.1f} {r['min_ms']:10.1f} "
                     f"{peak:>9s}")
    return "\n".join(lines)


def describe(args: argparse.Namespace) -> str:
    return (f"{describe_model(args)}; batch {args.batch}, {args.shots}-shot, "
            f"{args.warmup} warm-up + {args.repeats} timed calls")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    print(describe(args))
    print(format_table(results))
    if args.json_path:
        with open(args.json_path, "w") as f:
            rows = {name: {k: (None if v != v else v) for k, v in row.items()}
                    for name, row in results}  # no NaN in JSON: peak memory is CUDA only
            json.dump({"setup": describe(args), "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
