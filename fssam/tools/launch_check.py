"""(e) of ``scripts/gpu_check.py``: ``torchrun --nproc_per_node=1 train.py`` for a few
iterations on the synthetic dataset, then ``torchrun ... test.py`` on its checkpoint.

On CUDA the process group is NCCL (``trainer.device=cuda``); on CPU gloo. The check passes
when both commands exit 0, the training log names the expected backend, the losses are
finite, ``last.pt`` exists and ``results.json`` holds a finite mIoU.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fssam.tools.toy import make_toy_pascal
from fssam.engine.config import compose_config

TAIL = 3000


def _torchrun(module: str, overrides: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run ``torchrun --standalone --nproc_per_node=1 -m <module> overrides``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", module, *overrides]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, out = None, f"timed out after {timeout:.0f} s: {err}"
    return {"command": " ".join(cmd[1:]), "returncode": code,
            "seconds": round(time.perf_counter() - start, 1), "output_tail": out[-TAIL:]}


def _losses(run_dir: Path) -> list[float]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if r.get("type") == "train"]


def _backend_used(run_dir: Path, backend: str) -> bool:
    """The run records (env.txt) name the process-group backend."""
    env = run_dir / "env.txt"
    return env.is_file() and f"\nprocess group: {backend}\n" in env.read_text()


def _test_scores(path: Path) -> dict[str, float] | None:
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())["summary"]
    return {"miou": summary["miou"]["mean"], "fbiou": summary["fbiou"]["mean"]}


def run_launch_check(*, model_overrides: Sequence[str], cuda: bool, workdir: Path,
                     iterations: int = 4, episodes: int = 20, batch: int = 2,
                     timeout: float = 900) -> dict[str, Any]:
    """Train ``iterations`` steps then test ``episodes`` episodes, each under torchrun."""
    toy = workdir / "toy"
    if not (toy / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").is_file():
        make_toy_pascal(toy, seed=0, workers=1)  # no fork of a process that holds CUDA
    device, backend = ("cuda", "nccl") if cuda else ("cpu", "gloo")
    common = [*model_overrides, "dataset=toy", f"dataset.root={toy}",
              f"dataset.cache_dir={workdir / 'lists'}", f"exp_dir={workdir / 'exp'}",
              f"trainer.device={device}", f"trainer.amp={'bf16' if cuda else 'none'}",
              "trainer.num_workers=2", "trainer.progress=false"]
    train_args = common + [f"trainer.batch_size={batch}", "trainer.total_batch_size=null",
                           "trainer.epochs=1", f"trainer.max_iterations={iterations}",
                           "trainer.val_per_epoch=0", "trainer.log_every=1",
                           "trainer.resume=false"]
    run_dir = Path(str(compose_config("train", train_args).run_dir))
    train = _torchrun("fssam.cli.train", train_args, timeout)
    losses = _losses(run_dir)
    checkpoint = run_dir / "last.pt"
    results = run_dir / "results_gpu_check.json"
    test = _torchrun("fssam.cli.test", common + [f"checkpoint={checkpoint}", f"episodes={episodes}",
                                          "seeds=[321]", f"results_file={results}"], timeout)
    scores = _test_scores(results)
    train_ok = (train["returncode"] == 0 and checkpoint.is_file() and
                len(losses) == iterations and all(math.isfinite(v) for v in losses) and
                _backend_used(run_dir, backend))
    test_ok = (test["returncode"] == 0 and scores is not None and scores["miou"] is not None
               and math.isfinite(scores["miou"]))
    return {"backend": backend, "device": device, "iterations": iterations, "batch": batch,
            "episodes": episodes, "run_dir": str(run_dir), "losses": losses,
            "train": train, "test": test, "scores": scores,
            "train_passed": train_ok, "test_passed": test_ok, "passed": train_ok and test_ok}
