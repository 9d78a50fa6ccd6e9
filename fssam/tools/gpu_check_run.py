"""The whole machine check of ``scripts/gpu_check.py``: checks (a)-(e), a table and a verdict.

Sizes come from presets of Hydra overrides, so the model is built exactly as train.py
builds it (random weights: no checkpoint is read). Without CUDA the checks run on the CPU
at the ``cpu`` preset (the real networks at half resolution) unless another is chosen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from fssam.tools import gpu_check as gc
from fssam.tools.launch_check import run_launch_check
from fssam.engine.config import compose_config
from fssam.engine.build import build_model

_REAL = ["sam2=small", "sam2.checkpoint=null", "model=fssam", "model.dino_checkpoint=null"]
PRESETS: dict[str, tuple[list[str], str]] = {
    "real": (_REAL, "SAM 2-S at 512 + DINOv2-B/14 at 560 (the paper's sizes)"),
    "cpu": (_REAL + ["sam2.image_size=256", "model.dino_input_size=280"],
            "SAM 2-S at 256 + DINOv2-B/14 at 280 (the real networks at half resolution)"),
    "micro": (["sam2=micro", "model=fssam_tiny_dino"],
              "micro SAM 2 at 128 + tiny DINOv2 at 56 (tests)"),
}
CHECKS = ("a", "b", "c", "d", "e")
REQUIRED = ("a", "b", "e")  # must pass on CUDA


@dataclass
class GpuCheckSettings:
    """What to run; ``launch_preset`` sizes (e) (default: ``preset`` on CUDA, micro on CPU)."""

    device: str
    preset: str
    checks: Sequence[str] = CHECKS
    shots: Sequence[int] = (1, 5)
    train_steps: int = 3
    train_batch: int = 2
    test_batches: Sequence[int] = (1, 2, 4, 8, 16, 32)
    train_batches: Sequence[int] = (2, 4)
    warmup: int = 2
    repeats: int = 5
    launch_preset: str | None = None
    launch_iterations: int = 4
    launch_episodes: int = 20
    workdir: str = "exp/gpu_check"
    notes: list[str] = field(default_factory=list)


@dataclass
class RandomModel:
    """A preset's model (random weights), its optimiser recipe and its input size."""

    model: torch.nn.Module
    optimizers: gc.OptimizerFactory
    size: int


def build_random_model(preset: str, device: torch.device) -> RandomModel:
    """The preset's model and recipe, built from the configs as train.py builds them."""
    cfg = compose_config("train", PRESETS[preset][0])
    model = build_model(cfg.model, seed=0).to(device)
    recipe = cfg.model.optim
    return RandomModel(model=model, size=int(cfg.model.run.input_size),
                       optimizers=lambda m, batch: list(instantiate(recipe, m, batch_size=batch)))


def _model_checks(s: GpuCheckSettings, device: torch.device) -> dict[str, Any]:
    if not set(s.checks) & {"a", "b", "c", "d"}:
        return {}
    built = build_random_model(s.preset, device)
    model, size, optimizers = built.model, built.size, built.optimizers
    amp = device.type == "cuda"
    out: dict[str, Any] = {}
    if "a" in s.checks:
        out["a"] = [gc.check_precision(model, device, shots=k, size=size) for k in s.shots]
    if "b" in s.checks:
        out["b"] = gc.check_training(model, optimizers, device, batch=s.train_batch, shots=1,
                                     size=size, steps=s.train_steps, amp=amp)
    if "c" in s.checks:
        out["c"] = [row for k in s.shots for row in gc.test_throughput(
            model, device, shots=k, size=size, batches=s.test_batches, warmup=s.warmup,
            repeats=s.repeats, amp=amp)]
    if "d" in s.checks:
        out["d"] = [gc.train_throughput(model, optimizers, device, batch=b, shots=1, size=size,
                                        warmup=s.warmup, repeats=s.repeats, amp=amp)
                    for b in s.train_batches]
    return out


def run_gpu_check(s: GpuCheckSettings) -> dict[str, Any]:
    """Every selected check; returns the report (plain containers)."""
    device = torch.device(s.device)
    cuda = device.type == "cuda"
    start = time.perf_counter()
    results = _model_checks(s, device)
    if "e" in s.checks:
        preset = s.launch_preset or (s.preset if cuda else "micro")
        results["e"] = run_launch_check(
            model_overrides=PRESETS[preset][0], cuda=cuda, workdir=Path(s.workdir),
            iterations=s.launch_iterations, episodes=s.launch_episodes, batch=s.train_batch)
        results["e"]["preset"] = preset
    passed = {k: _passed(results[k]) for k in REQUIRED if k in results}
    return {"device": describe_device(device), "cuda": cuda, "torch": torch.__version__,
            "preset": s.preset, "sizes": PRESETS[s.preset][1], "settings": asdict(s),
            "results": results, "passed": passed, "seconds": round(time.perf_counter() - start, 1),
            "ok": all(passed.values())}


def _passed(result: Any) -> bool:
    rows = result if isinstance(result, list) else [result]
    return all(r["passed"] for r in rows)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU, {torch.get_num_threads()} threads"


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} GB"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(check, case, value, target, result) rows."""
    r, rows = report["results"], []
    for a in r.get("a", []):
        rows.append(("(a) bf16 vs fp32", f"{a['shots']}-shot", f"max |dlogit| "
                     f"{a['max_logit_diff']:.3g}, masks agree {100 * a['mask_agreement']:.2f}%",
                     f">= {100 * a['target']:.0f}%", _verdict(a["passed"])))
    if "b" in r:
        b = r["b"]
        losses = " ".join(f"{v:.4f}" for v in b["losses"]) or b["error"]
        grads = b["gradients"]
        rows += [
            ("(b) train steps", f"batch {b['batch']}, {'bf16' if b['bf16'] else 'fp32'}",
             f"losses {losses}", "finite", _verdict(bool(b["losses"]) and not b["error"])),
            ("(b) gradients", "trainable only", ", ".join(
                f"{name} {n}" for name, n in grads["trainable_tensors_with_grad"].items())
             + f" tensors; {grads['frozen_with_grad_count']} frozen with grad", "0 frozen",
             _verdict(grads["passed"])),
            ("(b) peak memory", f"batch {b['batch']}", _gb(b["peak_gb"]),
             f"<= {b['memory_target_gb']:.0f} GB",
             "-" if b["peak_gb"] is None else _verdict(b["peak_gb"] <= b["memory_target_gb"]))]
    for c in r.get("c", []):
        value = ("out of memory" if c.get("out_of_memory") else
                 f"{c['episodes_per_s']:.2f} episodes/s, peak {_gb(c['peak_gb'])}")
        rows.append(("(c) test", f"{c['shots']}-shot, batch {c['batch']}", value, "", ""))
    for d in r.get("d", []):
        value = ("out of memory" if d.get("out_of_memory") else
                 f"{d['iterations_per_s']:.3f} it/s, peak {_gb(d['peak_gb'])}")
        rows.append(("(d) train", f"{d['shots']}-shot, batch {d['batch']}", value, "", ""))
    if "e" in r:
        e = r["e"]
        miou = (e["scores"] or {}).get("miou")
        rows += [
            ("(e) torchrun train.py", f"{e['backend']}, {e['iterations']} it, {e['preset']}",
             f"exit {e['train']['returncode']}, {e['train']['seconds']} s", "exit 0",
             _verdict(e["train_passed"])),
            ("(e) torchrun test.py", f"last.pt, {e['episodes']} episodes",
             f"exit {e['test']['returncode']}, mIoU " + ("-" if miou is None else f"{miou:.2f}"),
             "exit 0", _verdict(e["test_passed"]))]
    return rows


def best_batches(report: dict[str, Any]) -> list[str]:
    """``1-shot: best batch 8 (41.2 episodes/s)`` per shot count of (c)."""
    lines = []
    rows = [c for c in report["results"].get("c", []) if not c.get("out_of_memory")]
    for shots in sorted({c["shots"] for c in rows}):
        best = max((c for c in rows if c["shots"] == shots), key=lambda c: c["episodes_per_s"])
        lines.append(f"{shots}-shot test: best batch {best['batch']} "
                     f"({best['episodes_per_s']:.2f} episodes/s)")
    return lines


def format_table(report: dict[str, Any]) -> str:
    rows = [("check", "case", "value", "target", "result")] + table_rows(report)
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)
